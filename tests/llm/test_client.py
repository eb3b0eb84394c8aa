"""The LLM client against a local OpenAI-compatible server: streaming, usage and cost, structured output,
retries inside the call, the circuit breaker and the shared rate budget."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from pydantic import BaseModel, Field

from runner import Fatal
from runner.llm import pricing
from runner.llm.budget import Budget
from runner.llm.client import LLM
from runner.llm.errors import CircuitOpen, EndpointFailed, EndpointRefused, OutputInvalid
from runner.llm.retry import retry_after
from runner.llm.structured import parse, response_schema
from runner.reads import llm_status as status
from runner.settings import Settings
from runner.storage.store import connect
from tests.fake_llm import FakeLLM, Trouble

MESSAGES = [{"role": "system", "content": "You write titles."}, {"role": "user", "content": "Three titles, please."}]


class Scored(BaseModel):
    label: str
    score: int = Field(ge=1, le=10)


class Titles(BaseModel):
    titles: list[str]
    best: Scored


def settings_for(fake: FakeLLM, **overrides: Any) -> Settings:
    return Settings(llm_base_url=fake.base_url, llm_model="gpt-4o-mini", llm_api_key="k", **overrides)


@pytest.fixture
async def make_llm(fake_llm: FakeLLM, redis_url: str) -> AsyncIterator[Any]:  # noqa: F811
    made: list[LLM] = []

    def make(**overrides: Any) -> LLM:
        settings = settings_for(fake_llm, **overrides)
        made.append(LLM(settings, connect(settings)))
        return made[-1]

    yield make
    for llm in made:
        await llm.close()
        await llm.redis.aclose()


async def test_streams_the_reply_with_usage_cost_and_a_strict_schema(make_llm, fake_llm: FakeLLM) -> None:  # noqa: F811
    llm = make_llm()
    deltas: list[str] = []

    async def on_text(delta: str) -> None:
        deltas.append(delta)

    reply = await llm.generate(MESSAGES, Titles, on_text=on_text)
    assert isinstance(reply.value, Titles) and len(reply.value.titles) == 2
    assert len(deltas) > 1 and "".join(deltas) == reply.text
    [call] = reply.calls
    assert call.tokens_in > 0 and call.tokens_out > 0 and not call.estimated
    assert call.cost_usd == pytest.approx((call.tokens_in * 0.15 + call.tokens_out * 0.60) / 1e6)
    sent = fake_llm.requests[0].body
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    schema = sent["response_format"]["json_schema"]["schema"]
    assert schema["additionalProperties"] is False and schema["required"] == ["titles", "best"]
    assert schema["properties"]["best"]["required"] == ["label", "score"] and "$defs" not in schema


async def test_a_429_is_waited_out_as_retry_after_asks(make_llm, fake_llm: FakeLLM) -> None:  # noqa: F811
    fake_llm.then(Trouble(status=429, retry_after="0.4"), Trouble(status=429, retry_after="0.2"))
    reply = await make_llm(llm_max_tries=1).generate(MESSAGES, Titles)
    first, second, third = fake_llm.requests
    assert second.at - first.at >= 0.4 and third.at - second.at >= 0.2
    assert reply.calls[0].throttled == 2 and reply.calls[0].tries == 3


def test_retry_after_reads_seconds_milliseconds_and_http_dates() -> None:
    class Response:
        def __init__(self, **headers: str) -> None:
            self.headers = headers

    class Error(Exception):
        def __init__(self, **headers: str) -> None:
            self.response = Response(**headers)

    assert retry_after(Error(**{"retry-after": "7"})) == 7
    assert retry_after(Error(**{"retry-after-ms": "250", "retry-after": "7"})) == 0.25
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < retry_after(Error(**{"retry-after": later})) <= 30
    assert retry_after(Error()) is None and retry_after(ValueError()) is None


async def test_5xx_replies_are_retried_then_fail_the_call(make_llm, fake_llm: FakeLLM) -> None:  # noqa: F811
    fake_llm.then(Trouble(status=502), "ok")
    assert (await make_llm(llm_max_tries=2).generate(MESSAGES, Titles)).calls[0].tries == 2
    fake_llm.then(Trouble(status=500), Trouble(status=503))
    with pytest.raises(EndpointFailed, match="failed 2 tries in a row; last: HTTP 503"):
        await make_llm(llm_max_tries=2).generate(MESSAGES, Titles)


async def test_a_slow_reply_times_out_and_is_tried_again(make_llm, fake_llm: FakeLLM) -> None:  # noqa: F811
    fake_llm.then(Trouble(delay_s=1.0))
    started = time.monotonic()
    reply = await make_llm(llm_timeout_s=0.3).generate(MESSAGES, Titles)
    assert reply.calls[0].tries == 2 and time.monotonic() - started < 2.5


async def test_broken_streams_are_retried_and_unusable_replies_asked_again(make_llm, fake_llm: FakeLLM) -> None:  # noqa: F811
    fake_llm.then(Trouble(malformed_stream=True), Trouble(content="Sure! Titles: a, b, c"),
                  Trouble(content='{"titles": []}'))
    reply = await make_llm().generate(MESSAGES, Titles)
    assert len(fake_llm.requests) == 4 and len(reply.calls) == 3
    assert "could not be used: the reply was not valid JSON" in fake_llm.requests[2].task
    assert "best: Field required" in fake_llm.requests[3].task
    fake_llm.then(*[Trouble(content="no")] * 3)
    with pytest.raises(OutputInvalid, match="did not fit Titles in 3 tries"):
        await make_llm().generate(MESSAGES, Titles)


async def test_an_endpoint_without_json_schema_gets_the_schema_in_the_prompt(make_llm, fake_llm: FakeLLM, r) -> None:  # noqa: F811
    fake_llm.then(Trouble(refuse_schema=True))
    assert (await make_llm().generate(MESSAGES, Titles)).value.best.score == 1
    fallback = fake_llm.requests[1].body
    assert "response_format" not in fallback and "<schema>" in fallback["messages"][0]["content"]
    assert r.hget(f"taskdeck:llm:modes:{make_llm().endpoint}", "gpt-4o-mini") == "text"
    await make_llm().generate(MESSAGES, Titles)
    assert "response_format" not in fake_llm.requests[2].body, "a new client should remember the fallback"


async def test_a_reply_without_usage_is_estimated(make_llm, fake_llm: FakeLLM) -> None:  # noqa: F811
    fake_llm.then(Trouble(no_usage=True))
    [call] = (await make_llm().generate(MESSAGES, Titles)).calls
    assert call.estimated and call.tokens_in > 0 and call.tokens_out > 0


async def test_refusals_no_retry_can_fix_fail_the_job_at_once(make_llm, fake_llm: FakeLLM) -> None:  # noqa: F811
    fake_llm.then(Trouble(status=401))
    with pytest.raises(Fatal, match="refused the API key .* set TASKDECK_LLM_API_KEY"):
        await make_llm().generate(MESSAGES, Titles)
    fake_llm.then(Trouble(status=429, code="insufficient_quota"))
    with pytest.raises(EndpointRefused, match="out of quota"):
        await make_llm().generate(MESSAGES, Titles)
    assert len(fake_llm.requests) == 2


async def test_the_breaker_opens_fails_fast_and_closes_after_a_good_probe(make_llm, fake_llm: FakeLLM) -> None:  # noqa: F811
    llm = make_llm(llm_max_tries=1, llm_breaker_failures=3, llm_breaker_cooldown_s=0.5)
    fake_llm.then(Trouble(status=429, retry_after="0"), *[Trouble(status=500)] * 3)
    for _ in range(3):
        with pytest.raises(EndpointFailed):
            await llm.generate(MESSAGES, Titles)
    sent = len(fake_llm.requests)
    with pytest.raises(CircuitOpen, match="failed 3 times in a row .*HTTP 500"):
        await llm.generate(MESSAGES, Titles)
    assert len(fake_llm.requests) == sent, "an open breaker must not call the endpoint"
    [state] = status.breakers(llm.settings)
    assert state.state == "open" and state.failures == 3 and state.endpoint == llm.endpoint
    await asyncio.sleep(0.55)
    assert status.breakers(llm.settings)[0].state == "half-open"
    await llm.generate(MESSAGES, Titles)
    assert status.breakers(llm.settings)[0].state == "closed"


async def test_an_open_breaker_can_be_reset_by_hand(make_llm, fake_llm: FakeLLM) -> None:  # noqa: F811
    llm = make_llm(llm_max_tries=1, llm_breaker_failures=1, llm_breaker_cooldown_s=60)
    fake_llm.then(Trouble(status=500))
    with pytest.raises(EndpointFailed):
        await llm.generate(MESSAGES, Titles)
    with pytest.raises(CircuitOpen):
        await llm.generate(MESSAGES, Titles)
    status.reset_breaker(llm.settings, llm.endpoint)
    await llm.generate(MESSAGES, Titles)


async def test_the_rate_budget_is_shared_by_every_worker(redis_url: str) -> None:
    settings = Settings()
    first, second = connect(settings), connect(settings)
    try:
        a = Budget(first, settings.prefix, "api.test/v1", rpm=0, tpm=6000)
        b = Budget(second, settings.prefix, "api.test/v1", rpm=0, tpm=6000)
        assert await a.take(6000) == 0
        started = time.monotonic()
        await b.take(50)
        assert 0.4 <= time.monotonic() - started < 2, "100 tokens/s refill: 50 tokens take about 0.5 s"
        requests = Budget(first, settings.prefix, "other/v1", rpm=60, tpm=0)
        for _ in range(60):
            assert await requests._run("take", 0) == 0
        assert 0 < await requests._run("take", 0) <= 1000, "the 61st request of the minute must wait"
    finally:
        await first.aclose()
        await second.aclose()


def test_prices_take_the_longest_matching_model_name() -> None:
    prices = Settings().llm_prices
    assert pricing.price(prices, "gpt-4o-mini-2024-07-18") == (0.15, 0.60)
    assert pricing.price(prices, "gpt-4o-2024-08-06") == (2.50, 10.00)
    assert pricing.price(prices, "models/gemini-2.5-flash") == (0.30, 2.50)
    assert pricing.cost(prices, "llama3.1:8b", 1000, 1000) == 0.0


def test_replies_are_parsed_from_fences_and_prose() -> None:
    body = '{"titles": ["a"], "best": {"label": "a", "score": 3}}'
    assert parse(f"Here you go:\n```json\n{body}\n```", Titles).best.score == 3
    assert parse(f"Sure. {body} Hope it helps!", Titles).titles == ["a"]
    with pytest.raises(OutputInvalid, match="best.score: Input should be less than or equal to 10"):
        parse(body.replace("3", "11"), Titles)
    assert response_schema(Titles)["properties"]["best"]["properties"]["score"] == {
        "type": "integer", "minimum": 1, "maximum": 10}
