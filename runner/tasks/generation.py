"""What every generative task type shares, so that each type is a declaration: prompts built from the
payload, output asked for in parts (a step each, with real progress), each completed part a checkpoint
(ctx.run) so that a retry, a lost worker or a deploy resumes after the last one, streamed text kept as
partial output, and usage recorded per call (by the LLM client).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ..context import TaskContext
from ..llm import LLM_SETTINGS
from ..registry import Backoff, TaskFunction, task
from ..web import sources
from ..worker.runtime import runtime

if TYPE_CHECKING:
    from ..llm.client import LLM

P = TypeVar("P", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)
Done = dict[str, Any]  # part key -> its reply, an instance of the part's model
GATHER = "Gather context"
CONTEXT_CHARS = 12_000
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
                backoff=BACKOFF, description=description, requires=LLM_SETTINGS, queue="generation")(run)


async def generate(ctx: TaskContext, brief: P, recipe: Recipe[P, R]) -> dict[str, Any]:
    rt = runtime()
    llm = rt.llm()  # fails the job at once (Fatal) when this worker has no endpoint
    context: list[str] = []
    if recipe.sources:
        async with ctx.step(GATHER):
            owner = sources.job_owner(ctx)
            context = await sources.context(rt.redis, rt.prefix, owner, recipe.sources(brief))
    parts = recipe.plan(brief)
    kept = set(await ctx.checkpointed())
    if resumed := sum(part.key in kept for part in parts):
        await ctx.save_partial(f"[resumed with {resumed} of {len(parts)} parts from the last attempt]\n", append=True)
    done: Done = {}
    for step in recipe.steps:
        group = [part for part in parts if part.step == step]
        async with ctx.step(step):
            for index, part in enumerate(group):
                messages = prompt(recipe.role, brief, part.instruction(done), context)
                asking = partial(ask, ctx, llm, part, messages, index, len(group))
                done[part.key] = await ctx.run(part.key, asking, model=part.model)
                await ctx.progress((index + 1) / len(group) * 100)
    return recipe.assemble(brief, done).model_dump(mode="json")


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


async def ask(ctx: TaskContext, llm: LLM, part: Part, messages: list[dict[str, str]], index: int,
              count: int) -> BaseModel:
    """One part asked of the model, its reply streamed into the partial output; the LLM client records its
    usage against the job (step and checkpoint name) and holds it to the job's spend caps."""
    received = 0

    async def on_text(delta: str) -> None:
        nonlocal received
        received += len(delta)
        await ctx.save_partial(delta, append=True)
        await ctx.progress((index + min(0.9, received / part.expect_chars)) / count * 100)

    await ctx.save_partial(f"\n## {part.step}: {part.key}\n", append=True)
    return (await llm.generate(messages, part.model, on_text=on_text)).value
