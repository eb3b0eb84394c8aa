"""One query engine (runner/reads/history.py) under list, page, history, count and export: the same jobs in the
same order from each, at no more round trips than the query needs; and the one duty lock."""
from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterator
from itertools import pairwise
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from redis.asyncio.connection import AbstractConnection

from runner import AsyncClient, Client, JobStatus
from runner.client.facade import parse_statuses
from runner.reads.history import HistoryQuery
from runner.storage import counters
from runner.worker import heartbeat
from tests.dashboard_fixtures import drive

STATUSES: list[Any] = [None, "queued", ["completed", "failed"], ["completed", "failed", "cancelled"], "active"]
TYPES = [None, "DEMO"]
USERS = [None, "u1@x.io"]


@pytest.fixture
def seeded(redis_url: str) -> Iterator[Client]:
    """30 jobs over two types, three users and four statuses, each submitted after the last."""
    with Client() as client:
        for i in range(30):
            payload = {} if i % 2 else {"seconds": 1}
            job = client.submit("DEMO" if i % 2 else "TEST_SLEEP", payload, user=f"u{i % 3}@x.io")
            if i % 4 == 1:
                client.cancel(job.id)
            elif i % 4 == 2:
                drive(job.id, "completed")
            elif i % 4 == 3:
                drive(job.id, "failed", error="DemoFailure: boom")
        yield client


def exported(client: Client, query: HistoryQuery) -> list[str]:
    rows = list(csv.reader(io.StringIO("".join(client.export_csv(query)))))
    return [row[0] for row in rows[1:]]


@pytest.mark.parametrize("status", STATUSES)
def test_every_read_gives_the_same_jobs_in_the_same_order(seeded: Client, status: Any) -> None:
    for type_ in TYPES:
        for user in USERS:
            listed = [job.id for job in seeded.list(status, type_, user, limit=1000)]
            records = seeded.get_many(listed)
            assert all(a.queued_at > b.queued_at for a, b in pairwise(records)), (status, type_, user)
            assert seeded.count(status, type_, user) == len(listed)
            assert [job.id for k in range(0, len(listed), 4)
                    for job in seeded.list(status, type_, user, limit=4, offset=k)] == listed
            paged, cursor = [], None
            while True:
                page = seeded.page(status, type_, user, limit=3, cursor=cursor)
                paged += [job.id for job in page.jobs]
                if not (cursor := page.next_cursor):
                    break
            assert paged == listed
            query = HistoryQuery(status=parse_statuses(status), type=type_, user=user)
            found = seeded.history(query, limit=1000)
            assert ([job.id for job in found.jobs], found.total, found.exact) == (listed, len(listed), True)
            assert exported(seeded, query) == listed


def test_filters_narrow_the_list(seeded: Client) -> None:
    jobs = seeded.list(["completed", "failed"], "DEMO", "u1@x.io", limit=1000)
    assert jobs and {(job.type, job.user_id) for job in jobs} == {("DEMO", "u1@x.io")}
    assert {job.status for job in jobs} <= {JobStatus.completed, JobStatus.failed}
    everything = seeded.list(limit=1000)
    assert len(everything) == 30 and seeded.list(limit=5, offset=28) == everything[28:]


class RoundTrips:
    """Counts what the client sends to Redis: one command, or one pipeline, is one round trip."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.n = 0
        send = AbstractConnection.send_packed_command

        async def counted(conn: AbstractConnection, *args: Any, **kwargs: Any) -> None:
            self.n += 1
            await send(conn, *args, **kwargs)

        monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)

    async def of(self, read: Any) -> int:
        self.n = 0
        await read
        return self.n


async def test_a_list_costs_the_round_trips_it_needs(seeded: Client, monkeypatch: pytest.MonkeyPatch,
                                                     r: redis.Redis) -> None:
    trips = RoundTrips(monkeypatch)
    async with AsyncClient() as ac:
        await ac.list()  # connects
        r.config_resetstat()
        assert await trips.of(ac.list("queued", limit=5)) == 2  # the ids, the records
        assert {name.split("|")[0] for name in r.info("commandstats")} <= {
            "cmdstat_zrevrangebyscore", "cmdstat_hmget", "cmdstat_config", "cmdstat_info"}  # no count
        several = ["completed", "failed", "cancelled"]
        assert await trips.of(ac.list(several, limit=5, offset=3)) == 2  # the three sets read at once
        # a filter adds the counts (to read the smallest index) and the membership checks
        assert await trips.of(ac.list(several, "DEMO", limit=5)) == 4  # by type
        assert await trips.of(ac.list(["queued", "cancelled"], "TEST_SLEEP", limit=5)) == 4  # by status


async def test_one_duty_lock_for_every_duty(redis_url: str, r: redis.Redis) -> None:
    async with AsyncClient() as ac:
        store = ac.store
        assert await store.take_duty("sweep", 2.0, holder="worker-a")
        assert not await store.take_duty("sweep", 2.0, holder="worker-b")
        assert r.get("taskdeck:duty:sweep") == "worker-a" and 0 < r.pttl("taskdeck:duty:sweep") <= 2000
        state: Any = SimpleNamespace(store=store, id="worker-c")
        assert await heartbeat.turn(state, "schedules", 1.0)
        assert not await heartbeat.turn(state, "schedules", 1.0)
        assert r.get("taskdeck:duty:schedules") == "worker-c"
        assert await counters.sample_depth(store, every_s=5.0)
        assert not await counters.sample_depth(store, every_s=5.0)
        assert r.get("taskdeck:duty:depth") == "1" and 0 < r.pttl("taskdeck:duty:depth") <= 5000
        r.delete("taskdeck:duty:depth")
        await asyncio.sleep(0)
        assert await counters.sample_depth(store, every_s=5.0)
