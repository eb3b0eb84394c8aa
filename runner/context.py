"""What a task function sees of its job: progress, steps, checkpoints, cancellation and partial output."""
from __future__ import annotations

import asyncio
import inspect
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar, overload

import orjson
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError, to_json

from .models import SpendCap, Step, StepStatus, utcnow
from .process import die_with_parent

Flush = Callable[[dict[str, Any]], Awaitable[object]]  # writes the fields; what it returns is not used
T = TypeVar("T")
Work = Callable[[], Any] | Awaitable[Any]  # what ctx.run runs: a callable (sync or async), or an awaitable

# The TaskContext of the job whose task function is running, for code that has no `ctx` in hand (the LLM
# client records each call's usage against it and checks its spend caps). Set by the worker per attempt.
current: ContextVar[TaskContext | None] = ContextVar("taskdeck_task", default=None)
# The name of the checkpoint being computed (ctx.run), per asyncio task: the LLM call log names it.
in_checkpoint: ContextVar[str | None] = ContextVar("taskdeck_checkpoint", default=None)


class Checkpoint(BaseModel):
    """One completed step's stored output: its place among the job's checkpoints (`seq`, from 0), the step
    it ran in, when, and its value as JSON."""

    seq: int
    step: str | None = None
    at: datetime = Field(default_factory=utcnow)
    value: Any = None


class CheckpointStore(Protocol):
    """Where a job's checkpoints live (the worker's: a Redis hash per job, storage/checkpoints.py)."""

    async def load(self) -> dict[str, str]: ...  # name -> Checkpoint JSON

    async def save(self, name: str, raw: str) -> None: ...


class MemoryCheckpoints:
    """Checkpoints that last as long as the context: for running a task function outside a worker."""

    def __init__(self) -> None:
        self.saved: dict[str, str] = {}

    async def load(self) -> dict[str, str]:
        return dict(self.saved)

    async def save(self, name: str, raw: str) -> None:
        self.saved[name] = raw


class TaskContext:
    """Handed to every task function as its first argument.

    Progress, steps and partial output are kept in memory and written at most once per
    `interval` seconds, so a task may report as often as it likes.
    """

    def __init__(
        self,
        job_id: str,
        attempt: int,
        steps: list[str],
        flush: Flush,
        is_cancel_requested: Callable[[], Awaitable[bool]],
        interval: float,
        partial_cap: int,
        expected_s: float | None = None,
        user_id: str = "",
        org_id: str = "",
        task_type: str = "",
        checkpoints: CheckpointStore | None = None,
        caps: SpendCap | None = None,
    ) -> None:
        self.job_id = job_id
        self.user_id, self.org_id = user_id, org_id  # whose job this is: sources live in their namespace
        self.task_type = task_type
        self.caps = caps or SpendCap()  # the job's LLM spend caps, checked by the LLM client (llm/spend.py)
        self.reused: list[str] = []  # checkpoints this attempt returned from storage instead of running
        self._checkpoints = checkpoints or MemoryCheckpoints()
        self._stored: dict[str, str] | None = None  # loaded at the first ctx.run
        self._next_seq = 0
        self.attempt = attempt
        self.steps = [Step(name=name) for name in steps]
        self.progress_value = 0.0
        self.current_step: str | None = None
        self.partial: str | None = None
        self.usage: dict[str, Any] | None = None
        self.started_at = utcnow()
        self._flush = flush
        self._is_cancel_requested = is_cancel_requested
        self._interval = interval
        self._partial_cap = partial_cap
        self._expected_s = expected_s
        self._last_flush = 0.0
        self._timer: asyncio.Task[None] | None = None
        self._step_index: int | None = None
        self._dirty = False

    async def progress(self, percent: float, step: str | None = None) -> None:
        """Report progress 0-100: of the current step inside `step()`, else of the whole job."""
        percent = min(max(float(percent), 0.0), 100.0)
        if step is not None and step != self.current_step:
            self.current_step = step
        if self._step_index is not None:
            current = self.steps[self._step_index]
            current.progress = max(current.progress, percent)
            percent = (self._step_index + current.progress / 100) / len(self.steps) * 100
        self.progress_value = max(self.progress_value, percent)
        await self._changed()

    def plan(self, names: list[str]) -> None:
        """Declare the steps of this run when they depend on the payload (else the type's steps hold)."""
        self.steps = [Step(name=name) for name in names]

    @asynccontextmanager
    async def step(self, name: str) -> AsyncIterator[Step]:
        """Mark step `name` running for the block, then completed (or failed if the block raises)."""
        current = self._enter(name)
        await self._changed()
        try:
            yield current
        except Exception as e:
            current.status, current.error, current.finished_at = StepStatus.failed, f"{type(e).__name__}: {e}", utcnow()
            raise
        current.status, current.progress, current.finished_at = StepStatus.completed, 100.0, utcnow()
        self._step_index = None
        self.progress_value = max(self.progress_value, (self.steps.index(current) + 1) / len(self.steps) * 100)
        await self._changed()

    @overload
    async def run(self, name: str, work: Work, *, model: type[T]) -> T: ...

    @overload
    async def run(self, name: str, work: Work) -> Any: ...

    async def run(self, name: str, work: Work, *, model: Any = None) -> Any:
        """A checkpointed step: the stored value when checkpoint `name` of this job completed before (in an
        earlier attempt, or in the job a rerun copied it from), else `work`'s result, stored before it is
        returned. A retry, a worker lost mid-job or a deploy's hand-back thus resumes after the last completed
        checkpoint; names made in a loop (f"week {n}") are checkpoints of their own.

        `work` is a callable (sync or async; called only when needed) or an awaitable (closed unrun when the
        value is stored). The value is kept as JSON, and what this returns is always that JSON read back:
        validated as `model` (a pydantic model, or any type pydantic knows: `list[Week]`) when given, else
        plain JSON (dict, list, str, number, bool, None). So the first run and a resume return the same
        thing; a stored value that no longer fits `model` (the model changed) is computed again. A name that
        is one of the type's declared steps, used outside `ctx.step`, is reported as that step."""
        if not name or len(name) > 200:
            raise ValueError(f"a checkpoint's name is 1 to 200 characters; got {name!r}")
        adapter: TypeAdapter[Any] = TypeAdapter(model if model is not None else Any)
        stored = await self._loaded()
        if name in stored:
            try:
                value = adapter.validate_python(Checkpoint.model_validate_json(stored[name]).value)
            except ValidationError:
                pass  # made by an older version of the task: compute it again
            else:
                if inspect.iscoroutine(work):
                    work.close()
                self.reused.append(name)
                if self._step_index is None and name in self.step_names():
                    await self._reused_step(name)
                return value
        if self._step_index is None and name in self.step_names():
            async with self.step(name):
                return await self._compute(name, work, adapter)
        return await self._compute(name, work, adapter)

    async def checkpointed(self) -> list[str]:
        """The names of this job's stored checkpoints, in the order they were made."""
        stored = await self._loaded()
        return sorted(stored, key=lambda name: Checkpoint.model_validate_json(stored[name]).seq)

    def step_names(self) -> list[str]:
        return [s.name for s in self.steps]

    async def cancel_requested(self) -> bool:
        """True once someone asked to cancel this job (the task is also interrupted at its next await)."""
        return await self._is_cancel_requested()

    async def save_partial(self, text: str, append: bool = False) -> None:
        """Keep partial output with the job (capped); it survives failure and cancellation."""
        merged = (self.partial or "") + text if append else text
        self.partial = merged[: self._partial_cap]
        await self._changed()

    async def record_usage(self, tokens_in: int, tokens_out: int, cost_usd: float) -> None:
        """Add LLM usage to the job's tokens_in, tokens_out and cost_usd. Written at once, not coalesced:
        calls are few, and the worker's final transition does not carry usage."""
        now = self.usage or {"tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0}
        self.usage = {"tokens_in": now["tokens_in"] + tokens_in, "tokens_out": now["tokens_out"] + tokens_out,
                      "cost_usd": round(now["cost_usd"] + cost_usd, 8)}
        self._dirty = True
        await self._write()

    async def run_process(self, *args: str, cwd: str | None = None) -> tuple[int, str]:
        """Run a program as part of the task: (exit code, output). If the attempt is cancelled or times
        out, the program and everything it started are killed; so is it if the worker dies."""
        proc = await asyncio.create_subprocess_exec(
            *args, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True, preexec_fn=die_with_parent,
        )
        try:
            out, _ = await proc.communicate()
        except BaseException:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.shield(proc.wait())
            raise
        return proc.returncode or 0, out.decode(errors="replace")

    def eta(self) -> datetime | None:
        elapsed = (utcnow() - self.started_at).total_seconds()
        if self.progress_value > 0:
            return utcnow() + timedelta(seconds=elapsed * (100 - self.progress_value) / self.progress_value)
        if self._expected_s is not None:
            return self.started_at + timedelta(seconds=self._expected_s)
        return None

    def snapshot(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "progress": round(self.progress_value, 2),
            "current_step": self.current_step,
            "steps": self.steps,
            "eta": self.eta(),
            "updated_at": utcnow(),
        }
        if self.partial is not None:
            fields["partial"] = self.partial
        if self.usage is not None:
            fields |= self.usage
        return fields

    def stop(self) -> None:
        """Drop the pending write: the worker's final transition writes the last state."""
        if self._timer:
            self._timer.cancel()
            self._timer = None

    async def _loaded(self) -> dict[str, str]:
        if self._stored is None:
            self._stored = await self._checkpoints.load()
            seqs = [Checkpoint.model_validate_json(raw).seq for raw in self._stored.values()]
            self._next_seq = max(seqs, default=-1) + 1
        return self._stored

    async def _compute(self, name: str, work: Work, adapter: TypeAdapter[Any]) -> Any:
        mark = in_checkpoint.set(name)
        try:
            result = work() if callable(work) else work
            if inspect.isawaitable(result):
                result = await result
        finally:
            in_checkpoint.reset(mark)
        try:
            value = orjson.loads(to_json(result))
        except PydanticSerializationError as e:
            raise TypeError(f"checkpoint {name!r}: its value cannot be stored as JSON ({e})") from None
        checkpoint = Checkpoint(seq=self._next_seq, step=self.current_step, value=value)
        self._next_seq += 1  # before the write: steps run side by side (gather) each take their own
        raw = checkpoint.model_dump_json()
        await self._checkpoints.save(name, raw)
        if self._stored is not None:
            self._stored[name] = raw
        return adapter.validate_python(value)

    async def _reused_step(self, name: str) -> None:
        """A declared step whose checkpoint was stored: completed without running."""
        current = self.steps[self.step_names().index(name)]
        current.status, current.progress, current.finished_at = StepStatus.completed, 100.0, utcnow()
        self.progress_value = max(self.progress_value, (self.steps.index(current) + 1) / len(self.steps) * 100)
        await self._changed()

    def _enter(self, name: str) -> Step:
        names = [s.name for s in self.steps]
        if name not in names:
            self.steps.append(Step(name=name))
            names.append(name)
        self._step_index = names.index(name)
        current = self.steps[self._step_index]
        current.status, current.started_at, current.progress = StepStatus.running, utcnow(), 0.0
        self.current_step = name
        return current

    async def _changed(self) -> None:
        self._dirty = True
        wait = self._last_flush + self._interval - time.monotonic()
        if wait <= 0:
            await self._write()
        elif self._timer is None:
            self._timer = asyncio.create_task(self._write_later(wait))

    async def _write_later(self, wait: float) -> None:
        await asyncio.sleep(wait)
        self._timer = None
        if self._dirty:
            with suppress(Exception):  # a lost progress write is redone by the next report
                await self._write()

    async def _write(self) -> None:
        self._dirty = False
        self._last_flush = time.monotonic()
        try:
            await self._flush(self.snapshot())
        except BaseException:
            self._dirty = True
            raise
