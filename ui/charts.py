"""Plotly figures: a job's steps timeline and the Metrics page's charts (data from runner, shapes here)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from runner import Job
from runner.metrics import Percentiles

STATUS_COLORS = {"completed": "#2e9e5b", "running": "#2f6fde", "failed": "#d64545", "skipped": "#b8bfcc",
                 "pending": "#dfe3ea"}
PRIORITY_COLORS = {"high": "#d64545", "normal": "#2f6fde", "low": "#8a94a6"}
OUTCOME_COLORS = {"completed": "#2e9e5b", "failed": "#d64545"}


Span = tuple[datetime, datetime] | None


def styled(fig: go.Figure, height: int = 300, span: Span = None) -> go.Figure:
    if span:
        fig.update_xaxes(range=list(span))
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend_title_text="",
                      legend={"orientation": "h", "y": 1.12, "x": 0})
    return fig


def attempts_steps(job: Job, now: datetime) -> pd.DataFrame:
    """Every step of every attempt that has a start, the current attempt's from the live record."""
    logged = {a.number: a.steps for a in job.attempt_log}
    if job.steps and (job.attempts not in logged or not job.status.terminal):
        logged[job.attempts] = job.steps
    rows = []
    for number in sorted(logged):
        for step in logged[number]:
            rows.append({"Attempt": number, "Step": f"#{number} · {step.name}", "Name": step.name,
                         "Status": step.status.value, "Progress": step.progress / 100, "Started": step.started_at,
                         "Finished": step.finished_at, "End": step.finished_at or (now if step.started_at else None),
                         "Error": step.error or ""})
    frame = pd.DataFrame(rows, columns=["Attempt", "Step", "Name", "Status", "Progress", "Started", "Finished", "End",
                                        "Error"])
    for column in ("Started", "Finished", "End"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def steps_timeline(steps: pd.DataFrame) -> go.Figure | None:
    started = steps.dropna(subset=["Started"])
    if started.empty:
        return None
    fig = px.timeline(started, x_start="Started", x_end="End", y="Step", color="Status",
                      color_discrete_map=STATUS_COLORS, category_orders={"Step": list(dict.fromkeys(started["Step"]))},
                      hover_data={"Name": True, "Progress": ":.0%", "Step": False})
    fig.update_yaxes(autorange="reversed", title=None)
    fig.update_xaxes(title=None)
    return styled(fig, height=max(160, 40 * len(started) + 80))


def queue_depth(rows: list[dict[str, Any]], span: Span = None) -> go.Figure:
    frame = pd.DataFrame(rows, columns=["at", "high", "normal", "low"])
    fig = px.line(frame, x="at", y=["high", "normal", "low"], color_discrete_map=PRIORITY_COLORS, markers=True,
                  labels={"at": "", "value": "jobs waiting", "variable": "priority"})
    fig.update_yaxes(rangemode="tozero")
    return styled(fig, span=span)


def throughput(rows: list[dict[str, Any]], span: Span = None) -> go.Figure:
    frame = pd.DataFrame(rows, columns=["at", "completed", "failed"])
    fig = px.bar(frame, x="at", y=["completed", "failed"], color_discrete_map=OUTCOME_COLORS,
                 labels={"at": "", "value": "jobs", "variable": ""})
    return styled(fig, span=span)


def success_rate(rows: list[dict[str, Any]], span: Span = None) -> go.Figure:
    frame = pd.DataFrame(rows, columns=["at", "success_rate"]).dropna()
    fig = px.line(frame, x="at", y="success_rate", markers=True, labels={"at": "", "success_rate": "success rate"})
    fig.update_yaxes(tickformat=".0%", range=[0, 1.05])
    return styled(fig, span=span)


def durations(rows: list[Percentiles]) -> go.Figure:
    frame = pd.DataFrame([{"type": r.type, "p50": r.p50_s, "p95": r.p95_s} for r in rows],
                         columns=["type", "p50", "p95"])
    fig = px.bar(frame, x="type", y=["p50", "p95"], barmode="group", labels={"type": "", "value": "seconds",
                                                                             "variable": ""})
    return styled(fig)


def wait_histogram(rows: list[dict[str, Any]]) -> go.Figure:
    frame = pd.DataFrame([{"wait": f"≤ {r['le']} s" if r["le"] != "inf" else "longer", "jobs": r["count"]}
                          for r in rows])
    fig = px.bar(frame, x="wait", y="jobs", labels={"wait": "time in queue before the first start"})
    return styled(fig)


def llm_cost(rows: list[dict[str, Any]], span: Span = None) -> go.Figure:
    """LLM cost per bucket (bars) with tokens in and out (lines, right axis)."""
    frame = pd.DataFrame(rows, columns=["at", "cost_usd", "tokens_in", "tokens_out", "calls", "throttled"])
    fig = go.Figure()
    fig.add_bar(x=frame["at"], y=frame["cost_usd"], name="cost (USD)", marker_color="#2f6fde")
    fig.add_scatter(x=frame["at"], y=frame["tokens_in"], name="tokens in", yaxis="y2", mode="lines",
                    line={"color": "#8a94a6"})
    fig.add_scatter(x=frame["at"], y=frame["tokens_out"], name="tokens out", yaxis="y2", mode="lines",
                    line={"color": "#2e9e5b"})
    fig.update_layout(yaxis={"title": "USD", "rangemode": "tozero", "tickformat": "$.4~f"},
                      yaxis2={"title": "tokens", "overlaying": "y", "side": "right", "rangemode": "tozero",
                              "showgrid": False})
    return styled(fig, span=span)
