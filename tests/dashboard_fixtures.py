"""What the dashboard tests share: opening a page in AppTest, a Client, jobs driven to any state
through runner's own transitions (no worker needed), and a test-only task type with every kind of field."""
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date, timedelta
from enum import StrEnum
from typing import Any

import pytest
from pydantic import BaseModel, Field
from streamlit.testing.v1 import AppTest

from runner import AsyncClient, Client, TaskContext, task
from runner.llm import usage
from runner.llm.usage import Call
from runner.models import Attempt, Job, Step, StepStatus, utcnow
from runner.storage import transitions
from tests.conftest import ROOT

APP = str(ROOT / "dashboard.py")


class Tone(StrEnum):
    warm = "warm"
    formal = "formal"


class Channel(BaseModel):
    name: str = Field(max_length=40)
    weight: float = Field(1.0, ge=0, le=10)


class Brief(BaseModel):
    brand: str = Field(max_length=100, description="Whose plan it is.")
    weeks: int = Field(4, ge=1, le=52)


class FormZooPayload(BaseModel):
    """Every kind of field the Submit form maps."""

    code: str = Field(pattern=r"^[A-Z]{3}$", max_length=3, description="Three capital letters.")
    count: int = Field(3, ge=1, le=10)
    ratio: float = Field(0.5, ge=0, le=1)
    enabled: bool = True
    tone: Tone = Tone.warm
    mode: str = Field("fast", json_schema_extra={"enum": ["fast", "thorough"]})
    keywords: list[str] = Field(default_factory=list, max_length=5)
    tones: list[Tone] = Field(default_factory=list)
    channels: list[Channel] = Field(default_factory=list)
    brief: Brief
    limit: int | None = Field(None, ge=1)
    start: date | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    notes: str = Field("", max_length=2000)


@task("TEST_FORM_ZOO", payload=FormZooPayload, steps=["Only"], max_attempts=1)
async def form_zoo(ctx: TaskContext, payload: FormZooPayload) -> dict[str, Any]:
    return payload.model_dump(mode="json")


AUTH = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "a-test-cookie-secret-of-32-chars!",
        "mock": {"client_id": "taskdeck", "client_secret": "secret",
                 "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}}


def app(as_user: str | None = None, timeout: float = 30) -> AppTest:
    """The app in AppTest; `as_user` turns sign-in on ([auth] in the secrets) with that email signed in as
    st.user ("" for nobody signed in). None: no [auth], the local mode."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    if as_user is not None:
        at.secrets["auth"] = AUTH
        at.user = {"is_logged_in": True, "email": as_user, "name": as_user} if as_user else {"is_logged_in": False}
    return at


def open_page(page: str, timeout: float = 30, as_user: str | None = None, **query: str) -> AppTest:
    """The app as a browser opening `page` (app_pages/NAME.py) with `query` in its URL."""
    at = app(as_user, timeout)
    at.run()
    for key, value in query.items():
        at.query_params[key] = value
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    """Everything markdown-ish the page shows, joined (for assertions on what a user reads)."""
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "error", "success", "title", "toast")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def by_label(elements: Any, label: str) -> Any:
    found = [e for e in elements if e.label == label]
    assert found, f"no element labelled {label!r}; have {[e.label for e in elements]}"
    return found[0]


def button(at: AppTest, label: str) -> Any:
    found = [b for b in at.button if b.label.startswith(label)]
    assert found, f"no button {label!r}; have {[b.label for b in at.button]}"
    return found[0]


@pytest.fixture
def client(redis_url: str) -> Iterator[Client]:
    with Client() as c:
        yield c


def drive(job_id: str, outcome: str, *, error: str | None = None, result: Any = None, ago_s: float = 0.0,
          duration_s: float = 1.0, calls: list[Call] = (), partial: str | None = None) -> Job:
    """Take a queued job through one attempt ending in `outcome` (completed, failed, processing), as a
    worker would, `ago_s` seconds in the past; `calls` are LLM calls it made (usage recorded as the LLM
    client records it, and added to the record as TaskContext does), `partial` its streamed output."""
    return asyncio.run(_drive(job_id, outcome, error, result, ago_s, duration_s, list(calls), partial))


async def _drive(job_id: str, outcome: str, error: str | None, result: Any, ago_s: float, duration_s: float,
                 calls: list[Call] = (), partial: str | None = None) -> Job:
    async with AsyncClient() as ac:
        store, keys = ac.store, ac.store.keys
        job = await store.load(job_id)
        assert job is not None
        start = utcnow() - timedelta(seconds=ago_s + duration_s)
        spec = transitions.start(job, "worker-test", ("Prepare", "Write"), start, keys.arq_in_progress(job.id), 30_000,
                                 None, {})
        assert (await store.apply(job.id, spec, start)).applied
        await store.redis.zrem(keys.queue, job.id)  # what ARQ's pickup does
        running = await store.load(job_id)
        for call in calls:
            await usage.record(store.redis, ac.settings.prefix, job.id, job.type, job.user_id, call, 3600)
        if calls or partial is not None:
            fields = {"progress": 50.0, "current_step": "Write", "updated_at": start,
                      "tokens_in": sum(c.tokens_in for c in calls), "tokens_out": sum(c.tokens_out for c in calls),
                      "cost_usd": round(sum(c.cost_usd for c in calls), 8),
                      **({"partial": partial} if partial is not None else {})}
            assert (await store.apply(job.id, transitions.progress(running.attempts, fields), start)).applied
        steps = [Step(name="Prepare", status=StepStatus.completed, progress=100, started_at=start,
                      finished_at=start + timedelta(seconds=duration_s / 2)),
                 Step(name="Write", status=StepStatus.running, progress=40,
                      started_at=start + timedelta(seconds=duration_s / 2))]
        if outcome == "processing":
            fields = {"progress": 70.0, "current_step": "Write", "steps": steps, "updated_at": start,
                      "eta": start + timedelta(seconds=duration_s * 2)}
            assert (await store.apply(job.id, transitions.progress(running.attempts, fields), start)).applied
            return await store.load(job_id)
        end = start + timedelta(seconds=duration_s)
        closed = transitions.close_steps(steps, StepStatus.completed if outcome == "completed" else StepStatus.failed,
                                         end, error)
        record = Attempt(number=running.attempts, worker="worker-test", started_at=start, finished_at=end,
                         outcome=outcome, error=error, traceback=f"Traceback (most recent call last):\n  {error}"
                         if error else None, steps=closed)
        if outcome == "completed":
            spec = transitions.complete(running, record, result, end, keys, ac.settings.max_result_bytes)
        else:
            spec = transitions.fail(running, record, end, keys, retry_at=None)
        assert (await store.apply(job.id, spec, end)).applied
        return await store.load(job_id)
