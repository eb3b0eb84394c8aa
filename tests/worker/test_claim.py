"""Workers claim jobs through runner.claim (one script per poll), not ARQ's own per-job start path."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import arq.worker
import pytest
import redis

from runner import Client, JobStatus
from runner.storage.keys import Keys
from runner.worker import claim
from tests.conftest import ROOT, TEST_SETTINGS
from tests.polling import wait_until


@pytest.fixture
def client(redis_url: str) -> Iterator[Client]:
    with Client() as c:
        yield c


def test_worker_settings_install_the_claiming_poll() -> None:
    import runner.worker  # noqa: F401

    assert arq.worker.Worker._poll_iteration is claim.poll_iteration, \
        "Worker._poll_iteration moved: the claim hook needs updating for this ARQ"


def test_a_finished_job_leaves_no_arq_keys_behind(client: Client, r: redis.Redis, start_worker) -> None:
    start_worker()
    jobs = [client.submit("DEMO", {"duration_s": 0}) for _ in range(20)]
    for job in jobs:
        assert client.wait_terminal(job.id, 20).status is JobStatus.completed
    leftovers = [key for key in r.scan_iter("arq:*") if not key.endswith(":health-check")]
    assert leftovers == [], f"ARQ keys left after the jobs finished: {leftovers[:5]}"
    assert r.zcard(client.settings.queue_name) == 0


def test_a_running_job_holds_its_lease_and_waits_on_the_queue_until_it_ends(client: Client, r: redis.Redis,
                                                                            start_worker) -> None:
    start_worker()
    job = client.submit("TEST_SLEEP", {"seconds": 30})
    wait_until(lambda: client.get(job.id).status is JobStatus.processing, 10, "the job to start")
    running = client.get(job.id)
    assert r.get(Keys.arq_in_progress(job.id)) == running.worker
    lease_ms = client.settings.lease_s * 1000
    assert 0 < r.pttl(Keys.arq_in_progress(job.id)) <= lease_ms
    due = r.zscore(client.settings.queue_name, job.id)
    assert 0 < due - time.time() * 1000 <= lease_ms, "a running job is due again only when its lease would lapse"
    renewed = wait_until(lambda: (s := r.zscore(client.settings.queue_name, job.id)) > due and s, lease_ms / 1000,
                         "the heartbeat to move the lease on")
    assert 0 < renewed - time.time() * 1000 <= lease_ms
    client.cancel(job.id)
    wait_until(lambda: not r.exists(Keys.arq_in_progress(job.id)), 10, "the lease to end with the cancel")


def test_burst_mode_drains_the_queue_and_exits(client: Client, redis_url: str, tmp_path) -> None:
    jobs = [client.submit("DEMO", {"duration_s": 0}) for _ in range(5)]
    env = {**os.environ, **TEST_SETTINGS, "REDIS_URL": redis_url}
    done = subprocess.run([sys.executable, "-m", "arq", "runner.worker.WorkerSettings", "--burst"], cwd=ROOT, env=env,
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stdout.decode()[-2000:]
    assert [client.get(job.id).status for job in jobs] == [JobStatus.completed] * 5
