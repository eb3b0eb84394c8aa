"""Fault injection at scale. Each runs reduced in the suite; `./taskdeck test -m slow` runs them full size."""
from __future__ import annotations

import signal
import time

import pytest

from runner import Client, Job, JobStatus, RedisUnavailable, Settings
from tests.polling import wait_until


def scale(reduced: int, full: int) -> list:
    return [pytest.param(reduced, id=f"n{reduced}"), pytest.param(full, id=f"n{full}", marks=pytest.mark.slow)]


def all_terminal(client: Client, ids: list[str]) -> list:
    jobs = [client.get(i) for i in ids]
    return jobs if all(j.status.terminal for j in jobs) else []


@pytest.mark.parametrize("n", scale(60, 200))
def test_sigkill_one_of_two_workers_loses_nothing(redis_url: str, start_worker, n: int) -> None:
    victim = start_worker(TASKDECK_MAX_JOBS="50")
    survivor = start_worker(TASKDECK_MAX_JOBS="50")
    with Client() as client:
        ids = [client.submit("DEMO", {"duration_s": 2, "steps": 2}).id for _ in range(n)]
        def on_victim() -> list[Job]:
            return [j for j in client.list(status="processing", limit=1000) if f"-{victim.pid}-" in (j.worker or "")]

        in_flight = len(wait_until(lambda: len(on_victim()) >= 10 and on_victim(), 20, "jobs on the victim"))
        victim.send_signal(signal.SIGKILL)
        jobs = wait_until(lambda: all_terminal(client, ids), 60 + n / 5, "every job to finish")
        reruns = [j for j in jobs if any(a.outcome == "lost" for a in j.attempt_log)]
        print(f"\n{n} jobs, SIGKILL with {in_flight}+ in flight on the victim: "
              f"{sum(j.status is JobStatus.completed for j in jobs)} completed, {len(reruns)} ran twice")
        assert [j.status for j in jobs] == [JobStatus.completed] * n, "a job was lost or failed"
        assert len(reruns) >= in_flight
        assert client.stats().lost_1h == len(reruns), "duplicate executions are counted in metrics"
    assert survivor.poll() is None


def test_sigterm_deploy_finishes_short_jobs_and_hands_back_long_ones(redis_url: str, start_worker) -> None:
    old = start_worker(TASKDECK_SHUTDOWN_GRACE_S="2")
    with Client() as client:
        short = [client.submit("DEMO", {"duration_s": 1}).id for _ in range(3)]
        long = [client.submit("TEST_SLEEP", {"seconds": 30}).id for _ in range(3)]
        wait_until(lambda: client.stats().by_status[JobStatus.processing] == 6, 15, "all six to run")
        began = time.monotonic()
        old.send_signal(signal.SIGTERM)
        assert old.wait(10) == 0
        took = time.monotonic() - began
        print(f"\nSIGTERM → worker exit: {took:.1f} s (grace 2 s)")
        assert took < 2 + 3
        assert all(client.get(i).status is JobStatus.completed for i in short)
        back = [client.get(i) for i in long]
        assert all(j.status is JobStatus.queued and j.attempts == 0 for j in back), "long jobs charged an attempt"
        start_worker()
        wait_until(lambda: all(client.get(i).status is JobStatus.processing for i in long), 15, "the next worker")
        assert all(client.get(i).attempts == 1 for i in long)


@pytest.mark.parametrize("pause_s", scale(6, 30))
def test_redis_paused_submit_fails_fast_and_nothing_stays_processing(own_redis, start_worker, pause_s: int) -> None:
    worker = start_worker(REDIS_URL=own_redis.url, TASKDECK_LEASE_S="30")
    with Client(Settings(redis_url=own_redis.url)) as client:
        running = client.submit("DEMO", {"duration_s": 2, "steps": 2})
        wait_until(lambda: client.get(running.id).status is JobStatus.processing, 15, "the job to start")
        own_redis.proc.send_signal(signal.SIGSTOP)
        paused = time.monotonic()
        with pytest.raises(RedisUnavailable, match="job queue unavailable.*nothing was submitted"):
            client.submit("DEMO", {})
        refused_in = time.monotonic() - paused
        print(f"\nsubmit with Redis paused: refused in {refused_in:.1f} s")
        assert refused_in < 5
        wait_until(lambda: time.monotonic() - paused >= pause_s, pause_s + 1, "the pause to last", every=0.2)
        own_redis.proc.send_signal(signal.SIGCONT)
        done = wait_until(lambda: (j := client.get(running.id)).status.terminal and j, 60, "the job to end")
        assert done.status is JobStatus.completed
        assert client.stats().by_status[JobStatus.processing] == 0
    assert worker.poll() is None


@pytest.mark.parametrize("n", scale(20, 50))
def test_cancel_at_scale(redis_url: str, start_worker, n: int) -> None:
    start_worker(TASKDECK_MAX_JOBS=str(n))
    with Client() as client:
        running = [client.submit("TEST_SLEEP", {"seconds": 120}).id for _ in range(n)]
        wait_until(lambda: client.stats().by_status[JobStatus.processing] == n, 30, "all to run")
        queued = [client.submit("TEST_SLEEP", {"seconds": 0}).id for _ in range(n)]
        for job_id in queued:
            assert client.cancel(job_id).status is JobStatus.cancelled
        began = time.monotonic()
        for job_id in running:
            client.cancel(job_id)
        wait_until(lambda: all(client.get(i).status is JobStatus.cancelled for i in running), 5, "running to stop")
        print(f"\ncancelled {n} running jobs in {time.monotonic() - began:.2f} s")
        canary = client.submit("DEMO", {"duration_s": 0})
        wait_until(lambda: client.get(canary.id).status is JobStatus.completed, 15, "the canary")
        assert all(client.get(i).started_at is None for i in queued), "a cancelled queued job started"
