"""How a worker takes jobs off ARQ's queue: one script per poll instead of ARQ's path per job.

ARQ 0.28 starts each job with four round trips (WATCH, EXISTS, ZSCORE, MULTI-PSETEX-EXEC), then
one more to read its job data and count a try, and one to clean up at the end; Taskdeck then reads
the record. `poll_iteration` replaces `Worker._poll_iteration`: lua/claim.lua takes up to the
free slots' worth of due jobs with their records and lists the jobs asked to abort, in one round
trip; each job's final transition removes ARQ's keys itself (execution.end). ARQ still runs the
loop, signals, graceful shutdown, burst mode and its health check. ARQ is pinned exactly;
tests/worker/test_claim.py fails if this hook stops working.

The hook is a class attribute, so it is there for every ARQ worker in the process: it tells a
Taskdeck worker by the WorkerState its on_startup put in the worker's own ctx, and hands any other
worker to ARQ's original unchanged (tests/worker/test_arq_citizen.py, and ARQ's own test suite through
compat/arq_suite.py). A Taskdeck poll also waits here for its wake-up (wake.py), since a Taskdeck
worker runs ARQ's timer at poll_delay 0.
"""
from __future__ import annotations

import asyncio
import logging

import arq.worker
from arq.worker import Worker

from ..storage.store import Claim
from . import execution, wake
from .execution import WorkerState

logger = logging.getLogger("taskdeck.worker")
arq_poll_iteration = Worker._poll_iteration


async def poll_iteration(worker: Worker) -> None:
    """One poll of a Taskdeck worker; any other ARQ worker in the process keeps ARQ's own."""
    state = taskdeck_state(worker)
    if state is None:
        return await arq_poll_iteration(worker)
    await next_poll(worker, state)
    claims, aborts = await state.store.claim(state.id, free_slots(worker, state), worker.queue_read_limit)
    for claim in claims:
        start(worker, state, claim)
    abort(worker, state, aborts)
    await worker.heart_beat()


async def next_poll(worker: Worker, state: WorkerState) -> None:
    """Wait for this worker's next poll (wake.py): its poll delay, or less when woken."""
    wakeup = wake.of(worker.ctx, state.store.settings.poll_delay_s)
    if wakeup.last_poll is None and worker.poll_delay_s > 0:
        logger.warning("this Taskdeck worker runs ARQ's poll timer at %g s: wake-ups wait for it; leave ARQ's "
                       "poll_delay at 0 (runner.worker's settings) and set TASKDECK_POLL_DELAY_S", worker.poll_delay_s)
    await wakeup.next_poll()


def taskdeck_state(worker: Worker) -> WorkerState | None:
    """The state of a Taskdeck worker (set by its on_startup); None for any other ARQ worker."""
    state = worker.ctx.get("taskdeck")
    return state if isinstance(state, WorkerState) else None


def free_slots(worker: Worker, state: WorkerState) -> dict[str, int]:
    """Per served queue, its slots not running a task: a job writing its end already counts as gone
    (execution.end). One queue's free slots are never given to another's jobs."""
    if not worker.allow_pick_jobs:
        return dict.fromkeys(state.queues, 0)
    free = {name: max(slots - state.busy[name] + state.ending[name], 0) for name, slots in state.queues.items()}
    if worker.burst and worker.max_burst_jobs >= 0:
        left = max(worker.max_burst_jobs - worker._jobs_started(), 0)
        free = {name: min(slots, left) for name, slots in free.items()}
    return free


def start(worker: Worker, state: WorkerState, claim: Claim) -> None:
    worker.job_counter += 1
    state.claimed[claim.job_id] = claim.queue
    state.busy[claim.queue] += 1
    task = asyncio.create_task(run(worker, state, claim))
    worker.tasks[claim.job_id] = task
    task.add_done_callback(lambda done: finished(worker, state, claim, done))


def finished(worker: Worker, state: WorkerState, claim: Claim, task: asyncio.Task[None]) -> None:
    """A slot frees the moment its task ends (ARQ's own poll looks for ended tasks one by one)."""
    worker.job_counter -= 1
    state.busy[claim.queue] -= 1
    if state.claimed.get(claim.job_id) == claim.queue:
        del state.claimed[claim.job_id]
    if worker.tasks.get(claim.job_id) is task:
        del worker.tasks[claim.job_id]


async def run(worker: Worker, state: WorkerState, claim: Claim) -> None:
    try:
        await execution.execute(state, claim)
    except asyncio.CancelledError:
        worker.jobs_retried += 1  # a shutdown: the job was handed back (execution.interrupted)
    except Exception:
        worker.jobs_failed += 1
        logger.exception("job %s: could not update its record; another worker takes it when its lease "
                         "(TASKDECK_LEASE_S) lapses", claim.job_id)
    else:
        worker.jobs_complete += 1


def abort(worker: Worker, state: WorkerState, job_ids: list[str]) -> None:
    """Cancel the running attempts asked to abort; execution.interrupted records them as cancelled."""
    for job_id in job_ids:
        task = worker.tasks.get(job_id)
        if task is not None and job_id in state.running and job_id not in state.aborting:
            state.aborting.add(job_id)
            task.cancel()


def install() -> None:
    """Replace ARQ's poll for every worker class-wide; poll_iteration gives non-Taskdeck workers ARQ's own."""
    arq.worker.Worker._poll_iteration = poll_iteration  # type: ignore[method-assign,assignment]
