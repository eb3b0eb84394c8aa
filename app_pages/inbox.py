"""Inbox: the acting user's notifications (their jobs' ends, the alerts sent to their inbox), newest first, a
page at a time; unread ones marked; mark one or all read. The inbox lives in Redis, so it is the same in every
session and on every device. Titles and bodies quote job errors: they are shown as typed, never as markdown."""
from __future__ import annotations

from datetime import datetime
from urllib.parse import parse_qsl, urlsplit

import streamlit as st

from runner import TaskdeckError
from runner.models import utcnow
from runner.notify.inbox import InboxItem
from ui import menu
from ui.alerts import message, stop_on_refusal
from ui.session import client
from ui.text import JOB_ID, Markdown, ago, joined, md, trusted

SIZES = [20, 50, 100]
ICONS = {"failed": ":material/error:", "completed": ":material/check_circle:", "cancelled": ":material/cancel:",
         "firing": ":material/notifications_active:", "resolved": ":material/task_alt:"}

c, state = client(), st.session_state
st.title("Inbox")


def flash(said: Markdown, ok: bool = True) -> None:
    state.inbox_flash = (said, ok)


def mark(ids: list[str] | str, done: Markdown) -> None:
    """Mark `ids` (or "all") read: a button's callback, so the sidebar's bell counts it in the same run."""
    try:
        c.mark_read(ids)
    except TaskdeckError as e:
        flash(message(e), ok=False)
    else:
        flash(done)


def first_page() -> None:
    state.inbox_cursors = []


def older(cursor: str) -> None:
    state.inbox_cursors = [*state.get("inbox_cursors", []), cursor]


def newer() -> None:
    state.inbox_cursors = state.get("inbox_cursors", [])[:-1]


def target(link: str) -> tuple[str, dict[str, str]] | None:
    """The dashboard page a notification's link names, with its query; None for anything else (only runner's
    own pages are linked: a job by its id, or a page of the menu)."""
    parts = urlsplit(link)
    name = parts.path.strip("/")
    if name == "job":
        job_id = dict(parse_qsl(parts.query)).get("id", "")
        return ("app_pages/job.py", {"id": job_id}) if JOB_ID.fullmatch(job_id) else None
    return (f"app_pages/{name}.py", {}) if name in menu.PAGES else None


def row(item: InboxItem, now: datetime) -> None:
    with st.container(border=True):
        text, side = st.columns([8, 2], vertical_alignment="center")
        with text:
            mark_shown = trusted(":blue-badge[unread]") if not item.read else trusted(":gray-badge[read]")
            st.markdown(joined([mark_shown, md("**{}**", item.title)], " "))
            if item.body:
                st.text(item.body)
            st.caption(md("{} · {} {} · since {} UTC", ago(item.created_at, now), item.kind, item.event,
                          trusted(f"{item.since:%Y-%m-%d %H:%M:%S}")))
        with side:
            found = target(item.link)
            if found:
                path, query = found
                st.page_link(path, label="Open the job" if query else trusted(f"Open {page_title(path)}"),
                             icon=ICONS.get(item.event, ":material/open_in_new:"), query_params=query)
            st.button("Mark read", key=f"read:{item.id}", icon=":material/done:", disabled=item.read,
                      on_click=mark, args=([item.id], md("Marked read: {}", item.title)))


def page_title(path: str) -> str:
    return menu.PAGES[path.removeprefix("app_pages/").removesuffix(".py")][0]


if shown := state.pop("inbox_flash", None):
    said, ok = shown
    st.toast(said, icon=":material/check_circle:" if ok else ":material/error:")
    if not ok:
        st.error(said, icon=":material/error:")

controls = st.columns([2, 2, 2, 4], vertical_alignment="bottom")
unread_only = controls[0].toggle("Unread only", key="inbox_unread", on_change=first_page)
size = controls[1].selectbox("Per page", SIZES, key="inbox_size", on_change=first_page)
controls[2].button("Mark all read", icon=":material/done_all:", key="inbox_all",
                   on_click=mark, args=("all", trusted("Marked all read")))
cursors: list[str] = state.setdefault("inbox_cursors", [])
with stop_on_refusal():
    page = c.notifications(limit=size, cursor=cursors[-1] if cursors else None, unread=unread_only)
st.caption(md("{} unread in all · page {}", page.unread, len(cursors) + 1))

if not page.items:
    if cursors:
        st.info("No more notifications.", icon=":material/inbox:")
    elif unread_only:
        st.info("Nothing unread.", icon=":material/mark_email_read:")
    else:
        st.info("No notifications yet. Your jobs' ends arrive here as your Profile says (by default: when one "
                "fails); alert rules can send here too.", icon=":material/inbox:")
now = utcnow()
for item in page.items:
    row(item, now)

back, forward, _ = st.columns([2, 2, 6])
back.button("Newer", icon=":material/arrow_back:", key="inbox_newer", disabled=not cursors, on_click=newer)
forward.button("Older", icon=":material/arrow_forward:", key="inbox_older", disabled=page.next_cursor is None,
               on_click=older, args=(page.next_cursor or "",))
