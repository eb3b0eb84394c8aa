"""DEMO: a labelled simulation for demos, load tests and the first run. It calls no LLM."""
from __future__ import annotations

import asyncio

from pydantic import BaseModel, ConfigDict, Field

from ..context import TaskContext
from ..registry import Backoff, task

TICK_S = 0.1


class DemoPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", title="Demo job")

    duration_s: float = Field(1.0, ge=0, le=3600, description="Total run time, spread over the steps.")
    steps: int = Field(1, ge=1, le=50, description="How many steps to report.")
    fail_first: int = Field(0, ge=0, le=100, description="Fail this many attempts before succeeding.")
    fail_always: bool = Field(False, description="Fail every attempt (ends in the dead-letter set).")
    output: str = Field("", max_length=10_000, description="Text returned as the result.")


class DemoFailure(RuntimeError):
    """The failure DEMO was asked to simulate."""


@task("DEMO", payload=DemoPayload, timeout_s=3700, max_attempts=3, backoff=Backoff(base_s=1.0),
      description="Simulated job: runs for duration_s over its steps, can fail on purpose. No LLM.")
async def demo(ctx: TaskContext, payload: DemoPayload) -> dict[str, object]:
    if payload.fail_always or ctx.attempt <= payload.fail_first:
        raise DemoFailure(f"simulated failure on attempt {ctx.attempt}")
    names = [f"Step {n} of {payload.steps}" for n in range(1, payload.steps + 1)]
    ctx.plan(names)
    for name in names:
        async with ctx.step(name):
            await sleep_with_progress(ctx, payload.duration_s / payload.steps)
    return {"output": payload.output, "steps": payload.steps, "duration_s": payload.duration_s}


async def sleep_with_progress(ctx: TaskContext, seconds: float) -> None:
    ticks = max(1, round(seconds / TICK_S))
    for i in range(1, ticks + 1):
        await asyncio.sleep(seconds / ticks)
        await ctx.progress(i / ticks * 100)
