"""Jobs as table rows for st.dataframe (every cell is plain text or a number; nothing is HTML)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st

from runner import Job
from runner.live import LiveJob

from .text import seconds, until

LINK = st.column_config.LinkColumn("Job", display_text=r"job\?id=(.{8})", width="small")
WHEN = "YYYY-MM-DD HH:mm:ss"


def link(job_id: str) -> str:
    return f"job?id={job_id}"


def step_of(job: Job) -> str:
    if not job.steps:
        return "—"
    running = [i for i, step in enumerate(job.steps) if step.status == "running"]
    done = sum(step.status in ("completed", "skipped") for step in job.steps)
    return f"{(running[0] + 1) if running else done} of {len(job.steps)}"


def elapsed(job: Job, now: datetime) -> float | None:
    if job.started_at is None:
        return None
    end = job.completed_at if job.status.terminal and job.completed_at else now
    return max(0.0, (end - job.started_at).total_seconds())


def usage(job: Job) -> dict[str, Any]:
    return {"Tokens": job.tokens_in + job.tokens_out, "Cost": job.cost_usd}


def live_rows(rows: list[LiveJob], now: datetime) -> pd.DataFrame:
    records = []
    for row in rows:
        job = row.job
        records.append({
            "Job": link(job.id), "Type": job.type,
            "Status": job.status.value + (" · stalled" if row.stalled else ""),
            "Progress": job.progress / 100, "Step": job.current_step or "", "Step n of m": step_of(job),
            "Elapsed": seconds(elapsed(job, now)), "ETA": until(job.eta, now) if not job.status.terminal else "—",
            "Queue": "—" if row.queue_position is None else f"#{row.queue_position}",
            "Priority": job.priority.value, "User": job.user_id,
            "Submitted": job.queued_at, **usage(job),
        })
    return pd.DataFrame(records, columns=list(LIVE_COLUMNS))


TOKENS = st.column_config.NumberColumn("Tokens", help="LLM tokens in + out, all attempts", format="localized",
                                       width="small")
COST = st.column_config.NumberColumn("Cost", help="LLM cost in USD (TASKDECK_LLM_PRICES)", format="$%.4f",
                                     width="small")
SMALL = {name: st.column_config.TextColumn(name, width="small") for name in ("Type", "Elapsed", "ETA", "Priority")}
LIVE_COLUMNS: dict[str, Any] = {
    "Job": LINK, "Type": SMALL["Type"], "Status": "Status",
    "Progress": st.column_config.ProgressColumn("Progress", min_value=0.0, max_value=1.0, format="percent"),
    "Step": "Step", "Step n of m": st.column_config.TextColumn("Step n/m", width="small"),
    "Elapsed": SMALL["Elapsed"], "ETA": SMALL["ETA"],
    "Queue": st.column_config.TextColumn("Queue", help="Position in the queue (#1 runs next)", width="small"),
    "Priority": SMALL["Priority"], "User": "User", "Submitted": st.column_config.DatetimeColumn("Submitted",
                                                                                               format="HH:mm:ss"),
    "Tokens": TOKENS, "Cost": COST,
}


def history_rows(jobs: list[Job]) -> pd.DataFrame:
    records = [{
        "Job": link(job.id), "Type": job.type, "Status": job.status.value, "User": job.user_id,
        "Submitted": job.queued_at, "Finished": job.completed_at,
        "Duration": seconds((job.completed_at - job.started_at).total_seconds())
        if job.completed_at and job.started_at else "—",
        "Attempts": f"{job.attempts}/{job.max_attempts}", **usage(job), "Last error": job.last_error or "",
    } for job in jobs]
    return pd.DataFrame(records, columns=list(HISTORY_COLUMNS))


HISTORY_COLUMNS: dict[str, Any] = {
    "Job": LINK, "Type": "Type", "Status": "Status", "User": "User",
    "Submitted": st.column_config.DatetimeColumn("Submitted", format=WHEN),
    "Finished": st.column_config.DatetimeColumn("Finished", format=WHEN),
    "Duration": "Duration", "Attempts": "Attempts", "Tokens": TOKENS, "Cost": COST,
    "Last error": st.column_config.TextColumn("Last error", width="large"),
}
