"""What every generative task type shares, so that each type is a declaration: prompts built from the
payload, output asked for in parts (a step each, with real progress), completed parts kept in Redis so a
retry resumes after the last one, streamed text kept as partial output, and usage recorded per call.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..context import TaskContext
from ..llm import LLM_SETTINGS
from ..registry import Backoff, TaskFunction, task
from ..storage.keys import Keys
from ..web import sources
from ..worker.runtime import Runtime, runtime

P = TypeVar("P", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)
Done = dict[str, Any]  # part key -> its reply, an instance of the part's model
GATHER = "Gather context"
CONTEXT_CHARS = 12_000
FINISHED_PARTS_TTL_S = 3600
BACKOFF = Backoff(base_s=2.0, factor=4.0)
LANGUAGE = " Write every text field in the brief's language. Be specific to the brief; no generic filler."


class Brief(BaseModel):
    """Fields every generative payload has."""

    model_config = ConfigDict(extra="forbid")

    language: str = Field("English", max_length=40, description="Language of the output.")
    notes: str = Field("", max_length=4000, description="Anything else the model should know.")


@dataclass(frozen=True)
class Part:
    """One request of a generation: its key (unique in the job), step, reply model and instruction.
    `ask` may be a function of the parts done so far, to build on them."""

    key: str
    step: str
    model: type[BaseModel]
    ask: str | Callable[[Done], str]
    expect_chars: int = 3000

    def instruction(self, done: Done) -> str:
        return self.ask(done) if callable(self.ask) else self.ask


@dataclass(frozen=True)
class Recipe(Generic[P, R]):
    role: str
    steps: tuple[str, ...]
    plan: Callable[[P], list[Part]]
    assemble: Callable[[P, Done], R]
    sources: Callable[[P], Sequence[str]] | None = None


def batches(total: int, size: int) -> list[tuple[int, int]]:
    """(first, count) of each batch of at most `size` that makes up `total`, numbered from 1."""
    return [(first, min(size, total - first + 1)) for first in range(1, total + 1, size)]


def generative(name: str, *, payload: type[P], result: type[R], role: str, steps: Sequence[str],
               plan: Callable[[P], list[Part]], assemble: Callable[[P, Done], R], description: str,
               sources: Callable[[P], Sequence[str]] | None = None, timeout_s: float = 1800,
               max_attempts: int = 3) -> TaskFunction:
    """Register a generative task type. Its steps are `steps`, preceded by "Gather context" when it
    reads `sources`; every step must have parts in `plan`."""
    recipe = Recipe(role, tuple(steps), plan, assemble, sources)

    async def run(ctx: TaskContext, brief: P) -> dict[str, Any]:
        return await generate(ctx, brief, recipe)

    run.__name__ = run.__qualname__ = name.lower()
    declared = [GATHER, *steps] if sources else list(steps)
    return task(name, payload=payload, steps=declared, timeout_s=timeout_s, max_attempts=max_attempts,
                backoff=BACKOFF, description=description, requires=LLM_SETTINGS)(run)


async def generate(ctx: TaskContext, brief: P, recipe: Recipe[P, R]) -> dict[str, Any]:
    session = await Session.open(ctx, runtime())
    context: list[str] = []
    if recipe.sources:
        async with ctx.step(GATHER):
            owner = sources.job_owner(ctx)
            context = await sources.context(session.rt.redis, session.rt.prefix, owner, recipe.sources(brief))
    parts = recipe.plan(brief)
    done = session.resumed(parts)
    if done:
        await ctx.save_partial(f"[resumed with {len(done)} of {len(parts)} parts from the last attempt]\n", append=True)
    for step in recipe.steps:
        group = [part for part in parts if part.step == step]
        async with ctx.step(step):
            for index, part in enumerate(group):
                if part.key not in done:
                    messages = prompt(recipe.role, brief, part.instruction(done), context)
                    done[part.key] = await session.ask(part, messages, index, len(group))
                await ctx.progress((index + 1) / len(group) * 100)
    result = recipe.assemble(brief, done)
    await session.finish()
    return result.model_dump(mode="json")


def prompt(role: str, brief: BaseModel, instruction: str, context: Sequence[str]) -> list[dict[str, str]]:
    user = f"Brief (JSON):\n{brief.model_dump_json(exclude_defaults=False)}\n\n"
    if context:
        lines, size = [], 0
        for line in context:
            size += len(line)
            if size > CONTEXT_CHARS:
                break
            lines.append(line)
        user += "Context from the brief's sources, newest first:\n" + "\n".join(lines) + "\n\n"
    return [{"role": "system", "content": role + LANGUAGE}, {"role": "user", "content": f"{user}Task: {instruction}"}]


class Session:
    """One attempt's generation: the LLM, the parts kept from earlier attempts, usage recording."""

    def __init__(self, ctx: TaskContext, rt: Runtime, task_type: str, user: str, kept: dict[str, str]) -> None:
        self.ctx, self.rt = ctx, rt
        self.llm = rt.llm()
        self.task_type, self.user = task_type, user
        self.kept = kept
        self.key = Keys(rt.prefix, rt.settings.queue_name).parts(ctx.job_id)

    @classmethod
    async def open(cls, ctx: TaskContext, rt: Runtime) -> Session:
        """Read who the job is for, its usage so far (so this attempt adds to it) and its kept parts."""
        rt.llm()
        keys = Keys(rt.prefix, rt.settings.queue_name)
        async with rt.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.job(ctx.job_id), ["type", "user_id", "tokens_in", "tokens_out", "cost_usd"])
            pipe.hgetall(keys.parts(ctx.job_id))
            fields, kept = await pipe.execute()
        task_type, user, tokens_in, tokens_out, cost = (orjson.loads(v) if v else None for v in fields)
        if ctx.usage is None:
            ctx.usage = {"tokens_in": tokens_in or 0, "tokens_out": tokens_out or 0, "cost_usd": cost or 0.0}
        return cls(ctx, rt, task_type or "", user or "", kept)

    def resumed(self, parts: list[Part]) -> Done:
        """The kept parts that still fit their model (a changed model means asking again)."""
        done: Done = {}
        for part in parts:
            if part.key in self.kept:
                try:
                    done[part.key] = part.model.model_validate_json(self.kept[part.key])
                except ValidationError:
                    continue
        return done

    async def ask(self, part: Part, messages: list[dict[str, str]], index: int, count: int) -> BaseModel:
        from ..llm import usage

        received = 0

        async def on_text(delta: str) -> None:
            nonlocal received
            received += len(delta)
            await self.ctx.save_partial(delta, append=True)
            await self.ctx.progress((index + min(0.9, received / part.expect_chars)) / count * 100)

        async def on_call(call: usage.Call) -> None:
            call = call.model_copy(update={"step": part.step, "part": part.key})
            await self.ctx.record_usage(call.tokens_in, call.tokens_out, call.cost_usd)
            await usage.record(self.rt.redis, self.rt.prefix, self.ctx.job_id, self.task_type, self.user, call,
                               self.rt.settings.retention_days * 86400)

        await self.ctx.save_partial(f"\n## {part.step}: {part.key}\n", append=True)
        reply = await self.llm.generate(messages, part.model, on_text=on_text, on_call=on_call)
        async with self.rt.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key, part.key, reply.value.model_dump_json())
            pipe.expire(self.key, int(self.rt.settings.retention_days * 86400))
            await pipe.execute()
        return reply.value

    async def finish(self) -> None:
        """The result is built: its parts are needed only if writing the completion fails and the job
        runs again, so they are kept a short while, not for the whole retention."""
        await self.rt.redis.expire(self.key, FINISHED_PARTS_TTL_S)
