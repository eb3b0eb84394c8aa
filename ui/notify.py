"""The sidebar's live line (my running jobs) and a toast when one of my jobs finishes: failures and
cancellations at once, completions gathered for BATCH_S into one toast."""
from __future__ import annotations

import time

import streamlit as st

from runner import RedisUnavailable
from runner.reads.events import Event

from .session import client
from .text import job_link, joined, md, short, trusted

BATCH_S = 2.0
FINAL = ("completed", "failed", "cancelled")


@st.fragment(run_every=1)
def activity() -> None:
    c, state = client(), st.session_state
    try:
        if "events_at" not in state:
            state.events_at = c.last_event_id()
        feed = c.events(state.events_at)
        running = c.count("processing", user=c.user)
    except RedisUnavailable:
        st.caption(":material/cloud_off: Job queue offline")
        return
    state.events_at = feed.position
    for event in feed.events:
        if event.user == c.user and event.event in FINAL:
            if event.event == "completed":
                hold(event)
            else:
                toast(event)
    release()
    st.caption(md(":material/play_circle: {} of my jobs running", running))


def hold(event: Event) -> None:
    pending: list[Event] = st.session_state.setdefault("completions", [])
    if not pending:
        st.session_state.completions_since = time.monotonic()
    pending.append(event)


def release() -> None:
    pending: list[Event] = st.session_state.get("completions", [])
    if not pending or time.monotonic() - st.session_state.completions_since < BATCH_S:
        return
    if len(pending) == 1:
        event = pending[0]
        st.toast(md("Job {} ({}) completed · {}", short(event.job), event.type, job_link(event.job)),
                 icon=":material/check_circle:")
    else:
        ids = joined([md("{}", short(e.job)) for e in pending[:5]] + ([trusted("…")] if len(pending) > 5 else []))
        st.toast(md("{} jobs completed: {}", len(pending), ids), icon=":material/check_circle:")
    st.session_state.completions = []


def toast(event: Event) -> None:
    what = md("Job {} ({})", short(event.job), event.type)
    if event.event == "failed":
        reason = event.extra.get("error", "")
        st.toast(md("{} failed: {} · {}", what, reason, job_link(event.job), limit=120), icon=":material/error:",
                 duration="long")
    else:
        by = event.extra.get("by", "")
        st.toast(md("{} cancelled by {}", what, by) if by else md("{} cancelled", what), icon=":material/cancel:")
