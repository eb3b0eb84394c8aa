"""Generative jobs end to end: a real `arq` worker calls the fake endpoint, rides out a 429 inside the
call, resumes a failed attempt from its completed parts, and keeps tokens, cost and partial output."""
from __future__ import annotations

import pytest

from runner import Client, JobStatus
from runner.models import StepStatus
from runner.reads import llm_status as status
from tests.fake_llm import FakeLLM, Trouble
from tests.polling import wait_until

USER = "ana@x.io"


@pytest.fixture
def client(llm_env):  # noqa: F811
    with Client() as c:
        yield c


def terminal(client: Client, job_id: str, timeout: float = 20.0):
    return wait_until(lambda: (j := client.get(job_id)).status.terminal and j, timeout, f"job {job_id} to finish")


def test_a_throttled_call_waits_and_the_attempt_completes(client: Client, fake_llm: FakeLLM, start_worker) -> None:  # noqa: F811
    start_worker()
    fake_llm.then(Trouble(status=429, retry_after="0.3"))
    job = client.submit("GENERATE_BRAND_KIT", {"brand_name": "Brew", "industry": "coffee"}, user=USER)
    done = terminal(client, job.id)

    assert done.status is JobStatus.completed and done.attempts == 1, done.last_error
    assert set(done.result) == {"brand_name", "identity", "voice", "visuals"}
    assert [s.status for s in done.steps] == [StepStatus.completed] * 3
    first, second = fake_llm.requests[:2]
    assert second.at - first.at >= 0.3 and len(fake_llm.requests) == 4
    assert done.tokens_in > 0 and done.tokens_out > 0 and done.cost_usd > 0
    assert "## Identity: identity" in done.partial and "## Visuals: visuals" in done.partial
    used = status.job_usage(client.settings, job.id)
    assert [c.throttled for c in used.calls] == [1, 0, 0]
    assert sum(c.tokens_in for c in used.calls) == done.tokens_in
    hour = status.usage_series(client.settings, "1h", 1)[-1]
    assert hour.cost_by_user[USER] == pytest.approx(done.cost_usd) and hour.throttled == 1
    assert client.list(status="completed")[0].cost_usd == done.cost_usd, "list() should carry the usage too"


def test_a_failed_attempt_is_retried_from_its_last_completed_part(
    client: Client, fake_llm: FakeLLM, start_worker  # noqa: F811
) -> None:
    start_worker(TASKDECK_LLM_MAX_TRIES="1")
    fake_llm.then("ok", "ok", Trouble(status=500))
    brief = {"product": "grinder", "market": "home baristas", "count": 30}
    job = client.submit("AUTO_GENERATE_PERSONAS", brief, user=USER)
    done = terminal(client, job.id, 30)

    assert done.status is JobStatus.completed and done.attempts == 2
    assert [a.outcome for a in done.attempt_log] == ["failed", "completed"]
    assert "HTTP 500" in done.attempt_log[0].error
    asked = [req.task for req in fake_llm.requests]
    assert len(asked) == 5, "the retry should ask only for the parts the first attempt did not finish"
    assert sum("Split the market" in a for a in asked) == 1 and sum("personas 1 to 10 " in a for a in asked) == 1
    assert len(done.result["personas"]) == 6
    calls = status.job_usage(client.settings, job.id).calls
    assert len(calls) == 4 and sum(c.tokens_out for c in calls) == done.tokens_out, "usage adds up over attempts"


def test_a_cancelled_generation_keeps_its_streamed_output(client: Client, fake_llm: FakeLLM, start_worker) -> None:  # noqa: F811
    start_worker()
    fake_llm.then(Trouble(chunk_delay_s=0.3))
    job = client.submit("GENERATE_BRAND_KIT", {"brand_name": "Brew", "industry": "coffee"}, user=USER)
    wait_until(lambda: '{"mission"' in (client.get(job.id).partial or ""), 15, "streamed text in the partial")
    done = client.cancel(job.id)
    assert done.status is JobStatus.cancelled
    assert done.partial.startswith('\n## Identity: identity\n{"mission"')
    assert done.steps[0].status is StepStatus.skipped
