"""Tokens and cost of LLM calls, as the endpoint reports them: per call and step (kept with the job), and
per type, user and model in the metric buckets the dashboard reads (Keys.metrics("1m", minute) and ("1h", hour),
the hashes lua/transition.lua keeps)."""
from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
from pydantic import BaseModel, Field
from redis.asyncio import Redis

from ..models import utcnow
from ..storage.keys import BUCKET_SECONDS, BUCKET_TTL_S, Keys, bucket_start

CALL_LOG_MAX = 500
SPEND_PERIOD_TTL_S = {"day": 2 * 86400, "month": 35 * 86400}  # a period's spend outlives it by a day or more


class Call(BaseModel):
    """One request to the endpoint, counting the tries that led to its reply."""

    model: str
    tokens_in: int
    tokens_out: int
    cost_usd: float
    seconds: float
    tries: int = 1
    throttled: int = Field(0, description="429 replies waited out before this call got through.")
    estimated: bool = Field(False, description="The endpoint reported no usage; tokens counted as characters / 4.")
    priced: bool = Field(True, description="False when the model has no entry in Settings.llm_prices.")
    finish_reason: str | None = None
    at: datetime = Field(default_factory=utcnow)
    step: str | None = None
    part: str | None = None


class StepUsage(BaseModel):
    step: str
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0


def bucket_fields(call: Call, task_type: str, user: str) -> dict[str, float]:
    tokens = call.tokens_in + call.tokens_out
    return {
        "llm_calls": 1, "llm_tokens_in": call.tokens_in, "llm_tokens_out": call.tokens_out,
        "llm_cost_usd": call.cost_usd, "llm_throttled": call.throttled, "llm_estimated": int(call.estimated),
        f"llm_tokens:{task_type}": tokens, f"llm_cost_usd:{task_type}": call.cost_usd,
        f"llm_tokens:user:{user}": tokens, f"llm_cost_usd:user:{user}": call.cost_usd,
        f"llm_tokens:model:{call.model}": tokens, f"llm_cost_usd:model:{call.model}": call.cost_usd,
    }


def period_label(period: str, at: float) -> str:
    """The UTC day ("day:2030-01-07") or month ("month:2030-01") holding time `at`: a Keys.spend period."""
    moment = datetime.fromtimestamp(at, UTC)
    return f"day:{moment:%Y-%m-%d}" if period == "day" else f"month:{moment:%Y-%m}"


def spend_fields(call: Call, user: str, org: str) -> dict[str, float]:
    """What one call adds to its day's and month's spend (the per-user and per-org caps, llm.spend)."""
    tokens = call.tokens_in + call.tokens_out
    fields = {f"tokens:user:{user}": tokens, f"cost_usd:user:{user}": call.cost_usd}
    if org:
        fields |= {f"tokens:org:{org}": tokens, f"cost_usd:org:{org}": call.cost_usd}
    return fields


async def record(redis: Redis, prefix: str, job_id: str, task_type: str, user: str, call: Call,
                 retention_s: float, org: str = "") -> None:
    """One pipelined write: the metric buckets, the day's and month's spend, the job's per-step totals and
    its call log."""
    now = time.time()
    keys = Keys(prefix)
    steps, log = keys.llm_usage(job_id), keys.llm_calls(job_id)
    step = call.step or "-"
    async with redis.pipeline(transaction=True) as pipe:
        for period, ttl in SPEND_PERIOD_TTL_S.items():
            spend = keys.spend(period_label(period, now))
            for name, value in spend_fields(call, user, org).items():
                if value:
                    pipe.hincrbyfloat(spend, name, value)
            pipe.expire(spend, ttl)
        for resolution in BUCKET_SECONDS:
            bucket, ttl = keys.metrics(resolution, bucket_start(resolution, now)), BUCKET_TTL_S[resolution]
            for name, value in bucket_fields(call, task_type, user).items():
                if value:
                    pipe.hincrbyfloat(bucket, name, value)
            pipe.expire(bucket, ttl)
        for name, value in (("calls", 1), ("tokens_in", call.tokens_in), ("tokens_out", call.tokens_out),
                            ("cost_usd", call.cost_usd)):
            pipe.hincrbyfloat(steps, f"{step}\t{name}", value)
        pipe.rpush(log, call.model_dump_json())
        pipe.ltrim(log, -CALL_LOG_MAX, -1)
        pipe.expire(steps, int(retention_s))
        pipe.expire(log, int(retention_s))
        await pipe.execute()


def step_usage(raw: dict[str, str]) -> list[StepUsage]:
    """The job's per-step hash as one row per step."""
    rows: dict[str, StepUsage] = {}
    for field, value in raw.items():
        step, name = field.rsplit("\t", 1)
        row = rows.setdefault(step, StepUsage(step=step))
        setattr(row, name, float(value) if name == "cost_usd" else int(float(value)))
    return list(rows.values())


def calls(raw: list[str]) -> list[Call]:
    return [Call.model_validate(orjson.loads(entry)) for entry in raw]
