"""A job past its timeout ends within timeout + 5 s, and leaves no process behind."""
from __future__ import annotations

import os
from pathlib import Path

from runner import Client, JobStatus
from tests.polling import wait_until


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_timed_out_job_kills_the_program_it_started(redis_url: str, worker, tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    with Client() as client:
        job = client.submit("TEST_SUBPROCESS", {"pid_file": str(pid_file)})
        done = wait_until(lambda: (j := client.get(job.id)).status.terminal and j, 15, "the timeout")
    assert done.status is JobStatus.failed and done.last_error == "timed out after 1 s"
    attempt = done.attempt_log[0]
    assert (attempt.finished_at - attempt.started_at).total_seconds() < 1 + 5
    child = int(pid_file.read_text())
    wait_until(lambda: not alive(child), 5, f"process {child} to be gone")
