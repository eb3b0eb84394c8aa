"""Metrics page: ranges, charts from the metric buckets, empty state."""
from __future__ import annotations

import asyncio

from runner import AsyncClient, Client
from runner.storage import counters
from tests.dashboard_fixtures import drive, open_page, texts


def sample_depth() -> None:
    async def go() -> None:
        async with AsyncClient() as ac:
            assert await counters.sample_depth(ac.store)
    asyncio.run(go())


def test_empty_store_shows_every_panel_empty(client: Client) -> None:
    at = open_page("metrics")
    assert [m.value for m in at.metric][:5] == ["0", "0", "0", "—", "—"]
    assert "No samples yet" in texts(at) and "No failed attempts in this range" in texts(at)
    assert not at.get("plotly_chart")


def test_charts_and_tables_from_finished_jobs(client: Client) -> None:
    for i in range(3):
        drive(client.submit("DEMO", {}).id, "completed", result={}, duration_s=2 + i)
    drive(client.submit("DEMO", {"fail_always": True}).id, "failed", error="DemoFailure: attempt 1 of job 4f3a9c21ab")
    client.submit("DEMO", {}, priority="high")
    sample_depth()
    at = open_page("metrics")
    assert [m.value for m in at.metric][:4] == ["5", "3", "1", "75%"]
    assert len(at.get("plotly_chart")) == 5
    durations, errors, users = (d.value for d in at.dataframe)
    assert list(durations["Type"]) == ["DEMO"] and durations["Runs"][0] == 3
    assert list(errors["Error"]) == ["DemoFailure: attempt <n> of job <id>"]
    assert users.to_dict("records") == [{"Submitter": "admin@local", "Completed": 3, "Failed": 1,
                                         "Success rate": 0.75}]


def test_every_range_renders(client: Client) -> None:
    drive(client.submit("DEMO", {}).id, "completed", result={})
    at = open_page("metrics")
    for span in ("1h", "7d", "30d"):
        at.button_group(key="metrics_span").set_value(span).run()
        assert not at.exception
        assert at.metric[1].value == "1"
    assert "per hour" in texts(at)
