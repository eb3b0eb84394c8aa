"""The dashboard process's one Client, who acts, and how a page behaves while Redis is away."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from runner import Client, RedisUnavailable, Settings

RECONNECT_EVERY_S = 2


@st.cache_resource(show_spinner=False)
def _client(url: str, prefix: str, user: str | None) -> Client:
    return Client(Settings(), user=user)


def acting_user() -> str | None:
    """Who uses this session; None is the local admin (sign-in would plug in here)."""
    return None


def client() -> Client:
    """Shared by every session: a Client is thread-safe, and keyed by Redis so tests can switch it."""
    settings = Settings()
    return _client(settings.url, settings.prefix, acting_user())


@contextmanager
def guard(reconnect: bool = True) -> Iterator[None]:
    """Redis away: a banner instead of a traceback; the page comes back by itself once Redis answers.
    Inside a `run_every` fragment pass reconnect=False: its own next run is the retry."""
    try:
        yield
    except RedisUnavailable as e:
        st.error(f"**Job queue unavailable.** {e}", icon=":material/cloud_off:")
        if reconnect:
            _wait_for_redis()


@st.fragment(run_every=RECONNECT_EVERY_S)
def _wait_for_redis() -> None:
    try:
        client().ping()
    except RedisUnavailable:
        st.caption(f"Trying again every {RECONNECT_EVERY_S} s…")
        return
    st.rerun()
