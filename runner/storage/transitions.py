"""The specs of every job transition, for lua/transition.lua: pure functions, no I/O.

Each returns the TransitionSpec that Store.apply runs atomically: the guard (`from`, `match`, `absent`,
`unless`), the fields to set, the new status, the metric counters, the event, and the commands on
ARQ's keys that must happen together with it.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from arq.jobs import serialize_job

from ..models import ACTIVE, TERMINAL, Attempt, Job, JobStatus, Priority, SpendCap, Step, StepStatus
from . import counters as tally
from .keys import Keys
from .store import TransitionSpec, Who, dumps, encode

ARQ_FUNCTION = "taskdeck"
ACTIVE_NAMES = [s.value for s in ACTIVE]


def queue_score(priority: Priority, now: datetime, aging_s: float) -> int:
    """ARQ runs the lowest score first: high jumps ahead by 2×aging, normal by 1×, low waits."""
    ahead = {Priority.high: 2, Priority.normal: 1, Priority.low: 0}[priority]
    return int((now.timestamp() - ahead * aging_s) * 1000)


def enqueue_calls(keys: Keys, job_id: str, priority: Priority, now: datetime, aging_s: float,
                  queue: str) -> list[list[Any]]:
    data = serialize_job(ARQ_FUNCTION, (), {}, None, int(now.timestamp() * 1000), serializer=orjson.dumps)
    return [
        ["DEL", keys.arq_result(job_id), keys.arq_retry(job_id), keys.arq_in_progress(job_id)],
        ["ZREM", keys.abort, job_id],
        ["SET", keys.arq_job(job_id), data.decode()],
        ["ZADD", keys.arq_queue(queue), queue_score(priority, now, aging_s), job_id],
    ]


def dequeue_calls(keys: Keys, job_id: str, queue: str) -> list[list[Any]]:
    return [["ZREM", keys.arq_queue(queue), job_id], ["DEL", keys.arq_job(job_id), keys.arq_retry(job_id)]]


def release_calls(keys: Keys, job_id: str, done: bool, queue: str) -> list[list[Any]]:
    """The end of a worker's claim on a job: its lease goes; a job `done` also leaves ARQ for good
    (what ARQ's own finish_job would do), the others stay on ARQ's queue for their next run."""
    if not done:
        return [["DEL", keys.arq_in_progress(job_id)]]
    return [["DEL", keys.arq_in_progress(job_id), keys.arq_job(job_id), keys.arq_retry(job_id)],
            ["ZREM", keys.arq_queue(queue), job_id], ["ZREM", keys.abort, job_id]]


def fresh_steps(names: list[str] | tuple[str, ...]) -> list[Step]:
    return [Step(name=name) for name in names]


def close_steps(steps: list[Step], outcome: StepStatus, now: datetime, error: str | None = None) -> list[Step]:
    """Steps at the end of an attempt: the running one takes `outcome`; pending ones are skipped on success."""
    closed = []
    for step in steps:
        step = step.model_copy()
        if step.status is StepStatus.running:
            step.status, step.finished_at, step.error = outcome, now, error
        elif step.status is StepStatus.pending and outcome is StepStatus.completed:
            step.status = StepStatus.skipped
        closed.append(step)
    return closed


def who(job: Job) -> Who:
    """The owner fields of a record, which never change: passed along so that the script need not read them."""
    return {"type": job.type, "user": job.user_id, "priority": job.priority.value, "org": job.org_id}


def counters(job: Job, name: str, **extra: float) -> dict[str, float]:
    return {name: 1, f"{name}:{job.type}": 1, **extra}


def create(job: Job, keys: Keys, aging_s: float, by: str) -> TransitionSpec:
    fields = job.model_dump(exclude={"attempt_log", "partial", "status"})
    return {
        "create": {"score": job.queued_at.timestamp(), "type": job.type, "user": job.user_id, "priority": job.priority,
                   "org": job.org_id},
        "set": encode(fields),
        "status": JobStatus.queued,
        "metrics": counters(job, "submitted"),
        "event": {"event": "submitted"},
        "audit": {"action": "submit", "by": by},
        "calls": enqueue_calls(keys, job.id, job.priority, job.queued_at, aging_s, job.queue),
        "wake": True,
    }


def start(job: Job, worker: str, steps: tuple[str, ...], now: datetime, in_progress: str, lease_ms: int,
          lost: Attempt | None, limits: dict[str, int | None], queued_score: int | None = None) -> TransitionSpec:
    """processing, unless a running limit (user, org, type, global) is reached: then the job is parked
    off ARQ's queue, with the reason, until a job of the same scope leaves processing; it goes back
    with `queued_score`, its place in the queue before it was claimed."""
    wait = tally.wait_counters((now - job.queued_at).total_seconds()) if job.attempts == 0 else {}
    fields: dict[str, Any] = {
        "started_at": now, "updated_at": now, "worker": worker, "progress": 0.0, "current_step": None,
        "steps": fresh_steps(steps), "next_attempt_at": None, "eta": None, "waiting_reason": None,
    }
    if lost:
        fields[f"attempt:{lost.number}"] = lost
    return {
        "from": [job.status], "match": {"attempts": job.attempts}, "who": who(job),
        "set": encode(fields), "incr": {"attempts": 1}, "status": JobStatus.processing,
        "metrics": counters(job, "started", **wait) | (counters(job, "lost") if lost else {}),
        "event": {"event": "started", "attempt": job.attempts + 1},
        "limits": limits, **({"queued_score": queued_score} if queued_score is not None else {}),
        "calls": [["PEXPIRE", in_progress, lease_ms]],
    }


def progress(attempt: int, fields: dict[str, Any], owner: Job | None = None) -> TransitionSpec:
    return {
        "from": [JobStatus.processing], "match": {"attempts": attempt}, "set": encode(fields),
        **({"who": who(owner)} if owner else {}),
        "event": {"event": "progress", "progress": fields["progress"], "step": fields["current_step"] or ""},
    }


def complete(job: Job, record: Attempt, result: Any, now: datetime, keys: Keys, max_bytes: int) -> TransitionSpec:
    calls: list[list[Any]] = []
    encoded = dumps(result)
    if len(encoded) > max_bytes:
        calls.append(["SET", keys.artifact(job.id), encoded])
        result = {"artifact": keys.artifact(job.id), "bytes": len(encoded), "preview": encoded[:1000]}
    duration = (now - job.started_at).total_seconds() if job.started_at else 0.0
    return {
        "from": [JobStatus.processing], "match": {"attempts": record.number}, "who": who(job),
        "set": encode({"result": result, "progress": 100.0, "completed_at": now, "updated_at": now, "eta": None,
                       "steps": record.steps, "last_error": None, f"attempt:{record.number}": record}),
        "status": JobStatus.completed,
        "metrics": counters(job, "completed", **{f"duration_s:{job.type}": duration, f"duration_n:{job.type}": 1})
        | tally.completion_counters(job, duration),
        "event": {"event": "completed", "attempt": record.number},
        "calls": calls,
    }


def fail(job: Job, record: Attempt, now: datetime, keys: Keys, retry_at: datetime | None) -> TransitionSpec:
    """A failed attempt: `retrying` until `retry_at` when one is given, else `failed` for good."""
    fields: dict[str, Any] = {"last_error": record.error, "updated_at": now, "eta": None, "steps": record.steps,
                              f"attempt:{record.number}": record}
    if retry_at:
        fields["next_attempt_at"] = retry_at
        due_ms = int(retry_at.timestamp() * 1000)
        status, metric = JobStatus.retrying, "retried"
        calls = [["ZADD", keys.arq_queue(job.queue), "XX", due_ms, job.id]]
    else:
        fields["completed_at"] = now
        status, metric, calls = JobStatus.failed, "failed", dequeue_calls(keys, job.id, job.queue)
    return {
        "from": [job.status], "match": {"attempts": job.attempts}, "who": who(job),
        "set": encode(fields), "status": status,
        "metrics": counters(job, metric) | tally.failure_counters(job, final=retry_at is None),
        "event": {"event": status.value, "attempt": record.number, "error": (record.error or "")[:500]},
        "calls": calls + tally.error_calls(keys, record.error, now),
    }


def cancelled(job: Job, now: datetime, keys: Keys, by: str | None = None,
              record: Attempt | None = None) -> TransitionSpec:
    """Final `cancelled`: a queued job leaves ARQ's queue; a running one was aborted by its worker."""
    fields: dict[str, Any] = {"completed_at": now, "updated_at": now, "eta": None}
    if by:
        fields |= {"cancel_requested_by": by, "cancel_requested_at": now}
    if record:
        fields |= {"steps": record.steps, f"attempt:{record.number}": record}
    spec: TransitionSpec = {
        "from": [job.status], "match": {"attempts": job.attempts}, "who": who(job),
        "set": encode(fields), "status": JobStatus.cancelled, "metrics": counters(job, "cancelled"),
        "event": {"event": "cancelled", "by": by or job.cancel_requested_by or "", "step": job.current_step or ""},
        "calls": [] if record else dequeue_calls(keys, job.id, job.queue),
    }
    if by:
        spec["audit"] = {"action": "cancel", "by": by}
    return spec


def cancel_request(job: Job, by: str, now: datetime, keys: Keys) -> TransitionSpec:
    """Ask the worker running `job` to abort it (ARQ's abort set); the worker writes `cancelled`."""
    return {
        "from": [JobStatus.processing], "match": {"attempts": job.attempts}, "unless": "cancel_requested_by",
        "set": encode({"cancel_requested_by": by, "cancel_requested_at": now, "updated_at": now}),
        "event": {"event": "cancel_requested", "by": by},
        "audit": {"action": "cancel", "by": by},
        "calls": [["ZADD", keys.abort, int(now.timestamp() * 1000), job.id]],
        "wake": True,
    }


def handback(job: Job, record: Attempt, now: datetime, keys: Keys, aging_s: float) -> TransitionSpec:
    """A worker shutting down returns its job to the queue, due at once, without charging it an attempt."""
    return {
        "from": [JobStatus.processing], "match": {"attempts": job.attempts}, "who": who(job),
        "set": encode({"updated_at": now, "eta": None, f"attempt:{record.number}": record}),
        "incr": {"attempts": -1}, "status": JobStatus.queued,
        "event": {"event": "handed_back", "attempt": record.number},
        "calls": [["ZADD", keys.arq_queue(job.queue), "XX", queue_score(job.priority, now, aging_s), job.id]],
    }


def lost(job: Job, record: Attempt, now: datetime, keys: Keys, aging_s: float) -> TransitionSpec:
    """A processing job whose lease lapsed: its worker is gone. Queued again (ARQ's job rewritten,
    in case ARQ had dropped it), or failed if it has no attempts left."""
    in_progress = keys.arq_in_progress(job.id)
    spec: TransitionSpec
    if job.attempts >= job.max_attempts:
        spec = fail(job, record, now, keys, retry_at=None)
    else:
        spec = {"from": [JobStatus.processing], "match": {"attempts": job.attempts},
                "set": encode({"updated_at": now, "eta": None, "last_error": record.error,
                               f"attempt:{record.number}": record}),
                "status": JobStatus.queued, "event": {"event": "lost", "attempt": record.number},
                "calls": enqueue_calls(keys, job.id, job.priority, now, aging_s, job.queue), "wake": True}
    spec["absent"] = [in_progress]
    spec["metrics"] = spec.get("metrics", {}) | counters(job, "lost")
    return spec


def unreadable(job_id: str, error: str, now: datetime, keys: Keys, queue: str) -> TransitionSpec:
    """A record that no longer parses as a Job (edited by hand, or written by another version), claimed
    from `queue`."""
    return {
        "from": ACTIVE_NAMES, "status": JobStatus.failed,
        "set": encode({"last_error": f"job record unreadable: {error[:500]}", "completed_at": now, "updated_at": now}),
        "event": {"event": "failed", "error": "job record unreadable"},
        "calls": dequeue_calls(keys, job_id, queue),
    }


def orphaned(job: Job, now: datetime, keys: Keys, aging_s: float) -> TransitionSpec:
    """A waiting job missing from ARQ's queue: written back to it, at the cost of one attempt."""
    record = Attempt(number=job.attempts + 1, started_at=now, finished_at=now, outcome="lost",
                     error="its ARQ queue entry was missing or unreadable")
    charged = job.model_copy(update={"attempts": job.attempts + 1})
    spec: TransitionSpec
    if charged.attempts >= job.max_attempts:
        spec = fail(job, record, now, keys, retry_at=None)
    else:
        spec = {"from": [job.status], "match": {"attempts": job.attempts}, "status": JobStatus.queued,
                "set": encode({"updated_at": now, "last_error": record.error, f"attempt:{record.number}": record}),
                "event": {"event": "lost", "attempt": record.number},
                "calls": enqueue_calls(keys, job.id, job.priority, now, aging_s, job.queue), "wake": True}
    spec["incr"] = {"attempts": 1}
    spec["not_in"] = [keys.arq_queue(job.queue)]
    spec["unless"] = "waiting_reason"
    spec["metrics"] = spec.get("metrics", {}) | counters(job, "lost")
    return spec


def retry(job: Job, by: str, now: datetime, keys: Keys, steps: tuple[str, ...], attempts: int,
          aging_s: float, caps: SpendCap | None = None) -> TransitionSpec:
    """A manual retry of a failed or cancelled job: the same id, queued again with fresh attempts (and the
    spend caps `caps`, when given). Its checkpoints stay: it resumes after the last one.

    Refused while ARQ still holds the last attempt (its in-progress key): ARQ's own clean-up of that
    attempt would otherwise delete the job just queued again.
    """
    fields = {
        "retried_from": job.status.value, "retried_by": by, "retried_at": now, "updated_at": now,
        "max_attempts": job.attempts + attempts, "progress": 0.0, "current_step": None, "steps": fresh_steps(steps),
        "started_at": None, "completed_at": None, "eta": None, "last_error": None, "result": None,
        "cancel_requested_by": None, "cancel_requested_at": None, "next_attempt_at": None,
        **(caps.model_dump() if caps else {}),
    }
    return {
        "from": [JobStatus.failed, JobStatus.cancelled], "match": {"attempts": job.attempts},
        "absent": [keys.arq_in_progress(job.id)],
        "set": encode(fields), "status": JobStatus.queued, "metrics": counters(job, "manual_retry"),
        "event": {"event": "retried", "by": by},
        "audit": {"action": "retry", "by": by},
        "calls": [["DEL", keys.artifact(job.id)], *enqueue_calls(keys, job.id, job.priority, now, aging_s, job.queue)],
        "wake": True,
    }


def purge() -> TransitionSpec:
    """A finished record past its retention deleted, with its index entries (the heartbeat's prune)."""
    return {"from": sorted(status.value for status in TERMINAL), "delete": True}
