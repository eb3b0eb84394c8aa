"""Metrics: queue depth, throughput, success rate, durations, waits, errors and submitters over a
time range, from the metric buckets (per minute for 1h and 24h, per hour for 7d and 30d). Durations and cost are
split per task type, or per named queue (each type's counters added up into its queue's)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st
from plotly.graph_objects import Figure

from runner.reads import llm_status as status
from ui import charts
from ui.alerts import stop_on_refusal
from ui.queues import by_queue, queue_of
from ui.session import client
from ui.text import Markdown, md, percent, seconds, trusted

c = client()
st.title("Metrics")
pick_span, pick_split = st.columns(2)
span = pick_span.segmented_control("Time range", ["1h", "24h", "7d", "30d"], default="24h", key="metrics_span",
                                   required=True, persist_state="session") or "24h"
split = pick_split.segmented_control("Split by", ["type", "queue"], default="type", key="metrics_split",
                                     required=True, persist_state="session",
                                     help="Durations and cost per task type, or per named queue") or "type"
with stop_on_refusal(icon=":material/lock:"):
    window = c.metrics(span)

totals = st.columns(5)
totals[0].metric("Submitted", md("{:,.0f}", window.total("submitted")), border=True)
totals[1].metric("Completed", md("{:,.0f}", window.total("completed")), border=True)
totals[2].metric("Failed", md("{:,.0f}", window.total("failed")), border=True)
totals[3].metric("Success rate", percent(window.success_rate()), border=True)
totals[4].metric("Mean wait", seconds(window.mean_wait_s()), border=True)
step = "minute" if window.resolution == "1m" else "hour"
split_window = by_queue(window, queue_of(c.types())) if split == "queue" else window.overall()
split_label = "Queue" if split == "queue" else "Type"


def panel(column: Any, title: Markdown, figure: Callable[[], Figure], empty: bool,
          note: Markdown | None = None) -> None:
    """A chart in a bordered box; the figure is built only when there is something to draw."""
    with column.container(border=True):
        st.markdown(md("**{}**", title))
        if empty:
            st.caption(note or "No data in this range yet.")
        else:
            st.plotly_chart(figure(), width="stretch", key=title)


depth = window.queue_depth()
left, right = st.columns(2)
panel(left, trusted("Queue depth per priority"), lambda: charts.queue_depth(depth, window.span), not depth,
      trusted("No samples yet: workers sample the queue depth every few seconds while they run."))
done = window.throughput()
panel(right, trusted(f"Completed and failed per {step}"), lambda: charts.throughput(done, window.span),
      not any(r["completed"] or r["failed"] for r in done))
left, right = st.columns(2)
rates = window.success_over_time()
panel(left, trusted(f"Success rate per {step}"), lambda: charts.success_rate(rates, window.span),
      all(r["success_rate"] is None for r in rates))
durations = split_window.durations()
panel(right, trusted(f"Duration p50 / p95 per {split} (s)"), lambda: charts.durations(durations), not durations)
left, right = st.columns(2)
waits = window.wait_histogram()
panel(left, trusted("Wait before the first start"), lambda: charts.wait_histogram(waits),
      not any(r["count"] for r in waits))
with right.container(border=True):
    st.markdown(trusted(f"**Duration per {split}**"))
    if durations:
        st.dataframe(pd.DataFrame([{split_label: d.type, "Runs": d.count, "Mean": seconds(d.mean_s),
                                    "p50": seconds(d.p50_s), "p95": seconds(d.p95_s)} for d in durations]),
                     hide_index=True, width="stretch")
    else:
        st.caption("No completed jobs in this range yet.")

left, right = st.columns(2)
with left.container(border=True):
    st.markdown("**Top error messages** (failed attempts; numbers and ids folded)")
    if window.top_errors:
        st.dataframe(pd.DataFrame([{"Error": e.message, "Count": e.count} for e in window.top_errors]),
                     hide_index=True, width="stretch")
    else:
        st.caption("No failed attempts in this range.")
with right.container(border=True):
    st.markdown("**Success rate per submitter**")
    users = window.by_user()
    if users:
        st.dataframe(pd.DataFrame([{"Submitter": u.user, "Completed": u.completed, "Failed": u.failed,
                                    "Success rate": u.success_rate} for u in users]), hide_index=True,
                     width="stretch", column_config={"Success rate": st.column_config.ProgressColumn(
                         "Success rate", min_value=0.0, max_value=1.0, format="percent")})
    else:
        st.caption("No finished jobs in this range.")

st.subheader("LLM usage and cost")
usage = status.cost_over_time(window)
spent = [row for row in usage if row["calls"] or row["cost_usd"]]
llm = st.columns(5)
llm[0].metric("Cost", md("${:,.4f}", sum(r["cost_usd"] for r in usage)), border=True)
llm[1].metric("Tokens in", md("{:,}", sum(r["tokens_in"] for r in usage)), border=True)
llm[2].metric("Tokens out", md("{:,}", sum(r["tokens_out"] for r in usage)), border=True)
llm[3].metric("LLM calls", md("{:,}", sum(r["calls"] for r in usage)), border=True)
llm[4].metric("Throttled (429)", md("{:,}", sum(r["throttled"] for r in usage)), border=True,
              help="Calls that waited out a 429 from the endpoint")
if not spent:
    st.caption("No LLM calls in this range.")
else:
    panel(st, trusted(f"Cost and tokens per {step}"), lambda: charts.llm_cost(usage, window.span), False)
    # cost_by adds over buckets: one bucket of the range's sums (per queue: its "type" counters are the queues')
    breakdowns: tuple[tuple[status.CostKind, str], ...] = (
        ("type", "Queue" if split == "queue" else "Task type"), ("user", "User"), ("model", "Model"))
    for box, (kind, title) in zip(st.columns(len(breakdowns)), breakdowns, strict=True):
        with box.container(border=True):
            st.markdown(trusted(f"**Cost by {title.lower()}**"))
            costs = status.cost_by(split_window, kind)
            if costs:
                st.dataframe(pd.DataFrame({title: list(costs), "Cost": list(costs.values())}), hide_index=True,
                             width="stretch", column_config={"Cost": st.column_config.NumberColumn(
                                 "Cost", format="$%.4f")})
            else:
                st.caption("No cost in this range.")
