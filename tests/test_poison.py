"""Poison: jobs that can never run end with a reason; a corrupt ARQ copy does no harm; healthy jobs beside them run."""
from __future__ import annotations

import pytest

from runner import Client, JobStatus
from tests.polling import wait_until


@pytest.fixture
def client(redis_url: str):
    with Client() as c:
        yield c


def finished(client: Client, job_id: str, timeout: float = 30):
    return wait_until(lambda: (j := client.get(job_id)).status.terminal and j, timeout, f"job {job_id} to finish")


def test_poison_jobs_end_with_reasons_and_healthy_ones_complete(client: Client, start_worker, r) -> None:
    unreadable_arq = client.submit("DEMO", {"duration_s": 0})
    r.set(f"arq:job:{unreadable_arq.id}", b"\x80\x04 not json")
    unknown = client.submit("DEMO", {"duration_s": 0})
    r.hset(f"taskdeck:job:{unknown.id}", "type", '"NO_LONGER_REGISTERED"')
    broken_record = client.submit("DEMO", {"duration_s": 0})
    r.hset(f"taskdeck:job:{broken_record.id}", "payload", "{not json")
    always = client.submit("TEST_FATAL", {})
    healthy = [client.submit("DEMO", {"duration_s": 0}) for _ in range(100)]
    start_worker(TASKDECK_MAX_JOBS="20")

    assert all(finished(client, j.id).status is JobStatus.completed for j in healthy)
    unharmed = finished(client, unreadable_arq.id)
    assert unharmed.status is JobStatus.completed, "workers run a job from its record, never from ARQ's copy"
    assert [a.outcome for a in unharmed.attempt_log] == ["completed"]
    assert "unknown task type 'NO_LONGER_REGISTERED'" in finished(client, unknown.id).last_error
    assert "the input can never work" in finished(client, always.id).last_error
    dead = r.zrange("taskdeck:idx:dead", 0, -1)
    assert set(dead) == {unknown.id, broken_record.id, always.id}
    assert "job record unreadable" in r.hget(f"taskdeck:job:{broken_record.id}", "last_error")
