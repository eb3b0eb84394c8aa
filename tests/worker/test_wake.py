"""Submits and cancels wake idle workers at once; ARQ's poll timer is only the fallback."""
from __future__ import annotations

import asyncio
import inspect
import time

import arq.utils
import arq.worker

from runner import Client, JobStatus
from runner.worker import wake
from tests.conftest import WorkerFactory
from tests.polling import wait_until


def test_the_wait_is_taskdecks_own_and_arqs_poll_timer_stays_arqs() -> None:
    import runner.worker

    assert vars(arq.worker)["poll"] is arq.utils.poll, "Taskdeck must not replace ARQ's poll timer for every worker"
    assert vars(runner.worker.WorkerSettings)["poll_delay"] == 0, \
        "a Taskdeck worker waits in claim.py, not in ARQ's timer"
    main = inspect.getsource(arq.worker.Worker.main)
    assert "async for _ in poll(self.poll_delay_s):" in main and "await self._poll_iteration()" in main, \
        "Worker.main changed: the wake-up (claim.poll_iteration) needs updating for this ARQ"


def test_a_wake_polls_at_once_then_after_its_delay_or_when_set() -> None:
    async def scenario() -> list[float]:
        w = wake.Wake(1.0)
        times = []
        for nudge in (False, False, True):
            t0 = time.perf_counter()
            if nudge:
                asyncio.get_running_loop().call_later(0.05, w.set)
            await w.next_poll()
            times.append(time.perf_counter() - t0)
        return times

    first, timed, woken = asyncio.run(scenario())
    assert first < 0.02, "the first poll waits for nothing"
    assert 0.95 < timed < 2.5, "an idle worker polls every delay_s"
    assert 0.04 < woken < 0.5, "a wake-up cuts the wait short"


def test_nudge_wakes_only_the_worker_whose_task_calls_it() -> None:
    """execution.end calls `wake.nudge()` from a job task: it reaches that job's worker only."""
    async def scenario() -> tuple[bool, bool]:
        mine, other = wake.Wake(1), wake.Wake(1)

        async def job() -> None:
            wake.current.set(mine)
            wake.nudge()

        await asyncio.create_task(job())
        wake.nudge()  # outside any Taskdeck worker: nothing to wake
        return mine.is_set(), other.is_set()

    assert asyncio.run(scenario()) == (True, False)


def test_a_worker_polling_every_10_s_starts_and_cancels_at_once(redis_url: str, start_worker: WorkerFactory) -> None:
    start_worker(TASKDECK_POLL_DELAY_S="10")
    with Client() as client:
        wait_until(lambda: client.stats().workers_alive == 1, 15, "the worker")
        for _ in range(3):
            job = client.submit("DEMO", {"duration_s": 0})
            done = client.wait_terminal(job.id, 5)
            assert done.status is JobStatus.completed, "a submit did not wake the idle worker"
            assert done.started_at is not None and (done.started_at - done.queued_at).total_seconds() < 1
        job = client.submit("TEST_SLEEP", {"seconds": 60})
        wait_until(lambda: client.get(job.id).status is JobStatus.processing, 5, "the job to start")
        assert client.cancel(job.id).status is JobStatus.cancelled, "a cancel did not wake the worker"
