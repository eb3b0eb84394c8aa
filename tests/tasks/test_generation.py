"""The generative task types, run in this process against the fake endpoint: every type gives its
structured result with real progress, resumes from kept parts, reads its sources and records usage."""
from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from runner import AsyncClient, Fatal
from runner.llm.errors import EndpointFailed
from runner.models import StepStatus
from runner.reads import llm_status as status
from runner.reads import metrics
from runner.settings import Settings
from runner.worker import runtime
from tests.fake_llm import FakeLLM, Trouble
from tests.inline import Run

USER = "ana@x.io"
BRIEFS: dict[str, dict[str, Any]] = {
    "GENERATE_MEDIA_PLAN": {"brand": "Brew", "audience": "coffee lovers", "weeks": 2, "posts_per_week": 2,
                            "start_date": "2030-01-07"},
    "GENERATE_BRAND_KIT": {"brand_name": "Brew", "industry": "coffee"},
    "AUTO_GENERATE_PERSONAS": {"product": "grinder", "market": "home baristas", "count": 12},
    "GENERATE_CONTENT_PACKAGE": {"topic": "cold brew", "channels": ["LinkedIn"]},
    "GENERATE_FUNNEL_CAMPAIGN": {"product": "grinder", "audience": "home baristas",
                                 "stages": ["Awareness", "Conversion"]},
    "GENERATE_VIRAL_IDEAS": {"niche": "coffee", "count": 3},
    "GENERATE_TRENDS": {"industry": "coffee", "count": 3},
    "GENERATE_GLOBAL_TRENDS": {"industry": "coffee", "regions": ["Europe", "Asia"], "per_region": 2},
    "GENERATE_FACEBOOK_TRENDS": {"niche": "coffee", "count": 2},
    "GENERATE_IDEAS_FROM_PRODUCT": {"product_name": "Grindr 2", "description": "a quiet grinder", "count": 3},
}
CALLS = {"GENERATE_MEDIA_PLAN": 4, "GENERATE_BRAND_KIT": 3, "AUTO_GENERATE_PERSONAS": 3, "GENERATE_CONTENT_PACKAGE": 4,
         "GENERATE_FUNNEL_CAMPAIGN": 3, "GENERATE_VIRAL_IDEAS": 2, "GENERATE_TRENDS": 2, "GENERATE_GLOBAL_TRENDS": 3,
         "GENERATE_FACEBOOK_TRENDS": 2, "GENERATE_IDEAS_FROM_PRODUCT": 2}


@pytest.fixture
async def client(llm_env: dict[str, str]) -> AsyncIterator[AsyncClient]:  # noqa: F811
    async with AsyncClient() as ac:
        yield ac
    await runtime.close()


@pytest.mark.parametrize("type_name", sorted(BRIEFS))
async def test_each_generative_type_gives_its_result_with_real_progress(
    type_name: str, client: AsyncClient, fake_llm: FakeLLM, r  # noqa: F811
) -> None:
    job = await client.submit(type_name, BRIEFS[type_name], user=USER)
    run = Run(job.id, type_name, user_id=job.user_id)
    result = await run(BRIEFS[type_name])

    assert isinstance(result, dict) and result
    assert len(fake_llm.requests) == CALLS[type_name]
    assert all(s.status is StepStatus.completed for s in run.ctx.steps), run.ctx.steps
    progress = [s["progress"] for s in run.snapshots]
    assert progress == sorted(progress) and progress[-1] == 100
    assert len({p for p in progress if 0 < p < 100}) >= 2, "progress should move between the steps"
    assert run.ctx.usage and run.ctx.usage["tokens_in"] > 0 and run.ctx.usage["cost_usd"] > 0
    assert run.ctx.partial and run.ctx.partial.count("\n## ") == CALLS[type_name]
    hour = f"taskdeck:m:1h:{int(time.time() // 3600 * 3600)}"
    assert float(r.hget(hour, f"llm_tokens:user:{USER}")) == run.ctx.usage["tokens_in"] + run.ctx.usage["tokens_out"]
    assert float(r.hget(hour, f"llm_cost_usd:{type_name}")) == pytest.approx(run.ctx.usage["cost_usd"])
    used = status.job_usage(Settings(), job.id)
    assert len(used.calls) == CALLS[type_name] and {c.step for c in used.calls} <= set(run.type.steps)
    assert sum(s.tokens_out for s in used.steps) == run.ctx.usage["tokens_out"]
    window = await metrics.window(client.store, "1h")
    assert sum(row["cost_usd"] for row in status.cost_over_time(window)) == pytest.approx(run.ctx.usage["cost_usd"])
    assert list(status.cost_by(window, "type")) == [type_name] and list(status.cost_by(window, "user")) == [USER]
    assert list(status.cost_by(window, "model")) == ["gpt-4o-mini"]


async def test_large_outputs_come_in_parts_and_a_retry_resumes_after_the_last_one(
    client: AsyncClient, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch, r  # noqa: F811
) -> None:
    monkeypatch.setenv("TASKDECK_LLM_MAX_TRIES", "1")
    brief = {"product": "grinder", "market": "home baristas", "count": 30}
    job = await client.submit("AUTO_GENERATE_PERSONAS", brief, user=USER)
    fake_llm.then("ok", "ok", Trouble(status=500))
    first = Run(job.id, "AUTO_GENERATE_PERSONAS", user_id=job.user_id)
    with pytest.raises(EndpointFailed):
        await first(brief)
    assert sorted(r.hkeys(f"taskdeck:checkpoints:{job.id}")) == ["personas:1", "segments"]
    assert first.ctx.steps[0].status is StepStatus.completed and first.ctx.progress_value == pytest.approx(50 + 50 / 3)

    second = Run(job.id, "AUTO_GENERATE_PERSONAS", attempt=2, user_id=job.user_id)
    result = await second(brief)
    asked = [req.task for req in fake_llm.requests]
    assert len(asked) == 5 and sum("Split the market" in a for a in asked) == 1
    assert sum("personas 1 to 10 " in a for a in asked) == 1, "the retry asked for a kept part again"
    assert "personas 11 to 20" in asked[3] and "personas 21 to 30" in asked[4]
    assert len(result["personas"]) == 6  # the fake model answers 2 per batch
    assert second.ctx.partial.startswith("[resumed with 2 of 4 parts from the last attempt]")
    assert r.ttl(f"taskdeck:checkpoints:{job.id}") > 29 * 86400, "checkpoints should be kept as long as the job"


async def test_trends_read_the_sources_the_brief_names(client: AsyncClient, fake_llm: FakeLLM, r) -> None:  # noqa: F811
    from runner.web import sources

    rt = runtime.runtime()
    url = "http://127.0.0.1:9/feed.xml"
    items = [sources.FeedItem(id="1", title="Oat milk shortage", link="http://x/1", summary="Prices up 40%")]
    await sources.add_items(rt.redis, rt.prefix, f"user:{USER}", sources.canonical(url), items)
    brief = {"industry": "coffee", "count": 3, "sources": [url]}
    job = await client.submit("GENERATE_TRENDS", brief, user=USER)
    run = Run(job.id, "GENERATE_TRENDS", user_id=job.user_id)
    await run(brief)
    assert "Oat milk shortage" in fake_llm.requests[0].task and "Prices up 40%" in fake_llm.requests[0].task
    assert run.ctx.steps[0].name == "Gather context" and run.ctx.steps[0].status is StepStatus.completed


async def test_a_worker_without_an_endpoint_fails_the_job_at_once(client: AsyncClient, monkeypatch) -> None:
    job = await client.submit("GENERATE_BRAND_KIT", BRIEFS["GENERATE_BRAND_KIT"], user=USER)
    monkeypatch.delenv("TASKDECK_LLM_BASE_URL")
    monkeypatch.setenv("TASKDECK_LLM_EMBEDDED", "0")  # else the embedded demo model stands in (test_embedded.py)
    await runtime.close()
    with pytest.raises(Fatal, match="this worker has no LLM endpoint: set TASKDECK_LLM_BASE_URL"):
        await Run(job.id, "GENERATE_BRAND_KIT", user_id=job.user_id)(BRIEFS["GENERATE_BRAND_KIT"])
