"""What the dashboard shows of the LLM layer: endpoint and breaker state, usage over time, one job's
usage. Blocking reads, one round trip each, for pages and scripts (`runner.runtime.blocking`)."""
from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..metrics import Window
from ..runtime import blocking
from ..settings import Settings
from . import LLM_SETTINGS, endpoint_id
from .breaker import endpoints_key, state_key
from .usage import Call, StepUsage, call_log_key, calls, job_usage_key, step_usage

Resolution = Literal["1m", "1h"]
SECONDS = {"1m": 60, "1h": 3600}


class BreakerState(BaseModel):
    endpoint: str
    state: Literal["closed", "open", "half-open"]
    failures: int = Field(description="Failed tries in a row.")
    threshold: int
    open_until: datetime | None = None
    last_error: str | None = None
    last_failure_at: datetime | None = None
    last_success_at: datetime | None = None


class LlmStatus(BaseModel):
    configured: bool
    missing: list[str] = Field(description="Environment variables to set before generative types can run.")
    endpoint: str | None = None
    model: str | None = None
    structured_output: str
    rpm: int
    tpm: int
    user_tokens_per_hour: int
    breaker: BreakerState | None = None


class UsagePoint(BaseModel):
    at: datetime
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    throttled: int = 0
    cost_by_type: dict[str, float] = Field(default_factory=dict)
    cost_by_user: dict[str, float] = Field(default_factory=dict)
    tokens_by_user: dict[str, int] = Field(default_factory=dict)
    cost_by_model: dict[str, float] = Field(default_factory=dict)


class JobUsage(BaseModel):
    steps: list[StepUsage]
    calls: list[Call]


def when(ms: str | None) -> datetime | None:
    return datetime.fromtimestamp(int(ms) / 1000, timezone.utc) if ms and int(ms) > 0 else None


def breaker_state(raw: dict[str, str], threshold: int, now_ms: int) -> BreakerState:
    failures = int(raw.get("failures", 0))
    open_until = int(raw.get("open_until", 0))
    state = "closed" if failures < threshold else "open" if now_ms < open_until else "half-open"
    return BreakerState(endpoint=raw["endpoint"], state=state, failures=failures, threshold=threshold,
                        open_until=when(raw.get("open_until")) if state == "open" else None,
                        last_error=raw.get("last_error"), last_failure_at=when(raw.get("last_failure_at")),
                        last_success_at=when(raw.get("last_success_at")))


def breakers(settings: Settings) -> list[BreakerState]:
    """Every endpoint the workers have called, with its circuit breaker (Workers page)."""
    with blocking(settings) as redis:
        names = sorted(redis.smembers(endpoints_key(settings.prefix)))
        with redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(state_key(settings.prefix, name))
            rows = pipe.execute()
    now_ms = int(time.time() * 1000)
    return [breaker_state(raw, settings.llm_breaker_failures, now_ms) for raw in rows if raw.get("endpoint")]


def reset_breaker(settings: Settings, endpoint: str) -> None:
    """Close an open breaker by hand (after fixing the endpoint): calls go through again at once."""
    with blocking(settings) as redis:
        key = state_key(settings.prefix, endpoint)
        with redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"failures": 0, "open_until": 0})
            pipe.delete(f"{key}:probe")
            pipe.execute()


def llm_status(settings: Settings) -> LlmStatus:
    """Is an endpoint configured, which, how replies are held to schemas, and its breaker (Workers/Submit)."""
    from .client import modes_key  # the SDK loads only when a page asks for this

    missing = [f"TASKDECK_{name.upper()}" for name in LLM_SETTINGS if not getattr(settings, name)]
    status = LlmStatus(configured=not missing, missing=missing, model=settings.llm_model,
                       structured_output=settings.llm_structured_output, rpm=settings.llm_rpm,
                       tpm=settings.llm_tpm, user_tokens_per_hour=settings.llm_user_tokens_per_hour)
    if not settings.llm_base_url:
        return status
    status.endpoint = endpoint_id(settings.llm_base_url)
    with blocking(settings) as redis:
        raw = redis.hgetall(state_key(settings.prefix, status.endpoint))
        learned = redis.hget(modes_key(settings.prefix, status.endpoint), settings.llm_model or "")
    if raw.get("endpoint"):
        status.breaker = breaker_state(raw, settings.llm_breaker_failures, int(time.time() * 1000))
    if settings.llm_structured_output == "auto":
        status.structured_output = f"auto ({learned or 'json_schema'})"
    return status


def usage_series(settings: Settings, resolution: Resolution = "1h", count: int = 24) -> list[UsagePoint]:
    """LLM usage per minute or hour, oldest first, the current bucket last (Metrics page)."""
    step = SECONDS[resolution]
    now = int(time.time() // step * step)
    starts = [now - step * i for i in reversed(range(count))]
    with blocking(settings) as redis:
        with redis.pipeline(transaction=False) as pipe:
            for start in starts:
                pipe.hgetall(f"{settings.prefix}m:{resolution}:{start}")
            rows = pipe.execute()
    return [point(start, raw) for start, raw in zip(starts, rows)]


def point(start: int, raw: dict[str, str]) -> UsagePoint:
    split: dict[str, dict[str, float]] = defaultdict(dict)
    for name, value in raw.items():
        if name.startswith("llm_cost_usd:") or name.startswith("llm_tokens:"):
            measure, _, rest = name.partition(":")
            kind, _, key = rest.partition(":") if rest.startswith(("user:", "model:")) else ("type", "", rest)
            split[f"{measure}:{kind}"][key] = float(value)
    return UsagePoint(
        at=datetime.fromtimestamp(start, timezone.utc),
        calls=int(float(raw.get("llm_calls", 0))), tokens_in=int(float(raw.get("llm_tokens_in", 0))),
        tokens_out=int(float(raw.get("llm_tokens_out", 0))), cost_usd=round(float(raw.get("llm_cost_usd", 0)), 8),
        throttled=int(float(raw.get("llm_throttled", 0))),
        cost_by_type=split["llm_cost_usd:type"], cost_by_user=split["llm_cost_usd:user"],
        tokens_by_user={k: int(v) for k, v in split["llm_tokens:user"].items()},
        cost_by_model=split["llm_cost_usd:model"],
    )


def job_usage(settings: Settings, job_id: str) -> JobUsage:
    """One job's usage per step and its call log (Job page)."""
    with blocking(settings) as redis:
        with redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(job_usage_key(settings.prefix, job_id))
            pipe.lrange(call_log_key(settings.prefix, job_id), 0, -1)
            steps, log = pipe.execute()
    return JobUsage(steps=step_usage(steps), calls=calls(log))


def cost_over_time(window: Window) -> list[dict[str, Any]]:
    """Rows for a cost/tokens chart from the Window the Metrics page already read (no extra round trip)."""
    return [{"at": b.at, "cost_usd": round(b.get("llm_cost_usd"), 8), "tokens_in": int(b.get("llm_tokens_in")),
             "tokens_out": int(b.get("llm_tokens_out")), "calls": int(b.get("llm_calls")),
             "throttled": int(b.get("llm_throttled"))} for b in window.buckets]


def cost_by(window: Window, kind: Literal["type", "user", "model"]) -> dict[str, float]:
    """Cost over the window per task type, user or model, largest first."""
    prefix = "llm_cost_usd:" if kind == "type" else f"llm_cost_usd:{kind}:"
    totals: dict[str, float] = defaultdict(float)
    for bucket in window.buckets:
        for name, value in bucket.counters.items():
            key = name.removeprefix(prefix)
            if name.startswith(prefix) and (kind != "type" or not key.startswith(("user:", "model:"))):
                totals[key] += value
    return dict(sorted(totals.items(), key=lambda item: -item[1]))
