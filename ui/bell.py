"""The sidebar's bell: the acting user's unread notifications and their failed-job notices since they last
looked, linking to the Inbox page. One `inbox_counts` call (two counts in Redis) per run, every EVERY_S."""
from __future__ import annotations

import streamlit as st

from runner import RedisUnavailable
from runner.notify.inbox import InboxCounts

from .session import client
from .text import Markdown, md, trusted

EVERY_S = 3
INBOX = "app_pages/inbox.py"


def label(counts: InboxCounts) -> Markdown:
    """E.g. `Inbox · 3 unread · 1 failed since you last looked` (the failed part only when not zero)."""
    if not counts.unread and not counts.failed_since_looked:
        return trusted("Inbox · nothing unread")
    said = md("Inbox · {} unread", counts.unread)
    if counts.failed_since_looked:
        said = md("{} · {} failed since you last looked", said, counts.failed_since_looked)
    return said


@st.fragment(run_every=EVERY_S)
def bell() -> None:
    try:
        counts = client().inbox_counts()
    except RedisUnavailable:
        return  # notify.activity() beside it already says the queue is offline
    busy = counts.unread or counts.failed_since_looked
    said: Markdown = label(counts)
    st.page_link(INBOX, label=said, icon=":material/notifications_active:" if busy else
                 ":material/notifications:")
