"""The metric counters a transition adds to the buckets, and the queue-depth sampler.

Counters live in the hashes Keys.metrics("1m", minute) and ("1h", hour) (lua/transition.lua adds every
counter to both), error messages in one sorted set per hour (Keys.errors); reads/metrics.py reads them back.
"""
from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

from ..models import Job, Priority
from .keys import BUCKET_SECONDS, BUCKET_TTL_S, Keys, bucket_start
from .store import Store

DURATION_BOUNDS_S = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
WAIT_BOUNDS_S = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
TTL_S = BUCKET_TTL_S
TOP_ERRORS_PER_HOUR = 50
ERROR_CHARS = 300


def le(value: float, bounds: tuple[float, ...]) -> str:
    """The histogram bucket of `value`: the smallest bound at or above it, or "inf"."""
    return next((f"{b:g}" for b in bounds if value <= b), "inf")


def wait_counters(wait_s: float) -> dict[str, float]:
    return {"wait_s": wait_s, "wait_n": 1, f"hist:wait:{le(wait_s, WAIT_BOUNDS_S)}": 1}


def completion_counters(job: Job, duration_s: float) -> dict[str, float]:
    return {f"hist:duration:{job.type}:{le(duration_s, DURATION_BOUNDS_S)}": 1, f"user:completed:{job.user_id}": 1}


def failure_counters(job: Job, final: bool) -> dict[str, float]:
    return {f"user:failed:{job.user_id}": 1} if final else {}


def error_key(keys: Keys, at: float) -> str:
    return keys.errors(bucket_start("1h", at))


def error_calls(keys: Keys, error: str | None, now: datetime) -> list[list[Any]]:
    """Count a failed attempt's message in its hour (numbers and ids folded, so alike errors group)."""
    if not error:
        return []
    key = error_key(keys, now.timestamp())
    return [["ZINCRBY", key, 1, normalise(error)], ["EXPIRE", key, TTL_S["1h"]]]


def normalise(message: str) -> str:
    message = re.sub(r"\b[0-9a-f]{8,}\b", "<id>", message.strip().splitlines()[0] if message.strip() else "")
    return re.sub(r"\d+(\.\d+)?", "<n>", message)[:ERROR_CHARS]


async def sample_depth(store: Store, every_s: float = 5.0) -> bool:
    """Add the queue depth per priority to the current buckets, at most once per `every_s` over all
    workers; charts divide `depth:{priority}` by `depth_n` for the mean depth of a bucket."""
    if not await store.take_duty("depth", every_s):
        return False
    keys = store.keys
    now = time.time()
    async with store.redis.pipeline(transaction=False) as pipe:
        for priority in Priority:
            pipe.zcard(keys.pending(priority))
        depth = await pipe.execute()
    async with store.redis.pipeline(transaction=True) as pipe:
        for resolution in BUCKET_SECONDS:
            key = keys.metrics(resolution, bucket_start(resolution, now))
            for priority, n in zip(Priority, depth, strict=True):
                pipe.hincrbyfloat(key, f"depth:{priority.value}", n)
            pipe.hincrbyfloat(key, "depth_n", 1)
            pipe.expire(key, TTL_S[resolution])
        await pipe.execute()
    return True
