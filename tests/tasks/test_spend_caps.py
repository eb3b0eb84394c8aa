"""Spend caps that stop spending (runner/llm/spend.py), with real workers and the fake endpoint: a job's own
cap stops it mid-reply or before a call, failed for good with its checkpoints and partial output kept, and a
retry with a higher cap resumes it; a user's daily cap stops their running job and refuses their next submit."""
from __future__ import annotations

import json

import pytest
import redis
from click.testing import CliRunner

from runner import Client, JobStatus, Settings
from runner.errors import InvalidPayload, LimitExceeded
from runner.llm import spend
from runner.ops.cli import cli
from runner.reads import llm_status
from tests.fake_llm import FakeLLM, Trouble
from tests.tasks.test_checkpoints import TYPE, USER, asked, client, finished

__all__ = ["client"]  # the fixture, shared with the checkpoint tests


def test_a_jobs_token_cap_stops_it_mid_reply_and_a_retry_with_more_resumes_it(
        client: Client, fake_llm: FakeLLM, start_worker, r: redis.Redis) -> None:
    endless = '{"text": "' + "x" * 40_000 + '"}'  # ~10,000 tokens, far past the cap
    fake_llm.then("ok", "ok", Trouble(content=endless))
    start_worker()
    job = client.submit(TYPE, {"topic": "coffee"}, user=USER, max_tokens=1500)
    assert (job.max_tokens, job.max_cost_usd) == (1500, 1.0)  # the cost cap is the type's default
    done = finished(client, job.id)

    assert done.status is JobStatus.failed and done.attempts == 1, "a budget stop should not be retried"
    assert done.last_error.startswith("BudgetExceeded: budget exceeded: the job's max_tokens is 1,500")
    assert "stopped mid-reply" in done.last_error
    assert asked(fake_llm) == {"Outline": 1, "Draft": 1, "Expand": 1}
    assert 100 < done.partial.count("x") < 10_000, "the partial reply should be kept, and cut short"
    used = done.tokens_in + done.tokens_out
    assert 1500 < used <= 1500 + 12, "the call should stop within a streamed piece of the cap"
    calls = llm_status.job_usage(client.settings, job.id).calls
    assert [(c.part, c.estimated, c.finish_reason) for c in calls][-1] == ("Expand", True, "budget")
    assert sum(c.tokens_in + c.tokens_out for c in calls) == used
    assert sorted(r.hkeys(f"taskdeck:checkpoints:{job.id}")) == ["Draft", "Outline"]

    again = client.retry(job.id, max_tokens=100_000)
    assert again.id == job.id and again.max_tokens == 100_000
    resumed = finished(client, job.id)
    assert resumed.status is JobStatus.completed, resumed.last_error
    assert asked(fake_llm) == {"Outline": 1, "Draft": 1, "Expand": 2, "Polish": 1}
    assert resumed.tokens_in + resumed.tokens_out > used, "usage adds up over the attempts"


def test_a_jobs_cost_cap_refuses_a_call_before_it_is_sent(client: Client, fake_llm: FakeLLM, start_worker) -> None:
    start_worker()
    job = client.submit(TYPE, {"topic": "coffee"}, user=USER, max_cost_usd=0.000001)
    done = finished(client, job.id)
    assert done.status is JobStatus.failed and done.attempts == 1
    assert "budget exceeded: the job's max_cost_usd is $0.0000" in done.last_error
    assert fake_llm.requests == [] and done.tokens_in == 0


def test_caps_are_validated_at_submit(client: Client, r: redis.Redis) -> None:
    with pytest.raises(InvalidPayload, match="max_tokens: Input should be greater than or equal to 1"):
        client.submit(TYPE, {}, max_tokens=0)
    with pytest.raises(InvalidPayload, match="max_cost_usd"):
        client.submit(TYPE, {}, max_cost_usd=float("nan"))
    assert r.dbsize() == 0
    out = CliRunner().invoke(cli, ["submit", TYPE, "--max-tokens", "700", "--max-cost-usd", "0.5", "--json"])
    assert out.exit_code == 0, out.output
    assert (json.loads(out.output)["max_tokens"], json.loads(out.output)["max_cost_usd"]) == (700, 0.5)


def test_a_users_daily_cap_stops_their_job_and_refuses_their_next_submit(
        client: Client, fake_llm: FakeLLM, start_worker, monkeypatch: pytest.MonkeyPatch, r: redis.Redis) -> None:
    monkeypatch.setenv("TASKDECK_USER_SPEND_CAPS", json.dumps({USER: {"day": {"max_tokens": 20}}}))
    start_worker()  # with the cap: its first call takes ana over it
    with Client() as capped:
        job = capped.submit(TYPE, {"topic": "coffee"}, user=USER)
        done = finished(capped, job.id)
        assert done.status is JobStatus.failed and len(fake_llm.requests) == 1
        assert f"budget exceeded: {USER} has spent" in done.last_error and "allowed per day" in done.last_error

        with pytest.raises(LimitExceeded, match=rf"budget exceeded: {USER} has spent \d+ of the 20 LLM tokens "
                                                r"allowed per day \(daily cap, TASKDECK_USER_SPEND_CAPS\) until "
                                                r"\d{4}-\d\d-\d\d 00:00 UTC") as refused:
            capped.submit(TYPE, {"topic": "tea"}, user=USER)
        assert refused.value.retry_after_s and 0 < refused.value.retry_after_s <= 86400
        assert capped.submit(TYPE, {"topic": "tea"}, user="bo@x.io").user_id == "bo@x.io"
        assert capped.submit("DEMO", {"duration_s": 0}, user=USER).user_id == USER, "no LLM, no cap"


async def test_an_orgs_monthly_cost_cap_counts_every_member(r: redis.Redis, redis_url: str) -> None:
    from redis.asyncio import Redis

    from runner.llm import usage

    settings = Settings(org_spend_caps={"acme": {"month": {"max_cost_usd": 1.0}}})
    connection = Redis.from_url(redis_url, decode_responses=True)
    try:
        call = usage.Call(model="m", tokens_in=10, tokens_out=5, cost_usd=0.6, seconds=1)
        for member in ("a@acme.io", "b@acme.io"):
            assert await spend.first_spent(connection, settings, member, "acme") is None
            await usage.record(connection, "taskdeck:", "j-" + member, "DEMO", member, call, 600, org="acme")
        spent = await spend.first_spent(connection, settings, "c@acme.io", "acme")
        assert spent and "organisation acme has spent $1.2000 of the $1.00 allowed per month" in spent.message
        assert await spend.first_spent(connection, settings, "c@other.io", "other") is None
    finally:
        await connection.aclose()
