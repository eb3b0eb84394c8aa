"""What the dashboard shows of the LLM layer: endpoint and breaker state, usage over time, one job's
usage. Blocking reads, one round trip each, for pages and scripts (`runner.storage.store.blocking`)."""
from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..llm import LLM_SETTINGS, embedded, endpoint_id
from ..llm.usage import Call, StepUsage, calls, step_usage
from ..settings import Settings
from ..storage.keys import BUCKET_SECONDS, Keys
from ..storage.store import blocking
from .metrics import Window

Resolution = Literal["1m", "1h"]
CircuitState = Literal["closed", "open", "half-open"]
CostKind = Literal["type", "user", "model"]


class BreakerState(BaseModel):
    endpoint: str
    state: CircuitState
    failures: int = Field(description="Failed tries in a row.")
    threshold: int
    open_until: datetime | None = None
    last_error: str | None = None
    last_failure_at: datetime | None = None
    last_success_at: datetime | None = None


class LlmSource(BaseModel):
    """Which model answers the generative types here: no Redis needed (`types`, `up`, pages)."""

    source: Literal["endpoint", "embedded", "none"] = Field(
        description="endpoint: TASKDECK_LLM_BASE_URL; embedded: the packaged demo model; none: refused at submit.")
    description: str = Field(description="One line: which model answers, and where.")
    model: str | None = None
    endpoint: str | None = Field(None, description="Host, port and path; None for demo models started per worker.")
    problem: str | None = Field(None, description="Why the generative types cannot run here, naming the fix.")
    hint: str = Field("", description="One line on how to point Taskdeck at a real model ('' for an endpoint).")


class LlmStatus(BaseModel):
    configured: bool = Field(description="The generative types can run: an endpoint is set, or the embedded "
                             "demo model stands in.")
    missing: list[str] = Field(description="Environment variables to set before generative types can run.")
    source: Literal["endpoint", "embedded", "none"] = "none"
    description: str = ""
    problem: str | None = None
    hint: str = ""
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
    return datetime.fromtimestamp(int(ms) / 1000, UTC) if ms and int(ms) > 0 else None


def breaker_state(raw: dict[str, str], threshold: int, now_ms: int) -> BreakerState:
    failures = int(raw.get("failures", 0))
    open_until = int(raw.get("open_until", 0))
    state: CircuitState = "closed" if failures < threshold else "open" if now_ms < open_until else "half-open"
    return BreakerState(endpoint=raw["endpoint"], state=state, failures=failures, threshold=threshold,
                        open_until=when(raw.get("open_until")) if state == "open" else None,
                        last_error=raw.get("last_error"), last_failure_at=when(raw.get("last_failure_at")),
                        last_success_at=when(raw.get("last_success_at")))


def breakers(settings: Settings) -> list[BreakerState]:
    """Every endpoint the workers have called, with its circuit breaker (Workers page)."""
    keys = Keys(settings.prefix)
    with blocking(settings) as redis:
        names = sorted(redis.smembers(keys.llm_endpoints))
        with redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(keys.llm_breaker(name))
            rows = pipe.execute()
    now_ms = int(time.time() * 1000)
    return [breaker_state(raw, settings.llm_breaker_failures, now_ms) for raw in rows if raw.get("endpoint")]


def reset_breaker(settings: Settings, endpoint: str) -> None:
    """Close an open breaker by hand (after fixing the endpoint): calls go through again at once."""
    keys = Keys(settings.prefix)
    with blocking(settings) as redis, redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.llm_breaker(endpoint), mapping={"failures": 0, "open_until": 0})
        pipe.delete(keys.llm_probe(endpoint))
        pipe.execute()


def source(settings: Settings) -> LlmSource:
    """Which model answers the generative types with these settings, and what to do about it."""
    unset = [f"TASKDECK_{name.upper()}" for name in LLM_SETTINGS if not getattr(settings, name)]
    if settings.llm_base_url:
        return LlmSource(source="endpoint", description=embedded.describe(settings), model=settings.llm_model,
                         endpoint=endpoint_id(settings.llm_base_url),
                         problem=f"set {' and '.join(unset)} as well" if unset else None)
    if not settings.llm_embedded:
        return LlmSource(source="none", description=embedded.describe(settings), model=settings.llm_model,
                         problem=f"the generative types are refused: set {' and '.join(unset)}",
                         hint="set TASKDECK_LLM_BASE_URL and TASKDECK_LLM_MODEL for a real model, or unset "
                              "TASKDECK_LLM_EMBEDDED to run the embedded demo model")
    options = embedded.EmbeddedOptions()
    ignored = (f"TASKDECK_LLM_MODEL={settings.llm_model} is ignored without TASKDECK_LLM_BASE_URL; "
               if settings.llm_model else "")
    return LlmSource(source="embedded", description=embedded.describe(settings), model=embedded.model_name(options),
                     endpoint=endpoint_id(options.url) if options.url else None, problem=embedded.problem(options),
                     hint=f"{ignored}{embedded.HINT}")


def llm_status(settings: Settings) -> LlmStatus:
    """Which model answers, how replies are held to schemas, and its breaker (Workers/Submit)."""
    found = source(settings)
    missing = [f"TASKDECK_{name.upper()}" for name in LLM_SETTINGS if not getattr(settings, name)]
    if found.source == "embedded" and not found.problem:
        missing = []
    status = LlmStatus(configured=not missing, missing=missing, **found.model_dump(),
                       structured_output=settings.llm_structured_output, rpm=settings.llm_rpm, tpm=settings.llm_tpm,
                       user_tokens_per_hour=settings.llm_user_tokens_per_hour)
    if not status.endpoint:
        return status
    keys = Keys(settings.prefix)
    with blocking(settings) as redis:
        raw = redis.hgetall(keys.llm_breaker(status.endpoint))
        learned = redis.hget(keys.llm_modes(status.endpoint), status.model or "")
    if raw.get("endpoint"):
        status.breaker = breaker_state(raw, settings.llm_breaker_failures, int(time.time() * 1000))
    if settings.llm_structured_output == "auto":
        status.structured_output = f"auto ({learned or 'json_schema'})"
    return status


def usage_series(settings: Settings, resolution: Resolution = "1h", count: int = 24) -> list[UsagePoint]:
    """LLM usage per minute or hour, oldest first, the current bucket last (Metrics page)."""
    step = BUCKET_SECONDS[resolution]
    now = int(time.time() // step * step)
    starts = [now - step * i for i in reversed(range(count))]
    keys = Keys(settings.prefix)
    with blocking(settings) as redis, redis.pipeline(transaction=False) as pipe:
        for start in starts:
            pipe.hgetall(keys.metrics(resolution, start))
        rows = pipe.execute()
    return [point(start, raw) for start, raw in zip(starts, rows, strict=True)]


def point(start: int, raw: dict[str, str]) -> UsagePoint:
    split: dict[str, dict[str, float]] = defaultdict(dict)
    for name, value in raw.items():
        if name.startswith("llm_cost_usd:") or name.startswith("llm_tokens:"):
            measure, _, rest = name.partition(":")
            kind, _, key = rest.partition(":") if rest.startswith(("user:", "model:")) else ("type", "", rest)
            split[f"{measure}:{kind}"][key] = float(value)
    return UsagePoint(
        at=datetime.fromtimestamp(start, UTC),
        calls=int(float(raw.get("llm_calls", 0))), tokens_in=int(float(raw.get("llm_tokens_in", 0))),
        tokens_out=int(float(raw.get("llm_tokens_out", 0))), cost_usd=round(float(raw.get("llm_cost_usd", 0)), 8),
        throttled=int(float(raw.get("llm_throttled", 0))),
        cost_by_type=split["llm_cost_usd:type"], cost_by_user=split["llm_cost_usd:user"],
        tokens_by_user={k: int(v) for k, v in split["llm_tokens:user"].items()},
        cost_by_model=split["llm_cost_usd:model"],
    )


def job_usage(settings: Settings, job_id: str) -> JobUsage:
    """One job's usage per step and its call log (Job page)."""
    keys = Keys(settings.prefix)
    with blocking(settings) as redis, redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.llm_usage(job_id))
        pipe.lrange(keys.llm_calls(job_id), 0, -1)
        steps, log = pipe.execute()
    return JobUsage(steps=step_usage(steps), calls=calls(log))


def cost_over_time(window: Window) -> list[dict[str, Any]]:
    """Rows for a cost/tokens chart from the Window the Metrics page already read (no extra round trip)."""
    return [{"at": b.at, "cost_usd": round(b.get("llm_cost_usd"), 8), "tokens_in": int(b.get("llm_tokens_in")),
             "tokens_out": int(b.get("llm_tokens_out")), "calls": int(b.get("llm_calls")),
             "throttled": int(b.get("llm_throttled"))} for b in window.buckets]


def cost_by(window: Window, kind: CostKind) -> dict[str, float]:
    """Cost over the window per task type, user or model, largest first."""
    prefix = "llm_cost_usd:" if kind == "type" else f"llm_cost_usd:{kind}:"
    totals: dict[str, float] = defaultdict(float)
    for bucket in window.buckets:
        for name, value in bucket.counters.items():
            key = name.removeprefix(prefix)
            if name.startswith(prefix) and (kind != "type" or not key.startswith(("user:", "model:"))):
                totals[key] += value
    return dict(sorted(totals.items(), key=lambda item: -item[1]))
