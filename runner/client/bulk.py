"""One action over many jobs, a few at a time, reporting each job's outcome."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from pydantic import BaseModel, Field

from ..errors import RedisUnavailable, TaskdeckError


class BulkResult(BaseModel):
    done: list[str] = Field(default_factory=list)
    errors: dict[str, str] = Field(default_factory=dict, description="Job id -> why the action was refused.")


async def each(ids: Iterable[str], action: Callable[[str], Awaitable[Any]], concurrency: int = 16) -> BulkResult:
    """Refusals (already finished, not found...) are collected; RedisUnavailable stops it all."""
    gate = asyncio.Semaphore(concurrency)

    async def one(job_id: str) -> str | None:
        async with gate:
            try:
                await action(job_id)
            except RedisUnavailable:
                raise
            except TaskdeckError as e:
                return str(e)
        return None

    unique = list(dict.fromkeys(ids))
    outcomes = await asyncio.gather(*(one(job_id) for job_id in unique))
    result = BulkResult()
    for job_id, error in zip(unique, outcomes, strict=True):
        if error is None:
            result.done.append(job_id)
        else:
            result.errors[job_id] = error
    return result
