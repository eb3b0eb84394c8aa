"""History: finished jobs, newest first, paginated in Redis (runner/reads/history.py) and, beyond what Redis
holds, in the archive (runner/client/seamless.py: one list; its rows have an "archived" badge and are
read-only); filters, search, bulk retry and CSV export of the whole filtered set."""
from __future__ import annotations

import hashlib
import math
from datetime import UTC, date, datetime, time, timedelta

import streamlit as st

from runner import JobStatus
from runner.policy.access import Action
from runner.reads.history import FINISHED, SCAN_LIMIT, HistoryQuery
from ui.alerts import stop_on_refusal
from ui.export import ChunkStream
from ui.session import client
from ui.tables import HISTORY_COLUMNS, history_rows, selected
from ui.text import md, trusted

PAGE_SIZES = [25, 50, 100, 200]
RETRY_ALL_LIMIT = 1000

c, state = client(), st.session_state
acts = c.principal.can(Action.retry)
st.title("History")
if not c.principal.can(Action.read_all):
    st.caption("Your own jobs (your role sees only the jobs you submitted).")
elif not acts:
    st.caption("Read-only: your role reads everyone's jobs but changes nothing.")


def day_range(picked: tuple[date, ...]) -> tuple[datetime | None, datetime | None]:
    """The picked days (UTC) as [since, until)."""
    if not picked:
        return None, None
    first, last = picked[0], picked[-1]
    return (datetime.combine(first, time.min, tzinfo=UTC),
            datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC))


def filters() -> tuple[HistoryQuery, int]:
    with st.container(border=True):
        top = st.columns([3, 2, 2, 3])
        statuses = top[0].multiselect("Status", [s.value for s in JobStatus], default=[s.value for s in FINISHED],
                                      key="h_status", persist_state="session")
        job_type = top[1].selectbox("Type", ["All types", *(t.name for t in c.types())], key="h_type",
                                    persist_state="session")
        user = top[2].text_input("Submitted by", key="h_user", placeholder="email", persist_state="session")
        picked = top[3].date_input("Submitted between (UTC days)", value=[], key="h_dates", persist_state="session")
        bottom = st.columns([3, 3, 3, 2])
        id_prefix = bottom[0].text_input("Job id starts with", key="h_id", persist_state="session")
        error = bottom[1].text_input("Error contains", key="h_error", persist_state="session")
        words = bottom[2].text_input("Words in payload, result, error or steps", key="h_q", persist_state="session",
                                     placeholder="brand kit acme")
        size = bottom[3].selectbox("Page size", PAGE_SIZES, index=1, key="h_size", persist_state="session")
    since, until = day_range(tuple(picked) if isinstance(picked, (tuple, list)) else (picked,))
    query = HistoryQuery(status=[JobStatus(s) for s in statuses], type=None if job_type == "All types" else job_type,
                         user=user.strip().lower() or None, since=since, until=until,
                         id_prefix=id_prefix.strip().lower(), error=error.strip(), q=words.strip())
    return query, size


def ask(open_: bool = False) -> None:
    state.h_confirm = open_


@st.dialog("Retry failed jobs", on_dismiss=ask)
def confirm_retry_all(query: HistoryQuery) -> None:
    failed = query.model_copy(update={"status": [JobStatus.failed]})
    found = c.history(failed, limit=0)
    held = found.total - found.archived_total  # archived jobs are read-only: only Redis's are retried
    n = min(held, RETRY_ALL_LIMIT)
    st.write(md("Queue **{:,}** failed {}", n, trusted("job" if n == 1 else "jobs"))
             + (md(" (the newest {:,}; click again for more)", RETRY_ALL_LIMIT) if held > RETRY_ALL_LIMIT else "")
             + ". Each keeps its id and gets a fresh set of attempts."
             + (md(" {:,} more are archived, so read-only.", found.archived_total) if found.archived_total else ""))
    yes, no = st.columns(2)
    if yes.button(md("Retry {:,} jobs", n), type="primary", icon=":material/replay:", disabled=n == 0):
        result = c.retry_matching(query, limit=RETRY_ALL_LIMIT)
        state.h_flash, state.h_confirm = (len(result.done), len(result.errors)), False
        st.rerun()
    if no.button("Cancel"):
        state.h_confirm = False
        st.rerun()


query, size = filters()
signature = hashlib.sha1(f"{query.model_dump_json()}|{size}".encode()).hexdigest()[:10]
if state.get("h_signature") != signature:
    state.h_signature, state.h_page = signature, 1

with stop_on_refusal():
    page = c.history(query, limit=size, offset=(state.h_page - 1) * size)
pages = max(1, math.ceil(page.total / size))
if flash := state.pop("h_flash", None):
    st.toast(md("Retried {} job(s)", flash[0]) + (md("; {} refused", flash[1]) if flash[1] else ""),
             icon=":material/replay:")

first = (state.h_page - 1) * size + 1 if page.jobs else 0
count = md("{:,}", page.total) if page.exact else md("at least {:,}", page.total)
st.caption(md("Jobs {:,}–{:,} of {}, newest first.", first, first + len(page.jobs) - 1 if page.jobs else 0, count)
           + ("" if page.exact or page.scanned < SCAN_LIMIT else md(
               " The search read the newest {:,} entries of the matching index; narrow the filters or the dates to "
               "reach older ones.", page.scanned))
           + ("" if page.exact or page.scanned >= SCAN_LIMIT else " The total counts only part of the archive; "
              "narrow the filters or the dates for an exact one.")
           + (" Rows marked archived are read from the archive (Redis no longer holds them) and are read-only."
              if page.archived else ""))
if not page.jobs:
    st.info("No jobs match these filters.", icon=":material/filter_alt_off:")
archived = set(page.archived)
rows = history_rows(page.jobs)
rows["Status"] = [f"{job.status.value} · archived" if job.id in archived else job.status.value for job in page.jobs]
table = st.dataframe(rows, key=f"history_table_{signature}_{state.h_page}", hide_index=True,
                     column_config=HISTORY_COLUMNS, on_select="rerun" if acts else "ignore",
                     selection_mode="multi-row", width="stretch")

nav = st.columns([1, 1, 2, 6])
if nav[0].button("Previous", icon=":material/chevron_left:", disabled=state.h_page <= 1):
    state.h_page -= 1
    st.rerun()
if nav[1].button("Next", icon=":material/chevron_right:", disabled=state.h_page >= pages and page.exact):
    state.h_page += 1
    st.rerun()
nav[2].caption(md("Page {} of {:,}", state.h_page, pages) + ("" if page.exact else "+"))

row = st.columns([2, 3, 2, 3])
if acts:
    picked = [page.jobs[i] for i in selected(table) if i < len(page.jobs)]
    retryable = [job.id for job in picked if job.status in (JobStatus.failed, JobStatus.cancelled)
                 and c.principal.acts_on(job.user_id) and job.id not in archived]
    if row[0].button(md("Retry selected ({})", len(retryable)), icon=":material/replay:", disabled=not retryable):
        result = c.retry_many(retryable)
        state.h_flash = (len(result.done), len(result.errors))
        st.rerun()
    row[1].button("Retry all failed matching…", icon=":material/restart_alt:", on_click=ask, args=(True,),
                  disabled=bool(query.status) and JobStatus.failed not in query.status)
    if state.get("h_confirm"):
        confirm_retry_all(query)
row[2].download_button("Export CSV", data=lambda: ChunkStream(c.export_csv(query)), file_name="taskdeck-history.csv",
                        mime="text/csv", icon=":material/download:", on_click="ignore")
