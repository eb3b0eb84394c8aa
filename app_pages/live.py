"""Live: active jobs with progress, steps, ETA, named queue and position in it, refreshed every second; below
them each named queue's load (waiting, running, slots, workers serving it), every two seconds.

Table selections are row positions, so rows keep the order in which this session first saw them
(oldest first, newcomers appended) and finished jobs stay, marked, until "Clear finished".
"""
from __future__ import annotations

from collections.abc import Collection

import streamlit as st

from runner import Priority, RedisUnavailable
from runner.models import utcnow
from runner.policy.access import Action
from ui.queues import show_loads
from ui.session import client, guard
from ui.tables import LIVE_COLUMNS, live_rows, selected
from ui.text import joined, md, trusted

state = st.session_state
me = client().principal
st.title("Live")
if me.can(Action.read_all):
    mine = st.toggle("Only my jobs", key="live_mine")
else:
    mine = False
    st.caption("Your own jobs (your role sees only the jobs you submitted).")
if state.get("live_scope") != mine:
    state.live_scope, state.live_order, state.live_table = mine, [], state.get("live_table", 0) + 1


def cancel(job_ids: list[str]) -> None:
    with guard(reconnect=False):
        result = client().cancel_many(job_ids)
        errors = list(result.errors.values())[:3]
        st.toast(joined([md("Cancelled {} of {}", len(result.done), len(job_ids)),
                         *(md("{}", e, limit=100) for e in errors)], " · "), icon=":material/cancel:")


def clear_finished() -> None:
    state.live_order, state.live_table = [], state.live_table + 1


@st.fragment(run_every=1)
def board() -> None:
    c = client()
    with guard(reconnect=False):
        view = c.live(user=c.user if mine else None, include=state.live_order)
        rows = {row.job.id: row for row in view.jobs}
        state.live_order = order(state.live_order, rows)
        ordered = [rows[i] for i in state.live_order]
        header(view.queue_depth, view.workers_alive, sum(r.stalled for r in ordered), view.truncated)
        if not ordered:
            st.info("No queued or running jobs. Submit one from the Submit page.", icon=":material/hourglass_empty:")
            return
        acts = me.can(Action.cancel)
        table = st.dataframe(live_rows(ordered, utcnow()), key=f"live_table_{state.live_table}", hide_index=True,
                             column_config=LIVE_COLUMNS, on_select="rerun" if acts else "ignore",
                             selection_mode="multi-row", width="stretch")
        left, right, _ = st.columns([2, 2, 6])
        if acts:
            picked = [ordered[i].job for i in selected(table) if i < len(ordered)]
            cancellable = [job.id for job in picked if not job.status.terminal and me.acts_on(job.user_id)]
            left.button(md("Cancel selected ({})", len(cancellable)), icon=":material/cancel:",
                        disabled=not cancellable, on_click=cancel, args=(cancellable,))
        if any(row.job.status.terminal for row in ordered):
            right.button("Clear finished", icon=":material/clear_all:", on_click=clear_finished)


def order(seen: list[str], rows: Collection[str]) -> list[str]:
    """The ids this session has seen, in the order it first saw them, then the new ones."""
    kept = [i for i in seen if i in rows]
    known = set(kept)
    return kept + [i for i in rows if i not in known]


def header(depth: dict[Priority, int], workers: int, stalled: int, truncated: bool) -> None:
    cols = st.columns(5)
    for col, priority in zip(cols[:len(Priority)], Priority, strict=True):
        col.metric(trusted(f"Queued · {priority.value}"), md("{}", depth.get(priority, 0)), border=True)
    cols[3].metric("Workers online", md("{}", workers), border=True)
    with cols[4]:
        if stalled:
            st.badge(md("{} stalled", stalled), icon=":material/warning:", color="orange")
        if not workers:
            st.badge("no worker running", icon=":material/power_off:", color="red")
        if truncated:
            st.caption("Showing the oldest 500 active jobs.")


@st.fragment(run_every=2)
def queues() -> None:
    """Every named queue's load (all users' jobs: counts only), and a warning for one that nobody serves."""
    try:
        loads = client().stats().queues
    except RedisUnavailable:  # the board above shows the one banner
        return
    st.subheader("Queues")
    show_loads(loads)


board()
queues()
st.caption(md("A running job is marked stalled when its record has not changed for {:g} s "
              "(TASKDECK_STALLED_AFTER_S).", client().settings.stalled_after_s))
