"""Taskdeck's dashboard: `streamlit run dashboard.py`. Pages hold UI only; every read and action goes
through runner's Client (ui/session.py). With an [auth] section in the app's secrets, everyone signs in
(st.login) and acts with the role TASKDECK_ROLES gives their email; without one, as the local admin."""
from __future__ import annotations

import streamlit as st

from runner import AccessDenied
from runner.policy.access import Principal
from ui import bell, menu, notify, session
from ui.alerts import alert
from ui.text import md, trusted

st.set_page_config(page_title="Taskdeck", page_icon="🗂️", layout="wide")


def sign_in() -> None:
    st.title("Taskdeck")
    st.write("Sign in to see and run background jobs.")
    names = session.providers()
    buttons: list[str | None] = [*names] or [None]  # None: the one provider st.login uses by default
    for name in buttons:
        st.button(md("Sign in with {}", name) if name and len(names) > 1 else "Sign in", key=f"login:{name}",
                  type="primary", icon=":material/login:", on_click=st.login, args=(name,) if name else ())


def denied(reason: AccessDenied) -> None:
    st.title("Access denied")
    alert(reason, icon=":material/block:")
    st.caption("Sign out, then sign in with an account an admin has added to TASKDECK_ROLES.")
    st.button("Log out", icon=":material/logout:", on_click=st.logout)


def who(me: Principal) -> None:
    if session.acting_user() is None:
        st.caption(trusted(f":material/person: Local mode: you are {me.email} (no sign-in configured)"))
        return
    st.caption(md(":material/person: Signed in as {}", me.email))
    st.badge(trusted(f"Role: {me.role.value}"), icon=":material/badge:", color="blue")
    st.button("Log out", icon=":material/logout:", on_click=st.logout, key="logout")


if session.sign_in_required() and not session.signed_in():
    sign_in()
    st.stop()
try:
    me = session.me()
except AccessDenied as e:
    denied(e)
    st.stop()


def home() -> None:
    st.switch_page(pages["live"])


shown = menu.visible(me)
pages = {name: st.Page(f"app_pages/{name}.py", title=title, icon=icon, url_path=name,
                       visibility="visible" if name in shown else "hidden")
         for name, (title, icon, _) in menu.PAGES.items()}
page = st.navigation([st.Page(home, title="Taskdeck", default=True, visibility="hidden"), *pages.values()])
with st.sidebar:
    st.caption("Taskdeck · background AI jobs")
    who(me)
    bell.bell()
    notify.activity()
with session.guard():
    session.client().ping()
    page.run()
