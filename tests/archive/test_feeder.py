"""The feeder, on both stores: jobs run by a real worker end up archived exactly once, a feeder killed
before its ack loses nothing, nor does an archive outage; backfill archives what the stream missed."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from typing import TypeVar

import pytest

from runner import AsyncClient, JobStatus
from runner.archive import feeder
from runner.archive.feeder import Feeder
from runner.archive.store import Archive, Filters, Record
from runner.models import Job
from runner.storage.store import Store
from tests.archive.conftest import make_job
from tests.conftest import WorkerFactory

T = TypeVar("T")
ALL = None


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float, what: str) -> T:
    """check()'s first truthy value, polled until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last value: {value!r})")
        await asyncio.sleep(0.05)


@pytest.fixture
def worker(start_worker: WorkerFactory) -> Iterator[None]:
    start_worker(TASKDECK_ARCHIVE="false")  # these tests feed the archive themselves
    yield


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[AsyncClient]:
    async with AsyncClient() as opened:
        yield opened


async def finished(client: AsyncClient, ids: list[str], timeout: float = 20.0) -> list[Job]:
    async def all_final() -> list[Job] | None:
        jobs = [await client.get(job_id) for job_id in ids]
        return jobs if all(job.status.terminal for job in jobs) else None

    return await eventually(all_final, timeout, f"{len(ids)} jobs to finish")


async def run_jobs(client: AsyncClient, ok: int = 6, failing: int = 2) -> list[Job]:
    ids = [(await client.submit("DEMO", {"duration_s": 0, "output": f"poster {n}"})).id for n in range(ok)]
    ids += [(await client.submit("TEST_FAIL_WITH", {"message": f"quota gone {n}"})).id for n in range(failing)]
    return await finished(client, ids)


async def archived(archive: Archive) -> int:
    return await asyncio.to_thread(archive.count, Filters(), visible_to=ALL)


async def fed(feed: Feeder, archive: Archive, store: Store, expected: int) -> None:
    """Run the feeder until `expected` jobs are archived and the group's backlog is empty."""
    async def done() -> bool:
        await feed.run_once()
        backlog = await feeder.backlog(store)
        return await archived(archive) == expected and backlog.pending == 0 and backlog.lag == 0

    await eventually(done, 20, f"{expected} jobs archived")


async def test_jobs_run_by_a_worker_are_archived_exactly_once(
        worker: None, client: AsyncClient, store: Store, archive: Archive) -> None:
    jobs = await run_jobs(client)
    cancelled = await client.submit("TEST_SLEEP", {"seconds": 60})
    await client.cancel(cancelled.id)
    jobs += await finished(client, [cancelled.id])
    feeders = [Feeder(store, archive, f"feeder-{n}") for n in range(2)]  # two workers' feeders, racing
    await asyncio.gather(*(fed(f, archive, store, len(jobs)) for f in feeders))
    assert await feeders[0].run_once() == 0  # nothing left: no second write

    for job in jobs:
        row = await asyncio.to_thread(archive.get, job.id, ALL)
        assert row is not None and row.job.model_dump(exclude={"attempt_log"}) == job.model_dump(
            exclude={"attempt_log"})
        assert [entry["action"] for entry in row.audit] == (["submit", "cancel"] if job.id == cancelled.id
                                                           else ["submit"])
    failed = next(job for job in jobs if job.status is JobStatus.failed)
    await client.retry(failed.id)
    await finished(client, [failed.id])
    await fed(feeders[0], archive, store, len(jobs))
    row = await asyncio.to_thread(archive.get, failed.id, ALL)
    assert row is not None and row.job.attempts == 2 and [a["action"] for a in row.audit] == ["submit", "retry"]


async def test_a_killed_feeders_entries_are_claimed_and_archived(
        worker: None, client: AsyncClient, store: Store, archive: Archive) -> None:
    jobs = await run_jobs(client)
    await feeder.ensure_group(store)
    read = await store.redis.xreadgroup(feeder.GROUP, "killed", {store.keys.events: ">"}, count=10_000)
    assert read and (await feeder.backlog(store)).pending > 0  # read, never acked: the feeder died here

    live = Feeder(store, archive, "live", claim_idle_s=0.3, batch=3)  # small batches: several reads and writes
    await fed(live, archive, store, len(jobs))
    ids = {job.id for job in (await asyncio.to_thread(archive.page, Filters(), None, 100, visible_to=ALL)).jobs}
    assert ids == {job.id for job in jobs}


async def test_an_archive_outage_loses_nothing(
        worker: None, client: AsyncClient, store: Store, archive: Archive,
        outage: Callable[[], AbstractContextManager[None]]) -> None:
    feed = Feeder(store, archive, "steady", claim_idle_s=60)
    before = await run_jobs(client, ok=3, failing=1)
    await fed(feed, archive, store, len(before))
    with outage():
        during = await run_jobs(client, ok=4, failing=1)
        assert await feed.run_once() == 0  # logged, not raised; the entries stay pending
        assert await feed.run_once() == 0
        assert (await feeder.backlog(store)).pending > 0
    await fed(feed, archive, store, len(before) + len(during))


async def test_backfill_archives_finished_jobs_the_stream_no_longer_has(
        worker: None, client: AsyncClient, store: Store, archive: Archive) -> None:
    jobs = await run_jobs(client, ok=5, failing=2)
    steps, calls = store.keys.llm_usage(jobs[0].id), store.keys.llm_calls(jobs[0].id)  # as an LLM task leaves them
    await store.redis.hset(steps, mapping={"Draft\ttokens_in": "120", "Draft\tcost_usd": "0.002"})
    await store.redis.rpush(calls, '{"model": "gpt-4o-mini", "tokens_in": 120}', "not json")
    await store.redis.delete(store.keys.events)  # trimmed away before any feeder read it
    assert await feeder.backfill(store, archive, batch=3) == len(jobs)
    assert await archived(archive) == len(jobs)
    row = await asyncio.to_thread(archive.get, jobs[0].id, ALL)
    assert row is not None and row.usage == {"steps": {"Draft\ttokens_in": "120", "Draft\tcost_usd": "0.002"},
                                             "calls": [{"model": "gpt-4o-mini", "tokens_in": 120}]}
    assert await feeder.backfill(store, archive) == len(jobs)  # again: the same rows, rewritten
    assert await archived(archive) == len(jobs)


async def test_a_job_the_archive_refuses_does_not_hold_back_the_others(archive: Archive, backend: str) -> None:
    good = [make_job(n) for n in range(3)]
    refused = make_job(9, payload={"text": "a NUL \x00 byte"})  # Postgres' jsonb holds no NUL character
    expected = len(good) + (backend == "sqlite")
    assert await feeder.write(archive, [Record(job) for job in [*good, refused]], []) == expected
    assert await archived(archive) == expected
