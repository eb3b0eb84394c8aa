"""Run a task function in this process as a worker would, keeping every snapshot it flushes."""
from __future__ import annotations

from typing import Any

import runner.tasks  # noqa: F401  (registers the built-in types)
from runner import context, registry
from runner.context import TaskContext
from runner.storage.checkpoints import RedisCheckpoints
from runner.storage.keys import Keys
from runner.worker.runtime import runtime


class Run:
    """A task function called as the worker would, with every flushed snapshot kept."""

    def __init__(self, job_id: str, type_name: str, attempt: int = 1, user_id: str = "", org_id: str = "") -> None:
        self.type = registry.get(type_name)
        self.snapshots: list[dict[str, Any]] = []
        self.ctx = TaskContext(job_id, attempt, list(self.type.steps), flush=self.flush,
                               is_cancel_requested=self.never, interval=0.0, partial_cap=64_000,
                               user_id=user_id, org_id=org_id, task_type=type_name, checkpoints=self)

    async def flush(self, fields: dict[str, Any]) -> None:
        self.snapshots.append(dict(fields, steps=[s.model_copy() for s in fields["steps"]]))

    async def never(self) -> bool:
        return False

    def store(self) -> RedisCheckpoints:
        """The job's checkpoints in the test Redis, as a worker keeps them."""
        rt = runtime()
        return RedisCheckpoints(rt.redis, Keys(rt.prefix), self.ctx.job_id, rt.settings.retention_days * 86400)

    async def load(self) -> dict[str, str]:
        return await self.store().load()

    async def save(self, name: str, raw: str) -> None:
        await self.store().save(name, raw)

    async def __call__(self, payload: dict[str, Any]) -> Any:
        running = context.current.set(self.ctx)  # as the worker does: the LLM client charges this job
        try:
            return await self.type.function(self.ctx, self.type.payload.model_validate(payload))
        finally:
            context.current.reset(running)
