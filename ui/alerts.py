"""Runner errors on a page. Their messages quote what users gave (job ids, emails, type and schedule names,
URLs, payload field errors), so they are shown as literal text, never as markdown: `alert` in a box, `message`
in a toast or a flash, `stop_on_refusal` around a read whose refusal ends the page."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import streamlit as st

from runner import RedisUnavailable, TaskdeckError

from .text import Markdown, md

ERROR_CHARS = 500
Kind = Literal["error", "warning", "info"]
BadgeColor = Literal["red", "orange", "yellow", "blue", "green", "violet", "gray", "grey", "primary"]  # st.badge's
ICONS = {"error": ":material/error:", "warning": ":material/warning:", "info": ":material/info:"}


def message(e: BaseException | str) -> Markdown:
    """`e`'s message, for a toast or a flash: shown as typed."""
    return md("{}", e, limit=ERROR_CHARS)


def alert(e: BaseException | str, kind: Kind = "error", icon: str | None = None) -> None:
    """`e`'s message in an alert box, shown as typed."""
    show = {"error": st.error, "warning": st.warning, "info": st.info}[kind]
    show(message(e), icon=icon or ICONS[kind])


@contextmanager
def stop_on_refusal(kind: Kind = "warning", icon: str | None = None) -> Iterator[None]:
    """Runner refusing what the page asked for (a missing job, a role, a bad filter) as an alert, and the page
    stops there. Redis being away is left to `session.guard`, which waits for it to come back."""
    try:
        yield
    except RedisUnavailable:
        raise
    except TaskdeckError as e:
        alert(e, kind, icon)
        st.stop()
