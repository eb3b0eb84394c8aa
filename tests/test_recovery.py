"""Crash recovery: leases, SIGKILL, SIGTERM handback, and jobs that kill their worker."""
from __future__ import annotations

import signal
import time

import pytest

from runner import Client, JobStatus
from tests.polling import wait_until


@pytest.fixture
def client(redis_url: str):
    with Client() as c:
        yield c


def test_sigkilled_worker_job_runs_again_within_the_lease(client: Client, start_worker) -> None:
    """The job's timeout is 2 hours; ARQ alone would wait that long. Test lease: 3 s."""
    doomed = start_worker()
    job = client.submit("TEST_SLEEP", {"seconds": 2})
    wait_until(lambda: client.get(job.id).status is JobStatus.processing, 15, "the job to start")
    doomed.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    doomed.wait()
    start_worker()
    wait_until(lambda: client.get(job.id).attempts == 2, 30, "the job to start again")
    recovered = time.monotonic() - killed
    print(f"\nSIGKILL recovery (lease 3 s): running again {recovered:.1f} s after the kill")
    assert recovered < 10
    done = wait_until(lambda: (j := client.get(job.id)).status.terminal and j, 15, "the rerun to finish")
    assert done.status is JobStatus.completed
    assert [a.outcome for a in done.attempt_log] == ["lost", "completed"]


def test_sigterm_hands_running_jobs_back_without_charging_an_attempt(client: Client, start_worker) -> None:
    first = start_worker()
    job = client.submit("TEST_SLEEP", {"seconds": 1})
    wait_until(lambda: client.get(job.id).status is JobStatus.processing, 15, "the job to start")
    first.send_signal(signal.SIGTERM)
    assert first.wait(10) == 0
    back = client.get(job.id)
    assert back.status is JobStatus.queued and back.attempts == 0
    assert back.attempt_log[-1].outcome == "handed back"
    start_worker()
    done = wait_until(lambda: (j := client.get(job.id)).status.terminal and j, 15, "the job to finish")
    assert done.status is JobStatus.completed and done.attempts == 1


def test_job_that_kills_its_worker_fails_after_max_attempts(client: Client, start_worker) -> None:
    job = client.submit("TEST_KILL_WORKER", {})
    for attempt in (1, 2):
        proc = start_worker()
        proc.wait(20)
        assert client.get(job.id).attempts == attempt
    start_worker()
    done = wait_until(lambda: (j := client.get(job.id)).status.terminal and j, 20, "the poison job to fail")
    assert done.status is JobStatus.failed
    assert "worker lost" in done.last_error
    assert [a.outcome for a in done.attempt_log] == ["lost", "lost"]


def test_no_record_stays_processing_once_its_worker_is_gone(client: Client, start_worker) -> None:
    """A busy survivor cannot take the job over, but its reaper puts the record back in `queued`."""
    start_worker(TASKDECK_MAX_JOBS="1")
    blocker = client.submit("TEST_SLEEP", {"seconds": 60})
    wait_until(lambda: client.get(blocker.id).status is JobStatus.processing, 15, "the blocker to start")
    doomed = start_worker()
    job = client.submit("TEST_SLEEP", {"seconds": 60})
    wait_until(lambda: client.get(job.id).status is JobStatus.processing, 15, "the job to start")
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    back = wait_until(lambda: (j := client.get(job.id)).status is JobStatus.queued and j, 15, "the reaper")
    assert back.attempt_log[-1].outcome == "lost" and "worker lost" in back.last_error
    assert client.get(blocker.id).status is JobStatus.processing


def test_workers_ride_out_a_redis_restart(own_redis, start_worker) -> None:
    """AOF Redis killed and restarted under a running job: the worker reconnects by itself."""
    from runner import Settings

    worker = start_worker(REDIS_URL=own_redis.url, TASKDECK_LEASE_S="30")
    with Client(Settings(redis_url=own_redis.url)) as client:
        job = client.submit("DEMO", {"duration_s": 3, "steps": 3})
        wait_until(lambda: client.get(job.id).status is JobStatus.processing, 15, "the job to start")
        own_redis.kill_and_restart()
        done = wait_until(lambda: (j := client.get(job.id)).status.terminal and j, 30, "the job to finish")
        assert done.status is JobStatus.completed
        after = client.submit("DEMO", {"duration_s": 0})
        assert wait_until(lambda: client.get(after.id).status is JobStatus.completed, 30, "a new job")
    assert worker.poll() is None, "the worker died with Redis"
