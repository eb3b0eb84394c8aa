"""What a worker tells the world: transition logs, the event stream, and its own liveness."""
from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from runner import Client, JobStatus, Settings
from tests.polling import wait_until


@pytest.fixture
def client(redis_url: str):
    with Client() as c:
        yield c


def finished(client: Client, job_id: str):
    return wait_until(lambda: (j := client.get(job_id)).status.terminal and j, 30, "the job to finish")


def test_one_log_line_per_transition_says_what_happens_next(client: Client, worker, tmp_path: Path) -> None:
    job = client.submit("DEMO", {"duration_s": 0, "fail_first": 1})
    assert finished(client, job.id).status is JobStatus.completed
    lines = [line for line in (tmp_path / "worker-0.log").read_text().splitlines()
             if job.id in line and " attempt " in line]
    assert "DEMO attempt 1/3 → started" in lines[0]
    assert "attempt 1/3 → retrying: DemoFailure: simulated failure on attempt 1; retrying in 1." in lines[1]
    assert "attempt 2/3 → started" in lines[2] and "attempt 2/3 → completed" in lines[3]


def test_json_log_lines(client: Client, start_worker, tmp_path: Path) -> None:
    start_worker(TASKDECK_LOG_JSON="true")
    job = client.submit("DEMO", {"duration_s": 0})
    finished(client, job.id)
    records = [json.loads(line) for line in (tmp_path / "worker-0.log").read_text().splitlines()
               if line.startswith("{")]
    mine = [rec for rec in records if rec.get("job_id") == job.id]
    assert [rec["status"] for rec in mine] == ["started", "completed"]
    assert mine[0]["type"] == "DEMO" and mine[0]["attempt"] == 1


def test_event_stream_tells_the_story_in_order(client: Client, worker, r) -> None:
    job = client.submit("DEMO", {"duration_s": 0.5, "steps": 2})
    finished(client, job.id)
    events = [fields for _, fields in r.xrange("taskdeck:events") if fields["job"] == job.id]
    kinds = [e["event"] for e in events]
    assert kinds[:2] == ["submitted", "started"] and kinds[-1] == "completed"
    assert "progress" in kinds
    progress = [float(e["progress"]) for e in events if e["event"] == "progress"]
    assert progress == sorted(progress)


def test_workers_alive_counts_heartbeats(client: Client, start_worker) -> None:
    proc = start_worker()
    job = client.submit("DEMO", {"duration_s": 0})
    assert client.wait_terminal(job.id, 15).status is JobStatus.completed, "the worker never ran a job"
    wait_until(lambda: client.stats().workers_alive == 1, 15, "the worker's heartbeat")
    [info] = client.workers()
    assert info.alive and info.pid == proc.pid
    proc.send_signal(signal.SIGTERM)
    proc.wait(15)
    assert client.stats().workers_alive == 0
    assert not client.workers()[0].alive


def test_production_worker_refuses_a_redis_that_can_lose_jobs(start_worker, tmp_path: Path) -> None:
    """The test Redis runs without AOF: a production worker must refuse it, saying why."""
    proc = start_worker(TASKDECK_PRODUCTION="true")
    assert proc.wait(20) != 0
    log = (tmp_path / "worker-0.log").read_text()
    assert "refusing to start: this Redis can lose jobs: it keeps no data on disk" in log
    assert "set appendonly yes" in log


def test_production_worker_accepts_aof_and_noeviction(own_redis, start_worker) -> None:
    proc = start_worker(REDIS_URL=own_redis.url, TASKDECK_PRODUCTION="true")
    with Client(Settings(redis_url=own_redis.url)) as client:
        job = client.submit("DEMO", {"duration_s": 0})
        assert client.wait_terminal(job.id, 15).status is JobStatus.completed
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
