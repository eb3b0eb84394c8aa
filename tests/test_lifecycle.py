"""The job lifecycle against a real Redis and real `arq` worker processes."""
from __future__ import annotations

import signal

import pytest

from runner import Client, JobStatus
from runner.models import StepStatus
from tests.polling import wait_until


@pytest.fixture
def client(redis_url: str):
    with Client() as c:
        yield c


def terminal(client: Client, job_id: str, timeout: float = 20.0):
    return wait_until(lambda: (j := client.get(job_id)).status.terminal and j, timeout, f"job {job_id} to finish")


def test_demo_completes_with_progress_steps_and_result(client: Client, worker) -> None:
    job = client.submit("DEMO", {"duration_s": 1.5, "steps": 3, "output": "plan"})
    assert job.status is JobStatus.queued and len(job.id) == 32

    seen = []
    wait_until(lambda: seen.append(client.get(job.id).progress) or seen[-1] == 100, 20, "progress 100")
    assert seen == sorted(seen), "progress went backwards"
    assert any(0 < p < 100 for p in seen), "no intermediate progress was reported"

    done = terminal(client, job.id)
    assert done.status is JobStatus.completed
    assert done.result == {"output": "plan", "steps": 3, "duration_s": 1.5}
    assert [s.status for s in done.steps] == [StepStatus.completed] * 3
    assert done.attempts == 1 and done.started_at and done.completed_at
    assert done.queued_at <= done.started_at < done.completed_at
    assert done.attempt_log[-1].outcome == "completed"


def test_failures_are_retried_with_backoff_then_succeed(client: Client, worker) -> None:
    job = client.submit("DEMO", {"duration_s": 0, "fail_first": 2})
    done = terminal(client, job.id, 30)
    assert done.status is JobStatus.completed
    assert done.attempts == 3
    outcomes = [a.outcome for a in done.attempt_log]
    assert outcomes == ["failed", "failed", "completed"]
    first, second, third = done.attempt_log
    assert "simulated failure on attempt 1" in first.error and "DemoFailure" in first.traceback
    gap_1 = (second.started_at - first.finished_at).total_seconds()
    gap_2 = (third.started_at - second.finished_at).total_seconds()
    assert 1.0 <= gap_1 < gap_2, f"backoff not exponential: {gap_1:.2f} s then {gap_2:.2f} s"


def test_always_failing_job_is_dead_lettered_after_max_attempts(client: Client, worker, r) -> None:
    job = client.submit("DEMO", {"duration_s": 0, "fail_always": True})
    done = terminal(client, job.id, 30)
    assert done.status is JobStatus.failed
    assert done.attempts == done.max_attempts == 3
    assert "simulated failure on attempt 3" in done.last_error
    assert r.zscore("taskdeck:idx:dead", job.id) is not None
    assert all(a.traceback for a in done.attempt_log)
    assert client.stats().dead_letter == 1
    assert r.ttl(f"taskdeck:job:{job.id}") == -1, "dead letters must outlive ARQ's result TTL"


def test_timed_out_attempt_counts_as_failed_and_is_retried(client: Client, worker) -> None:
    job = client.submit("TEST_TIMEOUT", {"seconds": 30})
    done = terminal(client, job.id, 20)
    assert done.status is JobStatus.failed
    assert [a.outcome for a in done.attempt_log] == ["timeout", "timeout"]
    assert done.last_error == "timed out after 0.5 s"
    for a in done.attempt_log:
        assert (a.finished_at - a.started_at).total_seconds() < 3


def test_fatal_error_fails_at_once(client: Client, worker) -> None:
    done = terminal(client, client.submit("TEST_FATAL", {}).id)
    assert done.status is JobStatus.failed and done.attempts == 1
    assert "the input can never work" in done.last_error


def test_unknown_type_in_queue_fails_at_once_without_retry(client: Client, worker, r) -> None:
    job = client.submit("DEMO", {"duration_s": 5})
    r.hset(f"taskdeck:job:{job.id}", "type", '"GONE_TYPE"')
    done = terminal(client, job.id)
    assert done.status is JobStatus.failed and done.attempts <= 1
    assert "unknown task type 'GONE_TYPE'" in done.last_error


def test_retry_runs_a_failed_job_again_under_the_same_id(client: Client, worker, r) -> None:
    job = client.submit("TEST_FATAL", {})
    assert terminal(client, job.id).status is JobStatus.failed
    worker.send_signal(signal.SIGSTOP)  # else it may take and fail the job again before retry() reads it back
    try:
        again = client.retry(job.id, by="ops@x.io")
        assert again.id == job.id and again.status is JobStatus.queued
        assert again.retried_from == "failed" and again.retried_by == "ops@x.io"
        assert again.max_attempts == 1 + 3 and again.last_error is None
        assert r.zscore("taskdeck:idx:dead", job.id) is None
    finally:
        worker.send_signal(signal.SIGCONT)
    done = terminal(client, job.id)
    assert done.status is JobStatus.failed and done.attempts == 2
    assert done.queued_at == job.queued_at
    assert [a.number for a in done.attempt_log] == [1, 2]


def test_progress_writes_are_coalesced(client: Client, worker, r) -> None:
    job = client.submit("TEST_CHATTY", {"seconds": 1.0})
    done = terminal(client, job.id)
    reports = done.result["reports"]
    writes = [e for e in client.events().events if e.job == job.id and e.event == "progress"]
    assert reports > 200, f"the task reported only {reports} times"
    # interval 0.1 s in tests: ~10 progress writes (each one transition, one event) in its second
    assert 3 <= len(writes) <= 13, f"{reports} reports caused {len(writes)} writes"
    assert done.partial is not None and done.partial.startswith("1\n2\n3\n")
