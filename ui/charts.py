"""Plotly figures: a job's steps timeline and the Metrics page's charts (data from runner, shapes here)."""
from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from runner import Job
from runner.reads.metrics import Percentiles

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


def as_plotly_text(text: object) -> str:
    """`text` as plotly shows it: plotly reads tags in labels and hovers as markup (`<a href>` becomes a live
    link) and entities as the characters they name, so escaped text shows as typed."""
    return html.escape(str(text), quote=False)


def steps_timeline(steps: pd.DataFrame) -> go.Figure | None:
    started = steps.dropna(subset=["Started"])
    if started.empty:
        return None
    started = started.assign(Step=started["Step"].map(as_plotly_text), Name=started["Name"].map(as_plotly_text))
    fig = px.timeline(started, x_start="Started", x_end="End", y="Step", color="Status",
                      color_discrete_map=STATUS_COLORS, category_orders={"Step": list(dict.fromkeys(started["Step"]))},
                      hover_data={"Name": True, "Progress": ":.0%", "Step": False})
    fig.update_yaxes(autorange="reversed", title=None)
    fig.update_xaxes(title=None)
    return styled(fig, height=max(160, 40 * len(started) + 80))


def figure(traces: list[dict[str, Any]], span: Span = None, height: int = 300, **layout: Any) -> go.Figure:
    """A figure built in one step: plotly express builds a figure, then updates it several times over (about
    five times the cost, and the Metrics page draws six)."""
    base: dict[str, Any] = {"height": height, "margin": {"l": 10, "r": 10, "t": 30, "b": 10},
                            "legend": {"orientation": "h", "y": 1.12, "x": 0, "title": {"text": ""}}}
    if span:
        layout["xaxis"] = {**layout.get("xaxis", {}), "range": list(span)}
    return go.Figure(data=traces, layout=base | layout)


def title(text: str) -> dict[str, Any]:
    return {"title": {"text": text}}


def dates(rows: list[dict[str, Any]]) -> np.ndarray:
    """The rows' "at" as UTC datetime64: plotly checks and copies an array at once but a list item by item (1,440
    points a series over 24 hours); the axis shows UTC wall time either way."""
    return np.array([r["at"].astimezone(UTC).replace(tzinfo=None) for r in rows], dtype="datetime64[us]")


def numbers(values: Iterable[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def series(rows: list[dict[str, Any]], name: str, kind: str = "scatter", **style: Any) -> dict[str, Any]:
    """One trace over time: x the rows' "at", y their `name` values."""
    lines = {"mode": "lines+markers"} if kind == "scatter" else {}
    return {"type": kind, "name": name, "x": dates(rows), "y": numbers(r[name] for r in rows), **lines, **style}


def queue_depth(rows: list[dict[str, Any]], span: Span = None) -> go.Figure:
    return figure([series(rows, p, line={"color": color}) for p, color in PRIORITY_COLORS.items()], span,
                  yaxis={**title("jobs waiting"), "rangemode": "tozero"})


def throughput(rows: list[dict[str, Any]], span: Span = None) -> go.Figure:
    return figure([series(rows, outcome, "bar", marker={"color": color}) for outcome, color in OUTCOME_COLORS.items()],
                  span, barmode="relative", yaxis=title("jobs"))


def success_rate(rows: list[dict[str, Any]], span: Span = None) -> go.Figure:
    rated = [r for r in rows if r["success_rate"] is not None]
    return figure([{**series(rated, "success_rate", showlegend=False), "name": "success rate"}], span,
                  yaxis={**title("success rate"), "tickformat": ".0%", "range": [0, 1.05]})


def durations(rows: list[Percentiles]) -> go.Figure:
    types = [r.type for r in rows]
    return figure([{"type": "bar", "name": "p50", "x": types, "y": numbers(r.p50_s for r in rows)},
                   {"type": "bar", "name": "p95", "x": types, "y": numbers(r.p95_s for r in rows)}],
                  barmode="group", yaxis=title("seconds"))


def wait_histogram(rows: list[dict[str, Any]]) -> go.Figure:
    labels = [f"≤ {r['le']} s" if r["le"] != "inf" else "longer" for r in rows]
    return figure([{"type": "bar", "name": "jobs", "x": labels, "y": [r["count"] for r in rows]}],
                  xaxis=title("time in queue before the first start"), yaxis=title("jobs"))


def llm_cost(rows: list[dict[str, Any]], span: Span = None) -> go.Figure:
    """LLM cost per bucket (bars) with tokens in and out (lines, right axis)."""
    return figure([
        {**series(rows, "cost_usd", "bar", marker={"color": "#2f6fde"}), "name": "cost (USD)"},
        {**series(rows, "tokens_in", mode="lines", yaxis="y2", line={"color": "#8a94a6"}), "name": "tokens in"},
        {**series(rows, "tokens_out", mode="lines", yaxis="y2", line={"color": "#2e9e5b"}), "name": "tokens out"},
    ], span, yaxis={**title("USD"), "rangemode": "tozero", "tickformat": "$.4~f"},
        yaxis2={**title("tokens"), "overlaying": "y", "side": "right", "rangemode": "tozero", "showgrid": False})
