"""Who acts in this browser session, their Client (one per user, shared by that user's sessions), and how a
page behaves while Redis is away.

Sign-in: when the app's secrets (.streamlit/secrets.toml, or the files named by `--secrets.files`) have an
[auth] section, every session signs in with st.login (OIDC) and acts as the verified email, with the role
TASKDECK_ROLES gives it (runner.policy.access). Without [auth] the dashboard is local: everyone is the local admin.
"""
from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import streamlit as st

from runner import AccessDenied, Client, RedisUnavailable, Settings
from runner.policy.access import Principal, Role, listed_role, normal_email, principal

from .text import md

RECONNECT_EVERY_S = 2


@st.cache_resource(show_spinner=False)
def _client(settings_digest: str, user: str | None, role: str, org: str) -> Client:
    return Client(Settings(), principal=Principal(user, Role(role), org) if user else None)


def current_settings() -> tuple[Settings, str]:
    """Settings() and its digest, built again only when their inputs change: every page and every 1 s fragment
    asks, and parsing the environment and .env costs milliseconds each time."""
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.upper().startswith("TASKDECK_")
                       or k.upper() == "REDIS_URL"))
    dotenv = Path(".env")
    return _settings(os.getcwd(), env, dotenv.read_bytes() if dotenv.is_file() else None)


@functools.lru_cache(maxsize=8)
def _settings(cwd: str, env: tuple[tuple[str, str], ...], dotenv: bytes | None) -> tuple[Settings, str]:
    built = Settings()
    return built, hashlib.sha256(built.model_dump_json().encode()).hexdigest()


def auth_section() -> dict[str, Any] | None:
    """The [auth] section of the app's secrets, or None when sign-in is not configured."""
    try:
        if not st.secrets.load_if_toml_exists() or "auth" not in st.secrets:
            return None
        return dict(st.secrets["auth"])
    except Exception:  # an unreadable secrets file: Streamlit logs it at start; run as if absent
        return None


def sign_in_required() -> bool:
    return auth_section() is not None


def providers() -> list[str]:
    """The named providers ([auth.NAME] sections); empty when [auth] holds one provider's keys itself."""
    section = auth_section() or {}
    return [name for name, value in section.items() if hasattr(value, "keys") and name != "client_kwargs"]


def signed_in() -> bool:
    return bool(st.user.get("is_logged_in"))


def acting_user() -> str | None:
    """Who uses this session: None is the local admin (no sign-in configured); else the signed-in email
    ("" while nobody is signed in, which the allow-list refuses)."""
    if not sign_in_required():
        return None
    if not signed_in():
        return ""
    return str(st.user.get("email") or "").strip()  # normalised (or refused) by runner.policy.access


def me() -> Principal:
    """The acting user with their role; AccessDenied for an email the allow-list does not name."""
    settings, _ = current_settings()
    email = acting_user()
    if email is None:
        return principal(settings, None)
    if not email:
        raise AccessDenied("sign in to use Taskdeck")
    if st.user.get("email_verified") is False:
        raise AccessDenied(f"{email} is not verified by the sign-in provider; verify it there, then sign in again")
    if normal_email(email) == normal_email(settings.local_user) and listed_role(settings, normal_email(email)) is None:
        # the local admin is who acts when no one signs in; a provider's account of that name is not it
        raise AccessDenied(f"{email} is not on the allow-list (TASKDECK_ROLES); ask an admin for access")
    claim = st.user.get(settings.org_claim) if settings.org_claim else None
    return principal(settings, email, org=str(claim) if claim else None)


def client() -> Client:
    """This session's Client: one per user and role (and settings, so a changed .env or test environment gets
    a fresh one), shared by that user's sessions (a Client is thread-safe)."""
    _, digest = current_settings()
    who = me()
    return _client(digest, None if acting_user() is None else who.email, who.role.value, who.org)


@contextmanager
def guard(reconnect: bool = True) -> Iterator[None]:
    """Redis away: a banner instead of a traceback; the page comes back by itself once Redis answers.
    Inside a `run_every` fragment pass reconnect=False: its own next run is the retry."""
    try:
        yield
    except RedisUnavailable as e:
        st.error(md("**Job queue unavailable.** {}", e), icon=":material/cloud_off:")
        if reconnect:
            _wait_for_redis()


@st.fragment(run_every=RECONNECT_EVERY_S)
def _wait_for_redis() -> None:
    try:
        client().ping()
    except RedisUnavailable:
        st.caption(md("Trying again every {} s…", RECONNECT_EVERY_S))
        return
    st.rerun()
