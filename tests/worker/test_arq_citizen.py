"""Taskdeck in ARQ's process: plain ARQ workers before, beside and after Taskdeck's run exactly as ARQ
made them, and each Taskdeck worker has wake-ups of its own (issue 22). ARQ's own test suite is the
wider gate: compat/arq_suite.py."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.worker import Worker, create_worker, func

from runner import AsyncClient, JobStatus, Settings
from runner.worker import wake

PLAIN_QUEUE = "plain:queue"


async def hello(ctx: dict[str, Any], name: str) -> str:
    return f"hello {name}"


def plain_worker(redis_url: str, **kwargs: Any) -> Worker:
    """A plain ARQ worker, as an ARQ user writes one: ARQ's defaults, its own queue, burst mode."""
    return Worker([func(hello, name="hello")], redis_settings=RedisSettings.from_dsn(redis_url),
                  queue_name=PLAIN_QUEUE, burst=True, handle_signals=False, poll_delay=0.05, **kwargs)


def taskdeck_worker(s: Settings, **kwargs: Any) -> Worker:
    import runner.worker

    return create_worker(runner.worker.worker_settings(s), handle_signals=False, **kwargs)


async def enqueue_plain(redis_url: str, names: list[str]) -> list[str]:
    pool: ArqRedis = await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name=PLAIN_QUEUE)
    try:
        jobs = [await pool.enqueue_job("hello", name) for name in names]
        return [job.job_id for job in jobs if job is not None]
    finally:
        await pool.aclose()


async def run_plain(redis_url: str, names: list[str]) -> Worker:
    """Enqueue one job per name and drain them with a fresh plain worker in the running loop."""
    await enqueue_plain(redis_url, names)
    worker = plain_worker(redis_url)
    try:
        await worker.main()
    finally:
        await worker.close()
    return worker


async def submit_demo(s: Settings, n: int) -> list[str]:
    async with AsyncClient(s) as client:
        return [(await client.submit("DEMO", {"duration_s": 0})).id for _ in range(n)]


async def statuses(s: Settings, ids: list[str]) -> list[JobStatus]:
    async with AsyncClient(s) as client:
        return [(await client.get(job_id)).status for job_id in ids]


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.02)


def arq_job_lines(caplog: pytest.LogCaptureFixture, job_id: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "arq.worker" and f" {job_id}:hello" in r.getMessage()]


@pytest.fixture
def settings(redis_url: str) -> Settings:
    import runner.worker  # noqa: F401  every test here runs with Taskdeck's hooks installed, as in an app using both

    return Settings(redis_url=redis_url)


def test_a_plain_worker_runs_in_two_successive_event_loops(settings: Settings, redis_url: str) -> None:
    for round_ in range(2):
        worker = asyncio.run(run_plain(redis_url, [f"round {round_}"]))
        assert (worker.jobs_complete, worker.jobs_failed) == (1, 0), f"event loop {round_ + 1}"


def test_a_plain_worker_after_a_taskdeck_worker_in_the_same_task_keeps_arqs_lines(
        settings: Settings, redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """A Taskdeck worker's main() awaited in the caller's own task leaves its context behind: its
    quieting of ARQ's lines ends with its shutdown, and its wake-up does not outlive its loop."""
    caplog.set_level(logging.INFO, logger="arq.worker")

    async def scenario() -> tuple[list[JobStatus], str, Worker]:
        ids = await submit_demo(settings, 3)
        taskdeck = taskdeck_worker(settings, burst=True)
        try:
            await taskdeck.main()
        finally:
            await taskdeck.close()
        [plain_id] = await enqueue_plain(redis_url, ["after"])
        plain = plain_worker(redis_url)
        try:
            await plain.main()
        finally:
            await plain.close()
        return await statuses(settings, ids), plain_id, plain

    done, plain_id, plain = asyncio.run(scenario())
    assert done == [JobStatus.completed] * 3
    assert plain.jobs_complete == 1
    assert len(arq_job_lines(caplog, plain_id)) == 2, "ARQ's → and ← lines of the plain job"
    worker = asyncio.run(run_plain(redis_url, ["next loop"]))
    assert worker.jobs_complete == 1, "a plain worker in a later event loop"


def test_a_plain_and_a_taskdeck_worker_in_one_loop_both_finish_and_arq_keeps_its_lines(
        settings: Settings, redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="arq.worker")
    names = [f"n{i}" for i in range(5)]

    async def scenario() -> tuple[list[Any], list[str], list[JobStatus], Worker, Worker]:
        plain_ids = await enqueue_plain(redis_url, names)
        demo_ids = await submit_demo(settings, 5)
        plain, taskdeck = plain_worker(redis_url), taskdeck_worker(settings, burst=True)
        try:
            await asyncio.gather(asyncio.create_task(plain.main()), asyncio.create_task(taskdeck.main()))
        finally:
            await asyncio.gather(plain.close(), taskdeck.close())
        pool = await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name=PLAIN_QUEUE)
        try:
            by_id = {r.job_id: r.result for r in await pool.all_job_results()}
        finally:
            await pool.aclose()
        return [by_id.get(job_id) for job_id in plain_ids], plain_ids, await statuses(settings, demo_ids), plain, \
            taskdeck

    results, plain_ids, demo, plain, taskdeck = asyncio.run(scenario())
    assert results == [f"hello {name}" for name in names], "the plain worker ran its jobs with ARQ's own path"
    assert (plain.jobs_complete, plain.jobs_failed) == (5, 0)
    assert demo == [JobStatus.completed] * 5 and taskdeck.jobs_complete == 5
    for job_id in plain_ids:
        lines = arq_job_lines(caplog, job_id)
        assert len(lines) == 2 and "→" in lines[0] and "●" in lines[1], f"ARQ's lines for {job_id}: {lines}"
    assert not any(r.name == "arq.worker" and str(r.msg).startswith("%6.2fs") and ":taskdeck" in r.getMessage()
                   for r in caplog.records), "Taskdeck's own jobs log no ARQ per-job lines"


def test_two_taskdeck_workers_in_one_process_have_wake_ups_of_their_own(redis_url: str) -> None:
    """One worker per queue, each idle with a 30 s poll delay: a submit to one queue wakes that queue's
    worker at once and leaves the other waiting, and a job ending in one wakes only that one."""
    import runner.worker  # noqa: F401

    first = Settings(redis_url=redis_url, prefix="first:", queue_name="first:queue", poll_delay_s=30)
    second = Settings(redis_url=redis_url, prefix="second:", queue_name="second:queue", poll_delay_s=30)

    async def last_poll(worker: Worker) -> float | None:
        found = worker.ctx.get(wake.CTX_KEY)
        return found.last_poll if isinstance(found, wake.Wake) else None

    async def scenario() -> None:
        a, b = taskdeck_worker(first), taskdeck_worker(second)
        tasks = [asyncio.create_task(a.main()), asyncio.create_task(b.main())]
        try:
            await eventually(lambda: _polled(a), 10, "the first worker's first poll")
            await eventually(lambda: _polled(b), 10, "the second worker's first poll")
            wake_a, wake_b = a.ctx[wake.CTX_KEY], b.ctx[wake.CTX_KEY]
            assert wake_a is not wake_b and wake_a.event is not wake_b.event
            await asyncio.sleep(0.3)  # both idle now, in their 30 s wait
            b_before = await last_poll(b)

            [job_a] = await submit_demo(first, 1)
            await eventually(lambda: _done(first, job_a), 5, "the first queue's job (its worker woken)")
            assert await last_poll(b) == b_before and not wake_b.is_set(), \
                "a wake-up for the first queue reached the second queue's worker"

            a_before = await last_poll(a)
            [job_b] = await submit_demo(second, 1)
            await eventually(lambda: _done(second, job_b), 5, "the second queue's job (its worker woken)")
            assert await last_poll(a) == a_before and not wake_a.is_set(), \
                "a wake-up (submit, or the job ending) for the second queue reached the first queue's worker"
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(a.close(), b.close())

    asyncio.run(scenario())


async def _polled(worker: Worker) -> bool:
    found = worker.ctx.get(wake.CTX_KEY)
    return isinstance(found, wake.Wake) and found.last_poll is not None


async def _done(s: Settings, job_id: str) -> bool:
    return (await statuses(s, [job_id])) == [JobStatus.completed]
