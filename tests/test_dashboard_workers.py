"""Workers page: alive and dead workers, empty state."""
from __future__ import annotations

import asyncio

from runner import AsyncClient, Client
from runner.worker import heartbeat
from runner.worker.execution import WorkerState
from tests.dashboard_fixtures import button, open_page, texts


def test_no_workers(client: Client) -> None:
    at = open_page("workers")
    assert "No worker has reported" in texts(at)


def test_alive_and_dead_workers(client: Client) -> None:
    async def beats() -> None:
        async with AsyncClient() as ac:
            await heartbeat.beat(WorkerState(ac.store, "w-alive"))
            await heartbeat.beat(WorkerState(ac.store, "w-dead"), alive=False)
    asyncio.run(beats())
    at = open_page("workers")
    frame = at.dataframe[0].value
    assert list(frame["Worker"]) == ["w-alive", "w-dead"] and list(frame["Status"]) == ["alive", "dead"]
    assert [m.value for m in at.metric][:2] == ["1", "1"]


def test_schedules_are_listed(client: Client) -> None:
    from runner.client.schedules import Schedule
    assert "No schedules" in texts(open_page("workers"))
    client.save_schedule(Schedule(name="nightly-demo", type="DEMO", cron="0 3 * * *"))
    frame = open_page("workers").dataframe[-1].value
    assert frame.to_dict("records")[0] | {"Next run": "", "Last run": ""} == {
        "Name": "nightly-demo", "Type": "DEMO", "Cron": "0 3 * * *", "State": "active", "Next run": "",
        "Last run": "", "Last outcome": "—", "Owner": frame["Owner"][0]}


def test_admins_run_and_pause_schedules_from_the_workers_page(client: Client) -> None:
    from runner.client.schedules import Schedule
    client.save_schedule(Schedule(name="a-demo", type="DEMO", cron="0 3 * * *"))
    client.save_schedule(Schedule(name="b-demo", type="DEMO", cron="0 4 * * *", payload={"steps": 2}))
    at = open_page("workers")
    at.selectbox(key="workers_schedule").set_value("b-demo").run()
    button(at, "Run now").click().run()
    [job] = client.list()
    assert job.payload["steps"] == 2 and any("b-demo" in t.value for t in at.toast)
    button(at, "Pause").click().run()
    assert [s.paused for s in client.schedules()] == [False, True]
    assert list(at.dataframe[-1].value["State"]) == ["active", "paused"]
    button(at, "Resume").click().run()
    assert not client.schedules()[1].paused
    button(at, "Run now").click().run()
    assert len(client.list()) == 1 and "still active" in " ".join(t.value for t in at.toast)
