"""Bare ARQ worker for the same-round comparisons: `python -m arq bench.bare_arq.WorkerSettings`.

Same job bodies as bench/tasks.py, JSON (orjson) job serialization like Taskdeck's. Settings from env:
BENCH_ARQ_MAX_JOBS (default 10), BENCH_ARQ_POLL_DELAY (0.5), BENCH_ARQ_QUEUE (bench:bare),
BENCH_ARQ_KEEP_RESULT (ARQ's default 3600 s: the result key is how a bare-ARQ user reads the
result, and where pickup/throughput read start and finish times), BENCH_ARQ_ABORT (0: ARQ's default,
no per-poll abort check; Taskdeck sets allow_abort_jobs=True). Everything else is ARQ's default.
"""
from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import orjson
from arq.connections import RedisSettings

try:
    from bench.tasks import pace
except ImportError:  # run from bench/ itself
    from tasks import pace  # type: ignore[no-redef]


async def noop(ctx: dict[str, Any], data: str = "") -> None:
    return None


async def stamp(ctx: dict[str, Any], data: str = "") -> float:
    return time.time()


async def sleep(ctx: dict[str, Any], seconds: float = 1.0) -> None:
    await asyncio.sleep(seconds)


async def chatty(ctx: dict[str, Any], seconds: float = 5.0, rate: float = 1000.0) -> dict[str, float]:
    """The same loop as BENCH_CHATTY, reporting to nothing (ARQ has no progress API)."""
    async def nothing(percent: float) -> None:
        return None
    return await pace(seconds, rate, nothing)


class WorkerSettings:
    functions = [noop, stamp, sleep, chatty]
    redis_settings = RedisSettings.from_dsn(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    queue_name = os.environ.get("BENCH_ARQ_QUEUE", "bench:bare")
    max_jobs = int(os.environ.get("BENCH_ARQ_MAX_JOBS", "10"))
    poll_delay = float(os.environ.get("BENCH_ARQ_POLL_DELAY", "0.5"))
    keep_result = float(os.environ.get("BENCH_ARQ_KEEP_RESULT", "3600"))
    allow_abort_jobs = os.environ.get("BENCH_ARQ_ABORT", "0") == "1"
    job_serializer = orjson.dumps
    job_deserializer = orjson.loads
