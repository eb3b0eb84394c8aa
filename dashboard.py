"""Taskdeck's dashboard: `streamlit run dashboard.py`. Pages hold UI only; every read and action goes
through runner's Client (ui/session.py)."""
from __future__ import annotations

import streamlit as st

from ui import notify, session

st.set_page_config(page_title="Taskdeck", page_icon="🗂️", layout="wide")

PAGES = {
    "submit": st.Page("app_pages/submit.py", title="Submit", icon=":material/add_circle:", url_path="submit"),
    "live": st.Page("app_pages/live.py", title="Live", icon=":material/bolt:", url_path="live"),
    "job": st.Page("app_pages/job.py", title="Job", icon=":material/description:", url_path="job"),
    "history": st.Page("app_pages/history.py", title="History", icon=":material/history:", url_path="history"),
    "metrics": st.Page("app_pages/metrics.py", title="Metrics", icon=":material/monitoring:", url_path="metrics"),
    "workers": st.Page("app_pages/workers.py", title="Workers", icon=":material/dns:", url_path="workers"),
}


def home() -> None:
    st.switch_page(PAGES["live"])


page = st.navigation([st.Page(home, title="Taskdeck", default=True, visibility="hidden"), *PAGES.values()])
with st.sidebar:
    st.caption("Taskdeck · background AI jobs")
    notify.activity()
with session.guard():
    session.client().ping()
    page.run()
