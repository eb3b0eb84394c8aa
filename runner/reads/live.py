"""The live board: active jobs oldest first, with queue position and a stalled flag.

Every open Live page reads it every second, for up to 500 rows, so it costs two round trips whatever the
number of jobs: one pipeline for the ids (the three active status indexes, merged here) and the queue
counters, then a read-only script that returns the board's fields of every record with its rank in ARQ's
queue, in chunks read on parallel connections (parsing one chunk overlaps Redis reading the next). The
board reads no payload or result (a finished job kept on the board would send its result every second),
and each record becomes one JSON document validated by pydantic in one call (its values are JSON already).
"""
from __future__ import annotations

import asyncio
import heapq
import operator
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from redis.commands.core import AsyncScript

from .. import queues, registry
from ..models import ACTIVE, Job, JobStatus, Priority, Step
from ..storage.store import Store
from .history import HistoryQuery, matching

WAITING = (JobStatus.queued, JobStatus.retrying)
STATUSES = sorted(ACTIVE)
READ_CHUNK = 100

# KEYS = the job hashes; ARGV[1] how many field names follow, ARGV[2] the place of `queue` among them, the
# names, the ids, then pairs of a named queue and its ARQ queue. Returns, per job, its fields (HMGET) and its
# rank in its queue (nil when not in it).
READ = """
local n, at = tonumber(ARGV[1]), tonumber(ARGV[2])
local fields = {}
for i = 1, n do fields[i] = ARGV[i + 2] end
local queues = {}
for i = n + 3 + #KEYS, #ARGV, 2 do queues[ARGV[i]] = ARGV[i + 1] end
local default = queues[ARGV[n + 3 + #KEYS]]  -- the first pair's: a record from before named queues is in it
local out = {}
for i = 1, #KEYS do
  local values = redis.call('HMGET', KEYS[i], unpack(fields))
  local queue = values[at] and queues[cjson.decode(values[at])] or default
  out[#out + 1] = values
  out[#out + 1] = queue and redis.call('ZRANK', queue, ARGV[n + 2 + i]) or false
end
return out
"""


def of_job(name: str) -> Any:
    """Job's definition of field `name` (its default, description), which the board's copy takes as its own."""
    return Job.model_fields[name]


class LiveRecord(BaseModel):
    # not a docstring: its schema description is one line, as when the model was built from BOARD_FIELDS
    __doc__ = ("What the board shows of a job record: those Job fields, without the payload, the result "
               "and the retry audit (Client.get reads the whole record).")

    id: str = of_job("id")
    type: str = of_job("type")
    user_id: str = of_job("user_id")
    org_id: str = of_job("org_id")
    status: JobStatus = of_job("status")
    priority: Priority = of_job("priority")
    progress: float = of_job("progress")
    current_step: str | None = of_job("current_step")
    steps: list[Step] = of_job("steps")
    attempts: int = of_job("attempts")
    max_attempts: int = of_job("max_attempts")
    queued_at: datetime = of_job("queued_at")
    started_at: datetime | None = of_job("started_at")
    completed_at: datetime | None = of_job("completed_at")
    updated_at: datetime = of_job("updated_at")
    eta: datetime | None = of_job("eta")
    next_attempt_at: datetime | None = of_job("next_attempt_at")
    waiting_reason: str | None = of_job("waiting_reason")
    cancel_requested_by: str | None = of_job("cancel_requested_by")
    last_error: str | None = of_job("last_error")
    tokens_in: int = of_job("tokens_in")
    tokens_out: int = of_job("tokens_out")
    cost_usd: float = of_job("cost_usd")
    queue: str = of_job("queue")


FIELDS = tuple(LiveRecord.model_fields)


def queue_names() -> list[str]:
    """Every named queue a record may name, `default` first (a record without one is in it)."""
    return [queues.DEFAULT, *sorted({*queues.SEED, *registry.queue_names()} - {queues.DEFAULT})]
HEADS = tuple(f'"{name}":' for name in FIELDS)


class LiveJob(BaseModel):
    job: LiveRecord
    queue_position: int | None = Field(None, description="1 = next in ARQ's queue; None unless waiting.")
    stalled: bool = Field(False, description="Running, but its record has not changed for `stalled_after_s`.")


class LiveView(BaseModel):
    jobs: list[LiveJob] = Field(description="Active jobs oldest first, then the `include`d ones not active.")
    queue_depth: dict[Priority, int]
    workers_alive: int
    truncated: bool = Field(False, description="More active jobs than the limit.")


async def view(store: Store, user: str | None, limit: int, include: Sequence[str], stalled_after_s: float) -> LiveView:
    keys, now = store.keys, time.time()
    async with store.redis.pipeline(transaction=False) as pipe:
        if user is None:
            for status in STATUSES:
                pipe.zrange(keys.status(status), 0, limit, withscores=True)
        for priority in Priority:
            pipe.zcard(keys.pending(priority))
        pipe.zcount(keys.workers, now, "+inf")
        rows = await pipe.execute()
    n = len(STATUSES) if user is None else 0
    active, depth, alive = rows[:n], rows[n:-1], rows[-1]
    if user is None:
        ids = [job_id for job_id, _ in heapq.merge(*active, key=lambda row: row[1])]
    else:
        ids = [job_id async for batch in matching(store, HistoryQuery(status=STATUSES, user=user),
                                                  newest_first=False, limit=limit + 1) for job_id in batch]
    truncated = len(ids) > limit
    ids = ids[:limit]
    shown = set(ids)
    jobs, ranks = await read(store, ids + [job_id for job_id in dict.fromkeys(include) if job_id not in shown])
    return LiveView(
        jobs=[LiveJob(job=job, queue_position=rank + 1 if rank is not None and job.status in WAITING else None,
                      stalled=job.status is JobStatus.processing and now - job.updated_at.timestamp() > stalled_after_s)
              for job, rank in zip(jobs, ranks, strict=True)],
        queue_depth=dict(zip(Priority, depth, strict=True)), workers_alive=alive, truncated=truncated,
    )


async def read(store: Store, ids: Sequence[str]) -> tuple[list[LiveRecord], list[int | None]]:
    """The board's fields of the records of `ids` that exist, in order, and their ranks in ARQ's queue."""
    script = store.redis.register_script(READ)
    chunks = await asyncio.gather(*(read_chunk(store, script, ids[i:i + READ_CHUNK])
                                    for i in range(0, len(ids), READ_CHUNK)))
    return [job for jobs, _ in chunks for job in jobs], [rank for _, ranks in chunks for rank in ranks]


async def read_chunk(store: Store, script: AsyncScript, ids: Sequence[str]) -> tuple[list[LiveRecord],
                                                                                   list[int | None]]:
    keys = store.keys
    named = [part for name in queue_names() for part in (name, keys.arq_queue(name))]  # `default` first
    rows = await script(keys=[keys.job(job_id) for job_id in ids],
                        args=[len(FIELDS), FIELDS.index("queue") + 1, *FIELDS, *ids, *named])
    found = [(values, rank) for values, rank in zip(rows[::2], rows[1::2], strict=True) if values[0] is not None]
    return [parse(values) for values, _ in found], [rank for _, rank in found]


def parse(values: list[str | None]) -> LiveRecord:
    """One record's FIELDS values (each JSON text; None when the record lacks the field) in one validation."""
    if None in values:
        body = ",".join(head + value for head, value in zip(HEADS, values, strict=True) if value is not None)
    else:
        body = ",".join(map(operator.add, HEADS, values))
    return LiveRecord.model_validate_json(f"{{{body}}}")
