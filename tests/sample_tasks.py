"""Task types that exist only for tests: ones that hang, spawn children or break their worker."""
from __future__ import annotations

import asyncio
import functools
import os
import signal

from pydantic import BaseModel, Field, field_validator

from runner import Backoff, Fatal, TaskContext, task


class SleepPayload(BaseModel):
    seconds: float = Field(ge=0, le=7200)


@task("TEST_SLEEP", payload=SleepPayload, timeout_s=7200, max_attempts=3, backoff=Backoff(base_s=0.1))
async def sleep(ctx: TaskContext, payload: SleepPayload) -> dict[str, float]:
    """Sleeps, reporting progress; long timeout like a real generation job."""
    async with ctx.step("Sleep"):
        await asyncio.sleep(payload.seconds)
    return {"slept": payload.seconds}


@task("TEST_TIMEOUT", payload=SleepPayload, timeout_s=0.5, max_attempts=2, backoff=Backoff(base_s=0.1))
async def too_slow(ctx: TaskContext, payload: SleepPayload) -> None:
    """Always outlives its 0.5 s timeout."""
    await asyncio.sleep(payload.seconds)


class Empty(BaseModel):
    pass


@task("TEST_FATAL", payload=Empty, max_attempts=3)
async def fatal(ctx: TaskContext, payload: Empty) -> None:
    """Fails with an error no retry can fix."""
    raise Fatal("the input can never work")


@task("TEST_CHATTY", payload=SleepPayload, max_attempts=1)
async def chatty(ctx: TaskContext, payload: SleepPayload) -> dict[str, int]:
    """Reports progress as fast as it can and saves partial output, for the coalescing test."""
    loop = asyncio.get_running_loop()
    end, reports = loop.time() + payload.seconds, 0
    while loop.time() < end:
        reports += 1
        await ctx.progress(min(99.0, reports / 100))
        await ctx.save_partial(f"{reports}\n", append=True)
        await asyncio.sleep(0.001)
    return {"reports": reports}


@task("TEST_KILL_WORKER", payload=Empty, max_attempts=2)
async def kill_worker(ctx: TaskContext, payload: Empty) -> None:
    """Kills its own worker process, like a segfault or the OOM killer would."""
    os.kill(os.getpid(), signal.SIGKILL)


class ProcessPayload(BaseModel):
    pid_file: str


@task("TEST_SUBPROCESS", payload=ProcessPayload, timeout_s=1.0, max_attempts=1)
async def subprocess_task(ctx: TaskContext, payload: ProcessPayload) -> None:
    """Starts a program that would run for a minute, and outlives its 1 s timeout."""
    await ctx.run_process("sh", "-c", f"echo $$ > {payload.pid_file}; exec sleep 60")


class MessagePayload(BaseModel):
    message: str = Field(max_length=2000)


@task("TEST_FAIL_WITH", payload=MessagePayload, max_attempts=1)
async def fail_with(ctx: TaskContext, payload: MessagePayload) -> None:
    """Saves `message` as partial output, then fails with it: for rendering tests."""
    await ctx.save_partial(payload.message)
    raise Fatal(payload.message)


class StepTextPayload(BaseModel):
    text: str = Field(max_length=2000)
    hold_s: float = Field(0, ge=0, le=60)

    @field_validator("text")
    @classmethod
    def refuse_marked(cls, value: str) -> str:
        """Refuses text containing REFUSE, quoting it: a field error that echoes what the user typed."""
        if "REFUSE" in value:
            raise ValueError(f"refused: {value}")
        return value


@task("TEST_STEP_TEXT", payload=StepTextPayload, steps=["Start"], max_attempts=1)
async def step_text(ctx: TaskContext, payload: StepTextPayload) -> None:
    """Runs one step named `text` for `hold_s` seconds, then fails with `text`: for rendering tests."""
    ctx.plan([payload.text])
    async with ctx.step(payload.text):
        await ctx.progress(50, step=payload.text)
        await asyncio.sleep(payload.hold_s)
        raise Fatal(payload.text)


class RecordPayload(BaseModel):
    path: str
    seconds: float = Field(0.0, ge=0, le=60)


@task("TEST_RECORD", payload=RecordPayload, timeout_s=120, max_attempts=3, backoff=Backoff(base_s=0.1))
async def record(ctx: TaskContext, payload: RecordPayload) -> dict[str, str]:
    """Sleeps, then appends its job id to a file: each line is one run that reached its end."""
    await asyncio.sleep(payload.seconds)
    with open(payload.path, "a") as out:
        out.write(ctx.job_id + "\n")
    return {"ran": ctx.job_id}


@task("TEST_GENERATE", payload=SleepPayload, timeout_s=7200, max_attempts=2, queue="generation")
async def generate(ctx: TaskContext, payload: SleepPayload) -> dict[str, float]:
    """A stand-in for a long LLM job, in the `generation` queue."""
    await asyncio.sleep(payload.seconds)
    return {"slept": payload.seconds}


@task("TEST_SCRAPE", payload=SleepPayload, timeout_s=600, max_attempts=2, queue="scraping")
async def scrape(ctx: TaskContext, payload: SleepPayload) -> dict[str, float]:
    """A stand-in for a quick fetch, in the `scraping` queue."""
    await asyncio.sleep(payload.seconds)
    return {"slept": payload.seconds}


class TopicPayload(BaseModel):
    topic: str = Field("coffee", max_length=200)


class Note(BaseModel):
    text: str


CHECKPOINTED_STEPS = ["Outline", "Draft", "Expand", "Polish"]


async def write_note(ctx: TaskContext, step: str, topic: str, before: str) -> Note:
    """One LLM call (the runtime's client records its usage and holds it to the job's caps)."""
    from runner.worker.runtime import runtime

    messages = [{"role": "system", "content": "You write short notes."},
                {"role": "user", "content": f"Step {step} about {topic}. Build on: {before or '-'}"}]
    reply = await runtime().llm().generate(messages, Note, on_text=lambda delta: ctx.save_partial(delta, append=True))
    return reply.value


@task("TEST_CHECKPOINTS", payload=TopicPayload, steps=CHECKPOINTED_STEPS, max_attempts=3,
      backoff=Backoff(base_s=0.1), requires=("llm_base_url", "llm_model"), max_cost_usd=1.0)
async def checkpointed(ctx: TaskContext, payload: TopicPayload) -> dict[str, str]:
    """Four LLM steps, each a checkpoint (ctx.run) built on the one before: a task type as a user writes it."""
    notes: dict[str, str] = {}
    before = ""
    for step in CHECKPOINTED_STEPS:
        note = await ctx.run(step, functools.partial(write_note, ctx, step, payload.topic, before), model=Note)
        notes[step] = before = note.text
    return notes
