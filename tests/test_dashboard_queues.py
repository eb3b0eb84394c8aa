"""Named queues on the dashboard (issue 14): Live and Workers show each queue's waiting and running jobs, its slots
and the workers serving it, and warn about a queue nobody serves; Workers shows which queues each worker serves;
Metrics splits durations and cost per queue. Real worker processes started with TASKDECK_QUEUES."""
from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from runner import Client, JobStatus
from runner.llm.usage import Call
from tests.conftest import WorkerFactory
from tests.dashboard_fixtures import drive, open_page, texts
from tests.polling import wait_until
from ui.queues import queue_of, regrouped
from ui.tables import link

LONG = {"seconds": 60}


def loads_table(at: AppTest) -> pd.DataFrame:
    [frame] = [d.value for d in at.dataframe if "Slots" in d.value.columns]
    return frame


def load_of(at: AppTest) -> dict[str, dict[str, Any]]:
    return {row.pop("Queue"): row for row in loads_table(at).to_dict("records")}


def running(client: Client, **expected: int) -> bool:
    """True once the workers' heartbeats report `expected` running jobs per queue."""
    loads = client.stats().queues
    return all(loads[name].running == n for name, n in expected.items())


def test_live_shows_each_queues_load_its_jobs_queue_and_warns_of_a_queue_nobody_serves(
        client: Client, start_worker: WorkerFactory) -> None:
    start_worker(TASKDECK_QUEUES="generation=2")
    generate = [client.submit("TEST_GENERATE", LONG) for _ in range(3)]
    scrape = [client.submit("TEST_SCRAPE", {"seconds": 0}) for _ in range(2)]
    wait_until(lambda: running(client, generation=2), 20, "two generations running")

    at = open_page("live")
    load = load_of(at)
    assert load["generation"] == {"Waiting": 1, "Running": 2, "Slots": 2, "Workers": 1}
    assert load["scraping"] == {"Waiting": 2, "Running": 0, "Slots": 0, "Workers": 0}
    assert load["sync"] == {"Waiting": 0, "Running": 0, "Slots": 0, "Workers": 0}
    warnings = [w.value for w in at.warning]
    assert warnings == ["No worker serves queue `scraping` (2 waiting). Start a worker whose TASKDECK_QUEUES "
                        "names it, or one without TASKDECK_QUEUES (it serves every queue)."]

    frame = at.dataframe[0].value
    rows = {job: (queue, position) for job, queue, position in zip(frame["Job"], frame["Queue name"], frame["Queue"],
                                                                    strict=True)}
    waiting = next(j for j in generate if client.get(j.id).status is JobStatus.queued)
    assert rows[link(waiting.id)] == ("generation", "#1")  # its place in its own queue
    # two submits within one millisecond share a queue score, so only their places, not their order, are certain
    assert sorted(rows[link(j.id)] for j in scrape) == [("scraping", "#1"), ("scraping", "#2")]
    assert sorted(rows[link(j.id)] for j in generate if j.id != waiting.id) == [("generation", "—")] * 2


def test_workers_page_shows_the_queues_each_worker_serves_and_each_queues_load(
        client: Client, start_worker: WorkerFactory) -> None:
    start_worker(TASKDECK_QUEUES="generation=2,scraping=3")
    client.submit("TEST_GENERATE", LONG)
    client.submit("TEST_SCRAPE", LONG)
    client.submit("TEST_SLEEP", {"seconds": 0})  # the default queue, which this worker does not serve
    wait_until(lambda: running(client, generation=1, scraping=1), 20, "a generation and a scrape running")

    at = open_page("workers")
    roster = at.dataframe[0].value
    assert list(roster["Queues"]) == ["generation 1/2, scraping 1/3"]
    load = load_of(at)
    assert load["generation"] == {"Waiting": 0, "Running": 1, "Slots": 2, "Workers": 1}
    assert load["scraping"] == {"Waiting": 0, "Running": 1, "Slots": 3, "Workers": 1}
    assert load["default"] == {"Waiting": 1, "Running": 0, "Slots": 0, "Workers": 0}
    assert "No worker serves queue `default` (1 waiting)." in texts(at)
    assert "queue `generation`" not in texts(at) and "queue `scraping`" not in texts(at)


def test_a_second_worker_adds_its_slots_and_an_idle_store_shows_no_table(
        client: Client, start_worker: WorkerFactory) -> None:
    at = open_page("live")
    assert "No job waits in any queue and no live worker serves one." in texts(at) and not at.warning
    start_worker(TASKDECK_QUEUES="scraping=3")
    start_worker(TASKDECK_QUEUES="scraping=4,sync=5")
    wait_until(lambda: client.stats().queues["scraping"].workers == 2, 20, "two workers serving scraping")
    at = open_page("workers")
    load = load_of(at)
    assert load["scraping"] == {"Waiting": 0, "Running": 0, "Slots": 7, "Workers": 2}
    assert load["sync"] == {"Waiting": 0, "Running": 0, "Slots": 5, "Workers": 1}
    assert sorted(at.dataframe[0].value["Queues"]) == ["scraping 0/3", "scraping 0/4, sync 0/5"]


def test_metrics_split_durations_per_queue(client: Client, start_worker: WorkerFactory) -> None:
    start_worker(TASKDECK_QUEUES="generation=2,scraping=2,default=2")
    jobs = [client.submit("TEST_GENERATE", {"seconds": 0}) for _ in range(2)]
    jobs += [client.submit("TEST_SCRAPE", {"seconds": 0}), client.submit("TEST_SLEEP", {"seconds": 0})]
    for job in jobs:
        assert client.wait_terminal(job.id, 20).status is JobStatus.completed

    at = open_page("metrics")
    durations = at.dataframe[0].value
    assert dict(zip(durations["Type"], durations["Runs"], strict=True)) == {
        "TEST_GENERATE": 2, "TEST_SCRAPE": 1, "TEST_SLEEP": 1}
    at.button_group(key="metrics_split").set_value("queue").run()
    assert not at.exception
    durations = at.dataframe[0].value
    assert dict(zip(durations["Queue"], durations["Runs"], strict=True)) == {"default": 1, "generation": 2,
                                                                              "scraping": 1}
    assert "Duration per queue" in texts(at)
    assert [m.value for m in at.metric][:3] == ["4", "4", "0"]  # the totals do not split


def call(cost: float) -> Call:
    return Call(model="gpt-4o-mini", tokens_in=1000, tokens_out=200, cost_usd=cost, seconds=1.0, step="Draft")


def test_metrics_split_cost_per_queue(client: Client) -> None:
    drive(client.submit("TEST_GENERATE", {"seconds": 0}).id, "completed", result={}, calls=[call(0.25)])
    drive(client.submit("TEST_GENERATE", {"seconds": 0}).id, "completed", result={}, calls=[call(0.5)])
    drive(client.submit("DEMO", {}).id, "completed", result={}, calls=[call(0.125)])
    at = open_page("metrics")
    at.button_group(key="metrics_split").set_value("queue").run()
    by = {d.value.columns[0]: dict(zip(d.value.iloc[:, 0], d.value["Cost"], strict=True)) for d in at.dataframe
          if list(d.value.columns)[1:] == ["Cost"]}
    assert by["Queue"] == {"generation": pytest.approx(0.75), "default": pytest.approx(0.125)}
    assert by["User"] == {"admin@local": pytest.approx(0.875)} and "Task type" not in by
    at.button_group(key="metrics_split").set_value("type").run()
    by = {d.value.columns[0] for d in at.dataframe if list(d.value.columns)[1:] == ["Cost"]}
    assert by == {"Task type", "User", "Model"}


def test_counters_regroup_by_queue_and_an_unknown_type_falls_to_default(client: Client) -> None:
    queue = queue_of(client.types())
    assert [regrouped(name, queue) for name in (
        "hist:duration:TEST_SCRAPE:2.5", "duration_s:TEST_GENERATE", "duration_n:GONE_TYPE",
        "llm_cost_usd:SCRAPE_WEBSITE", "llm_cost_usd:user:TEST_GENERATE", "llm_tokens:model:m", "completed")] == [
        "hist:duration:scraping:2.5", "duration_s:generation", "duration_n:default",
        "llm_cost_usd:scraping", "llm_cost_usd:user:TEST_GENERATE", "llm_tokens:model:m", "completed"]
