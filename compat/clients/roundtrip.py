"""The Python half of compat/clients/run.py: the client openapi-python-client generated from Taskdeck's
spec (package `taskdeck_client`, beside this file), driven through a round trip.

    python roundtrip.py BASE_URL TOKEN

`mypy --strict` checks it first: the generated models type every payload, so the payload of the wrong
shape below must be refused (mypy's warn_unused_ignores fails the check when the ignore is not needed).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
from taskdeck_client import AuthenticatedClient
from taskdeck_client.api.jobs import cancel_job, create_job, get_job, list_jobs, retry_job
from taskdeck_client.api.types import list_types
from taskdeck_client.models import (
    DemoJobCreate,
    DemoPayload,
    FieldErrorCtxType0,
    Job,
    JobPage,
    JobStatus,
    Problem,
)

MISSING = "0" * 32

if TYPE_CHECKING:  # never runs: only mypy reads it
    DemoPayload(duration_s="slow")  # type: ignore[arg-type]  # duration_s is a number


def job(client: AuthenticatedClient, job_id: str) -> Job:
    found = get_job.sync(job_id, client=client)
    assert isinstance(found, Job), found
    return found


def wait(client: AuthenticatedClient, job_id: str, status: JobStatus, timeout_s: float = 30.0) -> Job:
    deadline = time.monotonic() + timeout_s
    while (current := job(client, job_id)).status != status:
        assert time.monotonic() < deadline, f"job {job_id} is {current.status}, not {status}, after {timeout_s} s"
        time.sleep(0.1)
    return current


def submit(client: AuthenticatedClient, payload: DemoPayload) -> Job:
    answer = create_job.sync_detailed(client=client, body=DemoJobCreate(type_="DEMO", payload=payload))
    assert answer.status_code == 202 and isinstance(answer.parsed, Job), answer.content
    return answer.parsed


def types_are_listed(client: AuthenticatedClient) -> None:
    types = list_types.sync(client=client)
    assert isinstance(types, list) and any(t.name == "DEMO" and t.available for t in types), types


def a_typed_job_completes_with_its_result(client: AuthenticatedClient) -> None:
    created = submit(client, DemoPayload(duration_s=0.3, steps=2))
    assert created.status == JobStatus.QUEUED, created.status
    done = wait(client, created.id, JobStatus.COMPLETED)
    assert isinstance(done.result, dict) and done.result["steps"] == 2, done.result


def a_filtered_list(client: AuthenticatedClient) -> None:
    page = list_jobs.sync(client=client, status=JobStatus.COMPLETED, type_="DEMO")
    assert isinstance(page, JobPage) and page.jobs, page
    assert all(j.status == JobStatus.COMPLETED and j.type_ == "DEMO" for j in page.jobs)


def a_running_job_is_cancelled_and_retried(client: AuthenticatedClient) -> None:
    running = submit(client, DemoPayload(duration_s=60, steps=3))
    wait(client, running.id, JobStatus.PROCESSING)
    assert isinstance(cancel_job.sync(running.id, client=client), Job)
    wait(client, running.id, JobStatus.CANCELLED)
    retried = retry_job.sync_detailed(running.id, client=client)
    assert retried.status_code == 202 and isinstance(retried.parsed, Job), retried.content
    assert retried.parsed.retried_from == "cancelled", retried.parsed.retried_from
    cancel_job.sync(running.id, client=client)


def a_404_is_a_problem(client: AuthenticatedClient) -> None:
    answer = get_job.sync_detailed(MISSING, client=client)
    assert answer.status_code == 404 and isinstance(answer.parsed, Problem), answer.content
    assert answer.parsed.status == 404 and answer.parsed.type_ == "urn:taskdeck:problem:job-not-found"


def a_422_is_a_problem_naming_the_field_and_limit(client: AuthenticatedClient) -> None:
    answer = create_job.sync_detailed(client=client, body=DemoJobCreate(type_="DEMO",
                                                                        payload=DemoPayload(duration_s=99999)))
    assert answer.status_code == 422 and isinstance(answer.parsed, Problem), answer.content
    errors = answer.parsed.errors
    assert isinstance(errors, list) and errors[0].loc == ["duration_s"], errors
    limit = errors[0].ctx
    assert isinstance(limit, FieldErrorCtxType0) and limit["le"] == 3600, limit


STEPS: list[Callable[[AuthenticatedClient], None]] = [
    types_are_listed, a_typed_job_completes_with_its_result, a_filtered_list,
    a_running_job_is_cancelled_and_retried, a_404_is_a_problem, a_422_is_a_problem_naming_the_field_and_limit,
]


def main(base_url: str, token: str) -> int:
    failed = 0
    with AuthenticatedClient(base_url=base_url, token=token, timeout=httpx.Timeout(30.0)) as client:
        for step in STEPS:
            name = step.__name__.replace("_", " ")
            try:
                step(client)
                print(f"ok python: {name}", flush=True)
            except Exception as e:  # every step runs; each failure is reported
                print(f"FAILED python: {name}: {type(e).__name__}: {e}", flush=True)
                failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
