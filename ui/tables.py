"""Jobs as table rows for st.dataframe (every cell is plain text or a number; nothing is HTML)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import streamlit as st
from streamlit.delta_generator import DeltaGenerator
from streamlit.typing import DataframeState

from runner import Job
from runner.reads.live import LiveJob, LiveRecord

from .text import seconds, until

LINK = st.column_config.LinkColumn("Job", display_text=r"job\?id=(.{8})", width="small")
WHEN = "YYYY-MM-DD HH:mm:ss"


def link(job_id: str) -> str:
    return f"job?id={job_id}"


def selected(table: DataframeState | DeltaGenerator) -> list[int]:
    """The rows picked in a table drawn with `on_select` (a table drawn without has no selection)."""
    return table.selection.rows if isinstance(table, DataframeState) else []


def step_of(job: Job | LiveRecord) -> str:
    """The running step's number, else how many are done: "2 of 4" (one pass: the board asks 500 times a second)."""
    steps = job.steps
    if not steps:
        return "—"
    done = 0
    for number, step in enumerate(steps, 1):
        if step.status == "running":
            return f"{number} of {len(steps)}"
        done += step.status in ("completed", "skipped")
    return f"{done} of {len(steps)}"


def elapsed(job: Job | LiveRecord, now: datetime) -> float | None:
    if job.started_at is None:
        return None
    end = job.completed_at if job.status.terminal and job.completed_at else now
    return max(0.0, (end - job.started_at).total_seconds())


def usage(job: Job) -> dict[str, Any]:
    return {"Tokens": job.tokens_in + job.tokens_out, "Cost": job.cost_usd}


def live_rows(rows: list[LiveJob], now: datetime) -> pa.Table:
    """The board's rows as one Arrow table, built column by column: it redraws up to 500 rows every second,
    and st.dataframe sends an Arrow table as it is (a DataFrame would be built, then converted)."""
    jobs = [row.job for row in rows]
    return pa.table({
        "Job": pa.array([link(job.id) for job in jobs], pa.string()),
        "Type": pa.array([job.type for job in jobs], pa.string()),
        "Status": pa.array([row.job.status + (" · stalled" if row.stalled else "") for row in rows], pa.string()),
        "Progress": pa.array([job.progress / 100 for job in jobs], pa.float64()),
        "Step": pa.array([job.current_step or "" for job in jobs], pa.string()),
        "Step n of m": pa.array([step_of(job) for job in jobs], pa.string()),
        "Elapsed": pa.array([seconds(elapsed(job, now)) for job in jobs], pa.string()),
        "ETA": pa.array(["—" if job.status.terminal else until(job.eta, now) for job in jobs], pa.string()),
        "Queue name": pa.array([job.queue for job in jobs], pa.string()),
        "Queue": pa.array(["—" if row.queue_position is None else f"#{row.queue_position}" for row in rows],
                          pa.string()),
        "Priority": pa.array([job.priority.value for job in jobs], pa.string()),
        "User": pa.array([job.user_id for job in jobs], pa.string()),
        "Submitted": pa.array([job.queued_at for job in jobs], pa.timestamp("us", tz="UTC")),
        "Tokens": pa.array([job.tokens_in + job.tokens_out for job in jobs], pa.int64()),
        "Cost": pa.array([job.cost_usd for job in jobs], pa.float64()),
    })


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
    "Queue name": st.column_config.TextColumn("Queue", help="The named queue its type belongs to", width="small"),
    "Queue": st.column_config.TextColumn("Position", help="Position in its queue (#1 runs next)", width="small"),
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
