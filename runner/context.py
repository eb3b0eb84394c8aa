"""What a task function sees of its job: progress, steps, cancellation and partial output."""
from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from datetime import datetime, timedelta
from typing import Any

from .models import Step, StepStatus, utcnow
from .process import die_with_parent

Flush = Callable[[dict[str, Any]], Awaitable[object]]  # writes the fields; what it returns is not used


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
    ) -> None:
        self.job_id = job_id
        self.user_id, self.org_id = user_id, org_id  # whose job this is: sources live in their namespace
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
