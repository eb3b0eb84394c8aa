"""Profile (every signed-in user): where their notices go (an email, a webhook URL), which ends of their jobs they
are told of and how when a submit does not say, and the secret their webhook notices and token-less callbacks are
signed with (shown masked, rotated here). Saved through Client.set_profile, which checks the email and passes the
webhook URL through the outbound policy: a refused one is shown as runner says it."""
from __future__ import annotations

from typing import get_args

import streamlit as st

from runner import TaskdeckError
from runner.notify.profile import JobEnd, Profile, Via
from ui.alerts import alert, message, stop_on_refusal
from ui.session import client
from ui.text import Markdown, md, trusted

EVENTS: list[JobEnd] = list(get_args(JobEnd))
CHANNELS: list[Via] = list(get_args(Via))
SHOWN_SECRET_CHARS = 4

c, state = client(), st.session_state
st.title("Profile")
st.caption(md("Notification settings of {}: only you see and change them.", c.principal.email))


def flash(said: Markdown, ok: bool = True) -> None:
    state.profile_flash = (said, ok)


def rotate() -> None:
    try:
        c.set_profile(rotate_secret=True)
    except TaskdeckError as e:
        flash(message(e), ok=False)
    else:
        flash(trusted("New webhook secret: what is signed from now on uses it"))


def masked(secret: str) -> str:
    """`whsec_…abcd`: enough to tell two secrets apart, not enough to sign with."""
    prefix = "whsec_" if secret.startswith("whsec_") else ""
    return f"{prefix}…{secret[-SHOWN_SECRET_CHARS:]}" if len(secret) > len(prefix) + SHOWN_SECRET_CHARS else "…"


def fingerprint(found: Profile) -> str:
    return found.model_dump_json(exclude={"webhook_secret"})


def seed(found: Profile) -> None:
    """Fill the form with the profile as saved: on the first visit and after each save (not after a refused one,
    so what the user typed stays to be corrected)."""
    if state.get("profile_seen") == fingerprint(found):
        return
    state.profile_email, state.profile_webhook = found.email or "", found.webhook_url or ""
    state.profile_events, state.profile_via = list(found.events), list(found.via)
    state.profile_seen = fingerprint(found)


def save(email: str, webhook: str, events: list[JobEnd], via: list[Via]) -> None:
    try:
        c.set_profile(email=email.strip(), webhook_url=webhook.strip(), events=events, via=via)
    except TaskdeckError as e:
        alert(e)
        return
    flash(trusted("Profile saved"))
    st.rerun()


def settings_form(found: Profile) -> None:
    seed(found)
    with st.form("profile_form", border=True):
        st.markdown("**Notices**")
        email = st.text_input("Email for notices", key="profile_email", placeholder=found.user,
                              help="Where notices via email go; empty: your sign-in email")
        webhook = st.text_input("Webhook URL", key="profile_webhook", placeholder="https://hooks.example.com/taskdeck",
                                help="Notices via webhook are signed POSTs to it (Standard Webhooks); empty: none. "
                                "It must pass the outbound policy: no private address unless TASKDECK_FETCH_ALLOW "
                                "names it")
        st.markdown("**By default** (when a submit does not say)")
        left, right = st.columns(2)
        events: list[JobEnd] = left.multiselect("Tell me when my jobs end", EVENTS, key="profile_events",
                                                help="Empty: no notices unless a submit asks for them")
        via: list[Via] = right.multiselect("Through", CHANNELS, key="profile_via")
        sent = st.form_submit_button("Save profile", type="primary", icon=":material/save:")
    if "email" in found.via and not c.settings.smtp_host:
        st.warning("Email notices cannot be sent: no SMTP server is set (TASKDECK_SMTP_HOST). Ask an admin, or use "
                   "the inbox.", icon=":material/mail_off:")
    if sent:
        save(email, webhook, events, via)


def secret(found: Profile) -> None:
    st.subheader("Webhook secret")
    st.caption("Your webhook's notices, and the callbacks of jobs you submit without an API token (CLI, Python), "
               "are signed with it (Standard Webhooks: `webhook-signature`). A receiver verifies them with it, e.g. "
               "`standardwebhooks.Webhook(secret).verify(body, headers)`.")
    show = st.toggle("Show the secret", key="profile_show_secret")
    st.code(found.webhook_secret if show else masked(found.webhook_secret), language=None)
    with st.popover("Rotate secret", icon=":material/autorenew:"):
        st.write("Replace the secret? What is signed from now on uses the new one: update your receivers.")
        st.button("Rotate now", type="primary", key="profile_rotate", on_click=rotate)


if shown := state.pop("profile_flash", None):
    said, ok = shown
    st.toast(said, icon=":material/check_circle:" if ok else ":material/error:")
    if not ok:
        st.error(said, icon=":material/error:")
with stop_on_refusal():
    profile = c.profile()
settings_form(profile)
secret(profile)
