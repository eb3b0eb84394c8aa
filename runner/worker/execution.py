"""One run of one job inside an ARQ worker: start, the task function, and how the attempt ends."""
from __future__ import annotations

import asyncio
import logging
import traceback
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import orjson
from pydantic import ValidationError

from .. import context, queues, registry
from ..context import TaskContext
from ..errors import RETRY_AFTER_CAP_S, Fatal, RetryLater, UnknownTaskType
from ..models import Attempt, Job, JobStatus, SpendCap, StepStatus, utcnow
from ..storage import transitions
from ..storage.checkpoints import RedisCheckpoints
from ..storage.store import Claim, Outcome, Store, TransitionSpec, decode, dumps
from . import wake
from .logs import log_transition

logger = logging.getLogger("taskdeck.worker")


class WorkerState:
    """What one worker process shares between its jobs and its heartbeat."""

    def __init__(self, store: Store, worker_id: str) -> None:
        self.store = store
        self.id = worker_id
        self.running: dict[str, int] = {}
        self.aborting: set[str] = set()
        self.queues: dict[str, int] = {queues.DEFAULT: store.settings.max_jobs}  # served queue -> its slots
        self.claimed: dict[str, str] = {}  # job id -> its queue, from its claim until its task ends
        self.busy: Counter[str] = Counter()  # claims held per queue
        self.ending: Counter[str] = Counter()  # per queue, jobs writing their end: their slots count as free
        self.counts: Counter[tuple[str, str]] = Counter()  # (queue, outcome) since start: the stats line
        self.client: Any = None
        self.done = 0
        self.failed = 0


async def run(ctx: dict[str, Any]) -> None:
    """The ARQ function every Taskdeck job is enqueued as. Workers claim and run jobs through
    claim.py instead of ARQ's own start path, so ARQ calls this only if that hook is missing."""
    state: WorkerState = ctx["taskdeck"]
    record = await state.store.redis.hgetall(state.store.keys.job(ctx["job_id"]))  # type: ignore[misc]  # redis-py types replies `Awaitable[T] | T` for both clients
    await execute(state, Claim(ctx["job_id"], ctx["score"], record))


async def execute(state: WorkerState, claim: Claim) -> None:
    """Run one claimed job from its record; every way out ends the claim (its lease)."""
    job_id = claim.job_id
    try:
        job = decode(claim.record) if claim.record else None
    except (ValidationError, orjson.JSONDecodeError) as e:
        spec = transitions.unreadable(job_id, str(e), utcnow(), state.store.keys, claim.queue)
        if not await end(state, job_id, spec):
            await state.store.drop(job_id, state.id, claim.queue)
        logger.error("job %s: its record cannot be read (%s); failed", job_id, e)
        return
    if job is None or job.status.terminal:
        await state.store.drop(job_id, state.id, claim.queue)
        return
    if job.cancel_requested_by:
        await finish(state, job, transitions.cancelled(job, utcnow(), state.store.keys))
        return
    lost = lost_attempt(job) if job.status is JobStatus.processing else None
    if lost and job.attempts >= job.max_attempts:
        await finish(state, job, transitions.fail(job, lost, utcnow(), state.store.keys, retry_at=None))
        return
    try:
        task_type = registry.get(job.type)
        payload = task_type.payload.model_validate(job.payload)
    except (UnknownTaskType, ValidationError) as e:
        await fail_at_once(state, job, e)
        return
    started = await begin(state, job, task_type.steps, lost, claim.score)
    if started is None:
        await state.store.release(job.id, state.id, claim.queue)
        return
    state.running[job.id] = started.attempts
    state.counts[job.queue, "lost"] += lost is not None
    try:
        await attempt(state, started, task_type, payload)
    finally:
        state.running.pop(job.id, None)
        state.aborting.discard(job.id)


def lost_attempt(job: Job) -> Attempt:
    return Attempt(number=job.attempts, worker=job.worker, started_at=job.started_at, finished_at=utcnow(),
                   outcome="lost", error="worker lost during the attempt (killed or unreachable)", steps=job.steps)


async def begin(state: WorkerState, job: Job, steps: tuple[str, ...], lost: Attempt | None, score: int) -> Job | None:
    """The started job, or None: a running limit parked it off the queue, or it changed meanwhile."""
    now = utcnow()
    keys, settings = state.store.keys, state.store.settings
    limits = {"user": settings.max_running_per_user, "org": settings.max_running_per_org,
              "type": settings.max_running_per_type.get(job.type), "global": settings.max_running_global}
    spec = transitions.start(job, state.id, steps, now, keys.arq_in_progress(job.id), int(settings.lease_s * 1000),
                             lost, limits, score)
    # waited for like a final state: a start the promoted replica lacks would run the job twice
    outcome = warn_short(await state.store.apply(job.id, spec, now, replicated=True))
    if outcome.parked:
        log_transition(job, "queued", "held back by a running limit; waits off the queue for a free slot")
    if not outcome.applied:
        return None
    started = job.model_copy(update={"status": JobStatus.processing, "attempts": job.attempts + 1, "started_at": now,
                                     "worker": state.id, "steps": transitions.fresh_steps(steps)})
    log_transition(started, "started", f"attempt {started.attempts} of {started.max_attempts}")
    return started


async def attempt(state: WorkerState, job: Job, task_type: registry.TaskType, payload: Any) -> None:
    settings = state.store.settings
    ctx = TaskContext(
        job.id, job.attempts, list(task_type.steps),
        flush=lambda fields: state.store.apply(job.id, transitions.progress(job.attempts, fields, job)),
        is_cancel_requested=lambda: cancel_requested(state, job.id),
        interval=settings.progress_interval_s, partial_cap=settings.max_partial_bytes,
        user_id=job.user_id, org_id=job.org_id, task_type=job.type,
        checkpoints=RedisCheckpoints(state.store.redis, state.store.keys, job.id, settings.retention_days * 86400),
        caps=SpendCap(max_tokens=job.max_tokens, max_cost_usd=job.max_cost_usd),
    )
    ctx.usage = {"tokens_in": job.tokens_in, "tokens_out": job.tokens_out, "cost_usd": job.cost_usd}
    deadline = asyncio.timeout(task_type.timeout_s)
    running = context.current.set(ctx)  # the LLM client records usage and checks caps against it
    try:
        async with deadline:
            result = await task_type.function(ctx, payload)
    except asyncio.CancelledError:
        await asyncio.shield(interrupted(state, job, ctx))
        raise
    except Exception as e:
        timed_out = isinstance(e, TimeoutError) and deadline.expired()
        error = f"timed out after {task_type.timeout_s:g} s" if timed_out else f"{type(e).__name__}: {e}"
        asked = e.after_s if isinstance(e, RetryLater) else None
        await failed(state, job, ctx, error, "timeout" if timed_out else "failed", retryable=not isinstance(e, Fatal),
                     asked_s=asked)
    else:
        await completed(state, job, ctx, result)
    finally:
        context.current.reset(running)
        ctx.stop()


def record(job: Job, ctx: TaskContext, now: datetime, outcome: str, step_status: StepStatus,
           error: str | None = None, tb: str | None = None) -> Attempt:
    """The attempt as it ended at `now`, its steps closed."""
    return Attempt(number=job.attempts, worker=job.worker, started_at=job.started_at, finished_at=now,
                   outcome=outcome, error=error, traceback=tb,
                   steps=transitions.close_steps(ctx.steps, step_status, now, error))


def ran_s(job: Job, until: datetime) -> float:
    """Seconds the attempt ran until `until` (begin() set the running job's started_at)."""
    return (until - job.started_at).total_seconds() if job.started_at else 0.0


async def completed(state: WorkerState, job: Job, ctx: TaskContext, result: Any) -> None:
    settings = state.store.settings
    now = utcnow()
    entry = record(job, ctx, now, "completed", StepStatus.completed)
    spec = transitions.complete(job, entry, result, utcnow(), state.store.keys, settings.max_result_bytes)
    if await finish(state, job, spec, ctx):
        state.done += 1
        state.counts[job.queue, "completed"] += 1
        log_transition(job, "completed", f"in {ran_s(job, now):.2f} s")


async def failed(state: WorkerState, job: Job, ctx: TaskContext, error: str, outcome: str, retryable: bool,
                 asked_s: float | None = None) -> None:
    """A failed attempt: retried after the type's backoff, or after what the other side asked (`asked_s`:
    a RetryLater's Retry-After, capped), while attempts are left."""
    settings = state.store.settings
    tb = traceback.format_exc()[-settings.max_traceback_chars:]
    now = utcnow()
    entry = record(job, ctx, now, outcome, StepStatus.failed, error, tb)
    retry_at: datetime | None = None
    if retryable and job.attempts < job.max_attempts:
        backoff = registry.get(job.type).backoff.delay(job.attempts)
        delay = backoff if asked_s is None else min(asked_s, RETRY_AFTER_CAP_S)
        retry_at = now + timedelta(seconds=delay)
    if await finish(state, job, transitions.fail(job, entry, utcnow(), state.store.keys, retry_at), ctx):
        state.failed += retry_at is None
        state.counts[job.queue, "retried" if retry_at else "failed"] += 1
        follow = f"retrying in {(retry_at - now).total_seconds():.1f} s" if retry_at else "no attempts left"
        log_transition(job, "retrying" if retry_at else "failed", f"{error}; {follow}", level=logging.WARNING)


async def fail_at_once(state: WorkerState, job: Job, error: Exception) -> None:
    """An unknown type or an invalid payload: no attempt can succeed."""
    message = str(error) if isinstance(error, UnknownTaskType) else f"invalid payload: {error}"
    entry = Attempt(number=max(job.attempts, 1), worker=state.id, started_at=utcnow(), finished_at=utcnow(),
                    outcome="failed", error=message)
    if await finish(state, job, transitions.fail(job, entry, utcnow(), state.store.keys, retry_at=None)):
        state.failed += 1
        log_transition(job, "failed", f"{message}; not retried", level=logging.WARNING)


async def interrupted(state: WorkerState, job: Job, ctx: TaskContext) -> None:
    """CancelledError: an abort asked for by cancel(), or the worker shutting down (hand the job back)."""
    now = utcnow()
    current = await state.store.load(job.id)
    if current and current.cancel_requested_by:
        entry = record(job, ctx, utcnow(), "cancelled", StepStatus.skipped,
                       f"cancelled by {current.cancel_requested_by}")
        if await finish(state, current, transitions.cancelled(current, now, state.store.keys, record=entry), ctx):
            state.counts[job.queue, "cancelled"] += 1
            log_transition(job, "cancelled", f"by {current.cancel_requested_by} at step {ctx.current_step or '-'}")
        return
    entry = record(job, ctx, utcnow(), "handed back", StepStatus.pending, "worker shut down")
    aging_s = state.store.settings.priority_aging_s
    if await finish(state, job, transitions.handback(job, entry, now, state.store.keys, aging_s), ctx):
        log_transition(job, "queued", "handed back: worker shutting down; no attempt charged")


async def finish(state: WorkerState, job: Job, spec: TransitionSpec, ctx: TaskContext | None = None) -> bool:
    """Apply the attempt's final transition, keeping the partial output the task saved."""
    if ctx is not None and ctx.partial is not None:
        spec["set"]["partial"] = dumps(ctx.partial)
    if await end(state, job.id, spec):
        return True
    logger.info("job %s: no longer %s; leaving it", job.id, job.status)
    await state.store.release(job.id, state.id, state.claimed.get(job.id, job.queue))
    return False


async def end(state: WorkerState, job_id: str, spec: TransitionSpec) -> bool:
    """A transition that ends this worker's claim together with the change, shielded from
    cancellation so that an abort or a shutdown cannot cut it in half.

    The job's slot counts as free from here (`ending`): the next claim goes out beside this write
    instead of after it.
    """
    queue = state.claimed.get(job_id, queues.DEFAULT)
    done = spec["status"].terminal
    spec["calls"] = spec.get("calls", []) + transitions.release_calls(state.store.keys, job_id, done, queue)
    state.ending[queue] += 1
    wake.nudge()
    try:
        outcome = await asyncio.shield(state.store.apply(job_id, spec, replicated=done))
    finally:
        state.ending[queue] -= 1
    return warn_short(outcome).applied


def warn_short(outcome: Outcome) -> Outcome:
    """A worker's change that replicas did not confirm in time stands on the primary: it says so and goes on."""
    if outcome.short:
        logger.warning("%s", outcome.short)
    return outcome


async def cancel_requested(state: WorkerState, job_id: str) -> bool:
    current = await state.store.load(job_id)
    return current is None or current.cancel_requested_by is not None
