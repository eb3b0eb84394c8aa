"""Named queues on the pages: each queue's load (Live and Workers), the queues a worker serves, and the metric
buckets regrouped from task types to their queues (Metrics' "Split by queue").

Queue names come from task declarations and TASKDECK_QUEUES (operator text): tables show them as plain cells,
markdown only through `md`.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable

import pandas as pd
import streamlit as st

from runner.models import QueueLoad, WorkerInfo
from runner.queues import DEFAULT
from runner.reads.metrics import Bucket, Window
from runner.registry import TaskType

from .text import md

LOAD_COLUMNS = {
    "Queue": st.column_config.TextColumn("Queue", width="small"),
    "Waiting": st.column_config.NumberColumn("Waiting", help="Jobs due to run, not yet claimed by a worker",
                                             format="localized"),
    "Running": st.column_config.NumberColumn("Running", help="Jobs live workers run from this queue",
                                             format="localized"),
    "Slots": st.column_config.NumberColumn("Slots", help="Slots live workers give this queue (TASKDECK_QUEUES); "
                                           "0: no worker serves it", format="localized"),
    "Workers": st.column_config.NumberColumn("Workers", help="Live workers serving this queue", format="localized"),
}


def load_rows(loads: dict[str, QueueLoad]) -> pd.DataFrame:
    """One row per named queue: what waits in it, what runs, the slots live workers give it and how many serve it."""
    return pd.DataFrame([{"Queue": name, "Waiting": load.waiting, "Running": load.running, "Slots": load.capacity,
                          "Workers": load.workers} for name, load in loads.items()], columns=list(LOAD_COLUMNS))


def unserved(loads: dict[str, QueueLoad]) -> dict[str, int]:
    """The queues whose jobs wait with no live worker serving them, with how many wait."""
    return {name: load.waiting for name, load in loads.items() if load.waiting and not load.capacity}


def show_loads(loads: dict[str, QueueLoad]) -> None:
    """The per-queue table, and a warning for each queue whose jobs wait with nobody to run them; all zeros (no
    live worker, nothing waiting) is one line, not a table."""
    if not any(load.waiting or load.running or load.capacity for load in loads.values()):
        st.caption("No job waits in any queue and no live worker serves one.")
        return
    for name, waiting in unserved(loads).items():
        st.warning(md("No worker serves queue {} ({:,} waiting). Start a worker whose TASKDECK_QUEUES "
                      "names it, or one without TASKDECK_QUEUES (it serves every queue).", name, waiting),
                   icon=":material/report:")
    st.dataframe(load_rows(loads), hide_index=True, width="stretch", column_config=LOAD_COLUMNS)


def served(worker: WorkerInfo) -> str:
    """The queues a worker serves with their running jobs and slots: "generation 2/10, scraping 0/30"."""
    return ", ".join(f"{name} {running}/{slots}" for name, (running, slots) in worker.queues.items())


def queue_of(types: Iterable[TaskType]) -> Callable[[str], str]:
    """A task type's name to its queue; a type this process does not know (removed since) to `default`."""
    known = {t.name: t.queue for t in types}
    return lambda name: known.get(name, DEFAULT)


TYPED = ("hist:duration:", "duration_s:", "duration_n:", "llm_cost_usd:", "llm_tokens:")  # counters named per type
UNTYPED = ("user:", "model:")  # llm_cost_usd:user:..., llm_tokens:model:...: per user or model, not per type


def regrouped(name: str, queue: Callable[[str], str]) -> str:
    """A counter's name with its task type replaced by that type's queue; any other counter as it is."""
    for prefix in TYPED:
        if not name.startswith(prefix):
            continue
        rest = name.removeprefix(prefix)
        if prefix == "hist:duration:":
            job_type, bound = rest.rsplit(":", 1)
            return f"{prefix}{queue(job_type)}:{bound}"
        return name if rest.startswith(UNTYPED) else prefix + queue(rest)
    return name


def by_queue(window: Window, queue: Callable[[str], str]) -> Window:
    """`window` as one bucket of its sums with the per-type counters added up per queue, so that the per-type
    reads (durations(), cost_by(..., "type")) answer per queue: histograms and sums add, percentiles are computed
    from the added histograms."""
    sums: dict[str, float] = defaultdict(float)
    for name, value in window.totals.items():
        sums[regrouped(name, queue)] += value
    whole = window.overall()
    return Window.model_construct(range=whole.range, resolution=whole.resolution, top_errors=whole.top_errors,
                                  buckets=[Bucket.model_construct(at=whole.buckets[0].at, counters=dict(sums))])
