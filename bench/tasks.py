"""Task types used only by the benchmarks (TASKDECK_TASK_MODULES='["runner.tasks","bench.tasks"]').

Each has a twin function in bench/bare_arq.py so both sides run the same body.
"""
from __future__ import annotations

import asyncio
import time

from pydantic import BaseModel, Field

from runner import TaskContext, task


class NoopPayload(BaseModel):
    data: str = Field("", description="Filler, to size the payload (memory benchmark).")


class SleepPayload(BaseModel):
    seconds: float = Field(1.0, ge=0, le=3600)


class ChattyPayload(BaseModel):
    seconds: float = Field(5.0, ge=0, le=3600)
    rate: float = Field(1000.0, ge=0, description="Progress reports per second; 0 = none (same loop).")


@task("BENCH_NOOP", payload=NoopPayload, max_attempts=1, timeout_s=60)
async def noop(ctx: TaskContext, payload: NoopPayload) -> None:
    """Does nothing: the per-job cost of the runner itself."""
    return None


@task("BENCH_STAMP", payload=NoopPayload, max_attempts=1, timeout_s=60)
async def stamp(ctx: TaskContext, payload: NoopPayload) -> dict[str, float]:
    """Returns the wall-clock time at its first line (pickup latency)."""
    return {"t": time.time()}


@task("BENCH_SLEEP", payload=SleepPayload, max_attempts=1, timeout_s=3600)
async def sleep(ctx: TaskContext, payload: SleepPayload) -> None:
    """Awaits `seconds` (I/O-bound concurrency)."""
    await asyncio.sleep(payload.seconds)


@task("BENCH_CHATTY", payload=ChattyPayload, max_attempts=1, timeout_s=3600)
async def chatty(ctx: TaskContext, payload: ChattyPayload) -> dict[str, float]:
    """Reports progress `rate` times a second for `seconds` (progress coalescing)."""
    return await pace(payload.seconds, payload.rate, ctx.progress)


async def pace(seconds: float, rate: float, report=None) -> dict[str, float]:
    """Call `report(percent)` on a fixed schedule of `rate` per second; with rate 0 just wait."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    end, reports = start + seconds, 0
    if rate <= 0 or report is None:
        await asyncio.sleep(seconds)
        return {"reports": 0, "seconds": loop.time() - start}
    gap = 1.0 / rate
    while (now := loop.time()) < end:
        reports += 1
        await report(min(99.0, 100.0 * (now - start) / seconds))
        delay = start + reports * gap - loop.time()
        await asyncio.sleep(max(0.0, delay))
    return {"reports": reports, "seconds": loop.time() - start}
