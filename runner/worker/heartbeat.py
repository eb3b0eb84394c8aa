"""A worker's background duties: renew its jobs' leases, say it is alive, recover jobs of dead
workers, queue again jobs whose ARQ entry was lost, delete finished jobs past their retention, and
evaluate the alert rules (notify/alerts.py).

The lease is ARQ's own in-progress key, set to `lease_s` when a worker claims a job (claim.py) and
renewed here every `lease_s / 3`. When a worker dies its keys lapse, the next poll of any worker
claims the job again, and `reap` puts the record of any job nobody picked up back in `queued`.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from contextlib import suppress

from ..client.schedules import Scheduler
from ..models import JobStatus, utcnow
from ..notify import alerts
from ..storage import counters, transitions
from .execution import WorkerState, lost_attempt

logger = logging.getLogger("taskdeck.worker")
PRUNE_BATCH = 500


async def run(state: WorkerState) -> None:
    interval = state.store.settings.lease_s / 3
    while True:
        try:
            await beat(state)
            await reap(state)
            if await turn(state, "schedules", interval * 0.9):
                await Scheduler(state.client).run_due()
            await counters.sample_depth(state.store)
            if await turn(state, "sweep", state.store.settings.lease_s):
                await sweep(state)
                await prune(state)
            if await alerts.due(state.store, state.id):
                await alerts.evaluate(state.store)
        except Exception:
            logger.exception("heartbeat failed; trying again in %.1f s", interval)
        await asyncio.sleep(interval)


async def turn(state: WorkerState, duty: str, every_s: float) -> bool:
    """True for one worker of all every `every_s` seconds: duties that need doing once, not by each."""
    return await state.store.take_duty(duty, every_s, holder=state.id)


async def beat(state: WorkerState, alive: bool = True) -> None:
    store, keys = state.store, state.store.keys
    now = time.time()
    async with store.redis.pipeline(transaction=False) as pipe:
        if state.running:
            await store.leases("renew", state.id, list(state.running), client=pipe)
        pipe.hset(keys.worker(state.id), mapping={
            "id": state.id, "host": socket.gethostname(), "pid": os.getpid(), "last_heartbeat": now,
            "alive": int(alive), "running": len(state.running), "done": state.done, "failed": state.failed,
        })
        pipe.hsetnx(keys.worker(state.id), "started_at", repr(now))  # the text redis-py would send
        pipe.expire(keys.worker(state.id), 86400)
        pipe.zadd(keys.workers, {state.id: now + store.settings.lease_s if alive else now})
        pipe.zremrangebyscore(keys.workers, "-inf", now - 86400)
        await pipe.execute()


async def reap(state: WorkerState) -> int:
    """Return the records of jobs whose worker is gone (lease lapsed, nobody picked them up) to the queue."""
    store, keys = state.store, state.store.keys
    ids = await store.redis.zrange(keys.status(JobStatus.processing), 0, -1)
    if not ids:
        return 0
    async with store.redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.exists(keys.arq_in_progress(job_id))
        leased = await pipe.execute()
    reaped = 0
    for job_id, has_lease in zip(ids, leased, strict=True):
        job = None if has_lease else await store.load(job_id)
        if job is None or job.status is not JobStatus.processing:
            continue
        now = utcnow()
        if job.cancel_requested_by:
            spec = transitions.cancelled(job, now, keys)
        else:
            spec = transitions.lost(job, lost_attempt(job), now, keys, store.settings.priority_aging_s)
        if (await store.apply(job_id, spec, now)).applied:
            reaped += 1
            logger.warning("job %s %s: worker %s lost; %s", job_id, job.type, job.worker,
                           "cancelled as requested" if job.cancel_requested_by else "back in the queue")
    return reaped


async def sweep(state: WorkerState, batch: int = 500) -> int:
    """Queue again the waiting jobs whose ARQ queue entry is gone (ARQ dropped an unreadable job, or
    its keys were lost); each such loss costs an attempt, so a job that keeps losing it ends failed."""
    store, keys = state.store, state.store.keys
    orphans: list[str] = []
    for status in (JobStatus.queued, JobStatus.retrying):
        start = 0
        while ids := await store.redis.zrange(keys.status(status), start, start + batch - 1):
            scores = await store.redis.zmscore(keys.queue, ids)
            orphans += [job_id for job_id, score in zip(ids, scores, strict=True) if score is None]
            start += batch
    for job_id in orphans:
        job = await store.load(job_id)
        if job is None or job.status not in (JobStatus.queued, JobStatus.retrying) or job.waiting_reason:
            continue
        spec = transitions.orphaned(job, utcnow(), keys, store.settings.priority_aging_s)
        if (await store.apply(job_id, spec)).applied:
            logger.warning("job %s %s: its ARQ queue entry was gone; queued again", job_id, job.type)
    return len(orphans)


async def prune(state: WorkerState) -> int:
    """Delete finished jobs past their retention, with their index entries."""
    store = state.store
    ids = await store.redis.zrangebyscore(store.keys.expiry, "-inf", time.time(), start=0, num=PRUNE_BATCH)
    for job_id in ids:
        if not (await store.apply(job_id, transitions.purge())).applied:
            await store.redis.zrem(store.keys.expiry, job_id)
    return len(ids)


async def stop(state: WorkerState, tasks: list[asyncio.Task[None]], wait_s: float = 2.0) -> None:
    """End the duty tasks (a pub/sub connection cancelled mid-handshake may never finish closing:
    it is left behind rather than holding up the worker's exit), then say this worker is gone."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=wait_s)
    with suppress(Exception):
        await beat(state, alive=False)
