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

import orjson

from .. import queues, registry
from ..client.schedules import Scheduler
from ..models import JobStatus, utcnow
from ..notify import alerts
from ..storage import counters, transitions
from .execution import WorkerState, lost_attempt

logger = logging.getLogger("taskdeck.worker")
PRUNE_BATCH = 500
STATS_EVERY_S = 60.0
SCHEDULE_LOG_EVERY_S = 3600.0


async def schedules_line(scheduler: Scheduler) -> str:
    """The active schedules and their next runs, for the log (one worker writes it at start and hourly)."""
    active = [s for s in await scheduler.all() if not s.paused]
    runs = ", ".join(f"{s.name} ({s.type}, '{s.cron}') next {s.next_run_at:%Y-%m-%d %H:%M:%S}" for s in active
                     if s.next_run_at)
    return f"schedules: {len(active)} active" + (f": {runs}" if runs else "")
OUTCOMES = ("completed", "failed", "retried", "cancelled", "lost")


def stats_line(state: WorkerState) -> str:
    """This worker's counts per queue since it started, from its own transitions (ARQ's health line counts
    a failed attempt as complete and a cancel as a retry): "stats: generation 4 completed, 1 failed, ..."."""
    per_queue = [f"{name} " + ", ".join([*(f"{state.counts[name, outcome]} {outcome}" for outcome in OUTCOMES),
                                         f"{state.busy[name]} running of {slots}"])
                 for name, slots in state.queues.items()]
    return "stats: " + "; ".join(per_queue)


async def run(state: WorkerState) -> None:
    interval = min(queues.lease_s(state.store.settings, name) for name in state.queues) / 3
    next_stats = time.monotonic() + STATS_EVERY_S
    while True:
        try:
            await beat(state)
            await reap(state)
            if await turn(state, "schedules", interval * 0.9):
                await Scheduler(state.client).run_due()
            if await turn(state, "schedule-log", SCHEDULE_LOG_EVERY_S):
                logger.info("%s", await schedules_line(Scheduler(state.client)))
            await counters.sample_depth(state.store)
            if await turn(state, "sweep", state.store.settings.lease_s):
                await sweep(state)
                await prune(state)
            if await alerts.due(state.store, state.id):
                await alerts.evaluate(state.store)
            if time.monotonic() >= next_stats:
                logger.info("%s", stats_line(state))
                next_stats = time.monotonic() + STATS_EVERY_S
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
            held = {job_id: state.claimed.get(job_id, queues.DEFAULT) for job_id in state.running}
            await store.leases("renew", state.id, held, client=pipe)
        pipe.hset(keys.worker(state.id), mapping={
            "id": state.id, "host": socket.gethostname(), "pid": os.getpid(), "last_heartbeat": now,
            "alive": int(alive), "running": len(state.running), "done": state.done, "failed": state.failed,
            "queues": orjson.dumps({name: [state.busy[name], slots] for name, slots in state.queues.items()}),
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
    every_queue = [keys.arq_queue(name) for name in sorted({*queues.SEED, *registry.queue_names()})]
    for status in (JobStatus.queued, JobStatus.retrying):
        start = 0
        while ids := await store.redis.zrange(keys.status(status), start, start + batch - 1):
            async with store.redis.pipeline(transaction=False) as pipe:
                for queue in every_queue:
                    pipe.zmscore(queue, ids)
                found = await pipe.execute()
            orphans += [job_id for n, job_id in enumerate(ids) if all(scores[n] is None for scores in found)]
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
    it is left behind rather than holding up the worker's exit), then say this worker is gone, with its
    last stats line."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=wait_s)
    with suppress(Exception):
        await beat(state, alive=False)
    logger.info("%s (at shutdown)", stats_line(state))
