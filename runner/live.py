"""The live board: active jobs oldest first, with queue position and a stalled flag."""
from __future__ import annotations

import time
from collections.abc import Sequence

from pydantic import BaseModel, Field

from .history import HistoryQuery, matching
from .models import ACTIVE, Job, JobStatus, Priority
from .store import Store

WAITING = (JobStatus.queued, JobStatus.retrying)


class LiveJob(BaseModel):
    job: Job
    queue_position: int | None = Field(None, description="1 = next in ARQ's queue; None unless waiting.")
    stalled: bool = Field(False, description="Running, but its record has not changed for `stalled_after_s`.")


class LiveView(BaseModel):
    jobs: list[LiveJob] = Field(description="Active jobs oldest first, then the `include`d ones not active.")
    queue_depth: dict[Priority, int]
    workers_alive: int
    truncated: bool = Field(False, description="More active jobs than the limit.")


async def view(store: Store, user: str | None, limit: int, include: Sequence[str], stalled_after_s: float) -> LiveView:
    query = HistoryQuery(status=sorted(ACTIVE), user=user)
    ids: list[str] = []
    async for batch in matching(store, query, newest_first=False, limit=limit + 1):
        ids += batch
    truncated = len(ids) > limit
    ids = ids[:limit]
    shown = set(ids)
    jobs = await store.load_many(ids + [job_id for job_id in dict.fromkeys(include) if job_id not in shown])
    keys, now = store.keys, time.time()
    async with store.redis.pipeline(transaction=False) as pipe:
        for job in jobs:
            pipe.zrank(keys.queue, job.id)
        for priority in Priority:
            pipe.zcard(keys.pending(priority))
        pipe.zcount(keys.workers, now, "+inf")
        rows = await pipe.execute()
    ranks, depth, alive = rows[: len(jobs)], rows[len(jobs): -1], rows[-1]
    return LiveView(
        jobs=[LiveJob(job=job, queue_position=rank + 1 if rank is not None and job.status in WAITING else None,
                      stalled=job.status is JobStatus.processing and now - job.updated_at.timestamp() > stalled_after_s)
              for job, rank in zip(jobs, ranks)],
        queue_depth=dict(zip(Priority, depth)), workers_alive=alive, truncated=truncated,
    )
