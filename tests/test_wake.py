"""Submits and cancels wake idle workers at once; ARQ's poll timer is only the fallback."""
from __future__ import annotations

import arq.worker

from runner import Client, JobStatus, wake
from tests.polling import wait_until


def test_worker_settings_install_the_wakeable_poll() -> None:
    import runner.worker  # noqa: F401

    assert arq.worker.poll is wake.poll, "arq.worker.poll moved: the wake-up hook needs updating for this ARQ"


def test_a_worker_polling_every_10_s_starts_and_cancels_at_once(redis_url: str, start_worker) -> None:
    start_worker(TASKDECK_POLL_DELAY_S="10")
    with Client() as client:
        wait_until(lambda: client.stats().workers_alive == 1, 15, "the worker")
        for _ in range(3):
            job = client.submit("DEMO", {"duration_s": 0})
            done = client.wait_terminal(job.id, 5)
            assert done.status is JobStatus.completed, "a submit did not wake the idle worker"
            assert (done.started_at - done.queued_at).total_seconds() < 1
        job = client.submit("TEST_SLEEP", {"seconds": 60})
        wait_until(lambda: client.get(job.id).status is JobStatus.processing, 5, "the job to start")
        assert client.cancel(job.id).status is JobStatus.cancelled, "a cancel did not wake the worker"
