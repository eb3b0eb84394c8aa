"""Step checkpoints for a task type written as a user writes one (TEST_CHECKPOINTS in tests/sample_tasks.py:
four LLM steps, each `ctx.run`), run by real worker processes against the fake endpoint, which counts the
calls it gets: a worker SIGKILLed in step 3, a SIGTERM deploy and a failed attempt each re-run step 3 only,
usage is counted once per call made, and a rerun from step 2 with an edited payload reuses step 1 only."""
from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis
from click.testing import CliRunner

from runner import Client, Job, JobStatus
from runner.errors import InvalidPayload, InvalidTransition
from runner.ops.cli import cli
from runner.policy.access import Role
from runner.reads import llm_status
from tests.api_server import token
from tests.fake_llm import FakeLLM, Request, Trouble
from tests.polling import wait_until

STEPS = ["Outline", "Draft", "Expand", "Polish"]
TYPE = "TEST_CHECKPOINTS"
USER = "ana@x.io"


@pytest.fixture
def client(llm_env: dict[str, str]) -> Iterator[Client]:
    with Client() as c:
        yield c


def asked(fake: FakeLLM) -> Counter[str]:
    """How often each step was asked of the endpoint."""
    return Counter(next(step for step in STEPS if f"Step {step} about" in req.task) for req in fake.requests)


def finished(client: Client, job_id: str, timeout: float = 30) -> Job:
    return wait_until(lambda: (j := client.get(job_id)).status.terminal and j, timeout, "the job to finish")


def usage_of(requests: list[Request], hung: int | None = None) -> tuple[int, int]:
    """The tokens in and out the fake endpoint reported (tests/fake_llm.py), for every request but `hung`."""
    tokens_in = tokens_out = 0
    for n, req in enumerate(requests):
        if n == hung:
            continue
        tokens_in += sum(len(m["content"]) for m in req.body["messages"]) // 4
        tokens_out += len(json.dumps({"text": "text 123456"})) // 4 + 1  # the fake's reply, give or take a digit
    return tokens_in, tokens_out


def interrupted_in_step_3(client: Client, fake: FakeLLM, start_worker: Callable[..., subprocess.Popen[bytes]],
                          how: signal.Signals) -> tuple[Job, Job]:
    """The job as the interrupted worker left it, and as it finished on another worker."""
    fake.then("ok", "ok", Trouble(delay_s=20))  # step 3's call hangs until the worker is gone
    doomed = start_worker()
    job = client.submit(TYPE, {"topic": "coffee"}, user=USER)
    wait_until(lambda: len(fake.requests) == 3, 20, "step 3's call")
    doomed.send_signal(how)
    doomed.wait(20)
    left = client.get(job.id)
    start_worker()
    return left, finished(client, job.id)


def test_a_worker_killed_in_step_3_resumes_there_without_running_steps_1_and_2_again(
        client: Client, fake_llm: FakeLLM, start_worker, r: redis.Redis) -> None:
    _, done = interrupted_in_step_3(client, fake_llm, start_worker, signal.SIGKILL)

    assert done.status is JobStatus.completed and done.attempts == 2, (done.last_error, done.attempt_log)
    assert [a.outcome for a in done.attempt_log] == ["lost", "completed"]
    assert asked(fake_llm) == {"Outline": 1, "Draft": 1, "Expand": 2, "Polish": 1}
    assert list(done.result) == STEPS and all(s.status == "completed" for s in done.steps)
    assert sorted(r.hkeys(f"taskdeck:checkpoints:{done.id}")) == sorted(STEPS)
    # Usage: once per call that answered (the killed one never reported any), not again for reused steps.
    tokens_in, tokens_out = usage_of(fake_llm.requests, hung=2)
    calls = llm_status.job_usage(client.settings, done.id).calls
    assert [c.part for c in calls] == STEPS and [c.step for c in calls] == STEPS
    assert done.tokens_in == tokens_in == sum(c.tokens_in for c in calls)
    assert done.tokens_out == sum(c.tokens_out for c in calls) and abs(done.tokens_out - tokens_out) <= 4
    assert done.cost_usd == pytest.approx(sum(c.cost_usd for c in calls)) and done.cost_usd > 0
    hour = max(r.keys("taskdeck:m:1h:*"))
    assert float(r.hget(hour, f"llm_tokens:user:{USER}")) == done.tokens_in + done.tokens_out


def test_a_deploy_in_step_3_hands_the_job_back_and_it_resumes_there(
        client: Client, fake_llm: FakeLLM, start_worker) -> None:
    left, done = interrupted_in_step_3(client, fake_llm, start_worker, signal.SIGTERM)

    assert left.status is JobStatus.queued and left.attempt_log[-1].outcome == "handed back"
    assert [s.status for s in left.attempt_log[-1].steps][:2] == ["completed", "completed"]
    assert done.status is JobStatus.completed and done.attempts == 1, (done.last_error, done.attempt_log)
    assert asked(fake_llm) == {"Outline": 1, "Draft": 1, "Expand": 2, "Polish": 1}
    assert len(llm_status.job_usage(client.settings, done.id).calls) == 4


def test_a_failed_attempt_is_retried_from_the_step_that_failed(client: Client, fake_llm: FakeLLM, start_worker) -> None:
    fake_llm.then("ok", "ok", Trouble(status=500))
    start_worker(TASKDECK_LLM_MAX_TRIES="1")
    job = client.submit(TYPE, {"topic": "coffee"}, user=USER)
    done = finished(client, job.id)

    assert done.status is JobStatus.completed and done.attempts == 2, (done.last_error, done.attempt_log)
    assert "EndpointFailed" in (done.attempt_log[0].error or "")
    assert asked(fake_llm) == {"Outline": 1, "Draft": 1, "Expand": 2, "Polish": 1}


def test_a_rerun_from_step_2_with_an_edited_payload_reuses_step_1_only(
        client: Client, fake_llm: FakeLLM, start_worker, r: redis.Redis) -> None:
    start_worker()
    first = finished(client, client.submit(TYPE, {"topic": "coffee"}, user=USER).id)
    assert first.status is JobStatus.completed and len(fake_llm.requests) == 4
    fake_llm.requests.clear()

    rerun = client.retry(first.id, from_step="Draft", payload={"topic": "tea"})
    assert rerun.id != first.id and rerun.status is JobStatus.queued
    assert (rerun.rerun_of, rerun.reused_steps, rerun.payload) == (first.id, ["Outline"], {"topic": "tea"})
    done = finished(client, rerun.id)

    assert done.status is JobStatus.completed and done.attempts == 1, done.last_error
    assert asked(fake_llm) == {"Draft": 1, "Expand": 1, "Polish": 1}
    assert all("about tea" in req.task for req in fake_llm.requests)
    assert f"Build on: {first.result['Outline']}" in fake_llm.requests[0].task, "step 2 should build on step 1"
    assert done.result["Outline"] == first.result["Outline"] and done.result["Draft"] != first.result["Draft"]
    assert [c.part for c in llm_status.job_usage(client.settings, done.id).calls] == STEPS[1:]
    assert done.tokens_in == sum(c.tokens_in for c in llm_status.job_usage(client.settings, done.id).calls)
    assert client.get(first.id).status is JobStatus.completed, "the old job is left as it was"
    audit = client.audit()
    assert audit[0]["action"] == "rerun" and audit[0]["job"] == done.id


def test_a_rerun_is_refused_for_a_bad_step_a_bad_payload_or_an_active_job(
        client: Client, fake_llm: FakeLLM, start_worker, r: redis.Redis) -> None:
    fake_llm.then(Trouble(delay_s=20))
    active = client.submit(TYPE, {"topic": "coffee"}, user=USER)
    with pytest.raises(InvalidTransition, match="only a completed, failed or cancelled job can be rerun"):
        client.retry(active.id, from_step="Draft")
    client.cancel(active.id)
    before = r.dbsize()
    with pytest.raises(InvalidPayload, match="from_step 'Nope' is neither a step nor a checkpoint"):
        client.retry(active.id, from_step="Nope")
    with pytest.raises(InvalidPayload, match="topic"):
        client.retry(active.id, from_step="Draft", payload={"topic": "x" * 201})
    assert r.dbsize() == before, "a refused rerun wrote something"
    assert client.retry(active.id, payload={"topic": "tea"}).reused_steps == []


def test_the_cli_and_the_api_rerun_from_a_step(client: Client, fake_llm: FakeLLM, start_worker, own_api,
                                               llm_env: dict[str, str]) -> None:
    start_worker()
    first = finished(client, client.submit(TYPE, {"topic": "coffee"}).id)
    out = CliRunner().invoke(cli, ["retry", first.id, "--from-step", "Expand", "--payload", '{"topic": "tea"}',
                                   "--max-tokens", "5000", "--json"])
    assert out.exit_code == 0, out.output
    by_cli = json.loads(out.output)
    assert (by_cli["rerun_of"], by_cli["reused_steps"], by_cli["payload"]) == (first.id, ["Outline", "Draft"],
                                                                               {"topic": "tea"})
    assert by_cli["max_tokens"] == 5000
    bad = CliRunner().invoke(cli, ["retry", first.id, "--from-step", "Nope"])
    assert bad.exit_code == 2 and "neither a step nor a checkpoint" in bad.output

    api = own_api(**llm_env)
    auth = token("boss@x.io", role=Role.admin)
    answer = httpx.post(f"{api}/api/jobs/{first.id}/retry", json={"from_step": "Polish"}, headers=auth)
    assert answer.status_code == 202, answer.text
    assert (answer.json()["rerun_of"], answer.json()["reused_steps"]) == (first.id, ["Outline", "Draft", "Expand"])
    wrong = httpx.post(f"{api}/api/jobs/{first.id}/retry", json={"from_step": "Nope"}, headers=auth)
    assert wrong.status_code == 422 and "neither a step nor a checkpoint" in wrong.json()["detail"]
    plain = httpx.post(f"{api}/api/jobs/{first.id}/retry", headers=auth)
    assert plain.status_code == 409, "without a body a retry is what it always was: a completed job is not retried"
