"""Cancellation: a queued job never starts, a running one stops within a second, and cancel never hangs."""
from __future__ import annotations

import signal
import time

import pytest

from runner import Client, InvalidTransition, JobNotFound, JobStatus
from tests.polling import wait_until


@pytest.fixture
def client(redis_url: str):
    with Client() as c:
        yield c


def running(client: Client, job_id: str) -> None:
    wait_until(lambda: client.get(job_id).status is JobStatus.processing, 15, "the job to start")


def test_cancelled_queued_job_never_starts(client: Client, start_worker, r) -> None:
    job = client.submit("DEMO", {"duration_s": 0.1})
    done = client.cancel(job.id, by="ops@x.io")
    assert done.status is JobStatus.cancelled and done.cancel_requested_by == "ops@x.io"
    assert r.zscore("arq:queue", job.id) is None and not r.exists(f"arq:job:{job.id}")

    start_worker()
    canary = client.submit("DEMO", {"duration_s": 0})
    wait_until(lambda: client.get(canary.id).status is JobStatus.completed, 15, "a later job to run")
    after = client.get(job.id)
    assert after.status is JobStatus.cancelled and after.attempts == 0 and after.started_at is None


def test_cancel_running_job_stops_it_within_a_second(client: Client, worker) -> None:
    job = client.submit("TEST_SLEEP", {"seconds": 60})
    running(client, job.id)
    started = time.monotonic()
    done = client.cancel(job.id, by="ops@x.io")
    took = time.monotonic() - started
    print(f"\ncancel of a running job: {took * 1000:.0f} ms to `cancelled`")
    assert done.status is JobStatus.cancelled and took < 1.0
    assert done.cancel_requested_by == "ops@x.io" and done.current_step == "Sleep"
    assert done.attempt_log[-1].outcome == "cancelled"
    assert done.attempt_log[-1].steps[0].status == "skipped"


def test_cancel_returns_within_two_seconds_without_workers(client: Client, start_worker) -> None:
    worker = start_worker()
    job = client.submit("TEST_SLEEP", {"seconds": 60})
    running(client, job.id)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    started = time.monotonic()
    pending = client.cancel(job.id)
    assert time.monotonic() - started < 2.0
    assert pending.status is JobStatus.processing and pending.cancel_requested_by
    start_worker()
    done = wait_until(lambda: (j := client.get(job.id)).status.terminal and j, 15, "the cancel to complete")
    assert done.status is JobStatus.cancelled


def test_cancel_unknown_and_finished_jobs(client: Client, r) -> None:
    with pytest.raises(JobNotFound, match="not found"):
        client.cancel("0" * 32)
    assert r.zcard("arq:abort") == 0, "an unknown id must never leave an abort entry behind"
    job = client.submit("DEMO", {"duration_s": 0})
    client.cancel(job.id)
    with pytest.raises(InvalidTransition, match="already cancelled"):
        client.cancel(job.id)


def test_retry_of_cancelled_job_runs_it(client: Client, worker) -> None:
    job = client.submit("TEST_SLEEP", {"seconds": 60})
    running(client, job.id)
    client.cancel(job.id)
    client.retry(job.id)
    running(client, job.id)
    assert client.get(job.id).retried_from == "cancelled"
    assert client.cancel(job.id).status is JobStatus.cancelled
