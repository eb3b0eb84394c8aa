"""Workers: every worker seen in the last day, alive or dead, with its counters; and the schedules
the workers submit."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from runner.models import utcnow
from ui.session import client, guard
from ui.text import ago, until

st.title("Workers")


@st.fragment(run_every=2)
def roster() -> None:
    c = client()
    with guard(reconnect=False):
        workers = c.workers()
        now = utcnow()
        alive = sum(w.alive for w in workers)
        cols = st.columns(4)
        cols[0].metric("Online", alive, border=True)
        cols[1].metric("Dead or stopped", len(workers) - alive, border=True)
        cols[2].metric("Running jobs", sum(w.running for w in workers if w.alive), border=True)
        cols[3].metric("Lease", f"{c.settings.lease_s:g} s", border=True,
                       help="A worker that has not renewed its heartbeat within the lease counts as dead.")
        if not workers:
            st.info("No worker has reported in the last day. Start one with `arq runner.worker.WorkerSettings` "
                    "or `./taskdeck up`.", icon=":material/power_off:")
            return
        frame = pd.DataFrame([{
            "Status": "alive" if w.alive else "dead", "Worker": w.id, "Host": w.host, "PID": w.pid,
            "Started": w.started_at, "Last heartbeat": ago(w.last_heartbeat, now), "Running": w.running,
            "Done": w.done, "Failed": w.failed,
        } for w in sorted(workers, key=lambda w: (not w.alive, w.id))])
        st.dataframe(frame, hide_index=True, width="stretch", column_config={
            "Started": st.column_config.DatetimeColumn("Started", format="YYYY-MM-DD HH:mm:ss"),
            "PID": st.column_config.NumberColumn("PID", format="%d")})


def schedules() -> None:
    st.subheader("Schedules")
    found = client().schedules()
    if not found:
        st.caption("No schedules. Workers submit scheduled jobs; add one with the Python API (save_schedule).")
        return
    now = utcnow()
    st.dataframe(pd.DataFrame([{
        "Name": s.name, "Type": s.type, "Cron": s.cron, "State": "paused" if s.paused else "active",
        "Next run": until(s.next_run_at, now) if not s.paused else "—", "Last run": ago(s.last_run_at, now),
        "Last outcome": s.last_outcome or "—", "Owner": s.owner,
    } for s in found]), hide_index=True, width="stretch")


roster()
schedules()
