"""The job record and its parts: the one shape every page, the CLI and the workers share."""
from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class JobStatus(StrEnum):
    queued = "queued"
    processing = "processing"
    retrying = "retrying"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.completed, JobStatus.failed, JobStatus.cancelled})
ACTIVE = frozenset({JobStatus.queued, JobStatus.processing, JobStatus.retrying})


class Priority(StrEnum):
    high = "high"
    normal = "normal"
    low = "low"


class StepStatus(StrEnum):
    pending = "pending"
    running = "running"
    completed = "completed"
    failed = "failed"
    skipped = "skipped"


class Step(BaseModel):
    name: str
    status: StepStatus = StepStatus.pending
    progress: float = 0.0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None


class SpendCap(BaseModel):
    """The most LLM spend allowed: tokens (in + out) and/or USD; None is no cap."""

    max_tokens: int | None = Field(None, ge=1, description="Tokens, input and output together.")
    max_cost_usd: float | None = Field(None, gt=0, allow_inf_nan=False, description="USD, from Settings.llm_prices.")

    @property
    def capped(self) -> bool:
        return self.max_tokens is not None or self.max_cost_usd is not None


class Attempt(BaseModel):
    """One run of a job, kept for the detail page: how it ended and why."""

    number: int
    worker: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outcome: str
    error: str | None = None
    traceback: str | None = None
    steps: list[Step] = Field(default_factory=list)


class Job(BaseModel):
    id: str
    type: str
    payload: dict[str, Any]
    user_id: str
    org_id: str = ""
    status: JobStatus
    priority: Priority = Priority.normal
    progress: float = 0.0
    current_step: str | None = None
    steps: list[Step] = Field(default_factory=list)
    attempts: int = 0
    max_attempts: int = 1
    queued_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime
    eta: datetime | None = None
    last_error: str | None = None
    result: Any = None
    cancel_requested_by: str | None = None
    retried_from: str | None = Field(None, description="The status a manual retry took the job from.")

    cancel_requested_at: datetime | None = None
    retried_by: str | None = None
    retried_at: datetime | None = None
    next_attempt_at: datetime | None = None
    worker: str | None = None
    waiting_reason: str | None = Field(
        None, description='Why a queued job is held back: "waiting: user limit 3 reached".')
    tokens_in: int = Field(0, description="LLM input tokens over all attempts, as the endpoint reported them.")
    tokens_out: int = Field(0, description="LLM output tokens over all attempts.")
    cost_usd: float = Field(0.0, description="Their price from Settings.llm_prices.")
    max_tokens: int | None = Field(None, description="Cap on tokens_in + tokens_out over all attempts: past it the "
                                   "job fails with \"budget exceeded\" (a retry with a higher cap resumes it).")
    max_cost_usd: float | None = Field(None, description="Cap on cost_usd over all attempts, likewise.")
    rerun_of: str | None = Field(None, description="The job this one reruns (a retry from a step, or with an "
                                 "edited payload, makes a new job).")
    reused_steps: list[str] = Field(default_factory=list, description="The checkpoints copied from rerun_of, in "
                                    "the order they were made: those steps were not run again.")
    queue: str = Field("default", description="The named queue its type belongs to (whose workers' slots it takes).")
    attempt_log: list[Attempt] = Field(default_factory=list, description="Read by get() only, not by list().")
    partial: str | None = Field(None, description="Partial output saved while running; read by get() only.")


DETAIL_FIELDS = frozenset({"attempt_log", "partial"})
LIST_FIELDS = tuple(name for name in Job.model_fields if name not in DETAIL_FIELDS)


class QueueLoad(BaseModel):
    """One named queue now: what waits in it, and the slots live workers give it."""

    waiting: int = Field(description="Jobs due to run (queued, or retrying and due), not yet claimed.")
    running: int = Field(description="Jobs live workers hold from it.")
    capacity: int = Field(description="Slots live workers give it; 0: no worker serves it.")
    workers: int = Field(description="Live workers serving it.")


class Stats(BaseModel):
    queue_depth: dict[Priority, int]
    by_status: dict[JobStatus, int]
    success_rate_1h: float | None = Field(description="completed / (completed + failed) over the last hour.")
    throughput_per_min: float = Field(description="Jobs finished per minute, averaged over the last 5 minutes.")
    workers_alive: int
    dead_letter: int
    lost_1h: int = Field(0, description="Attempts lost with their worker in the last hour: each one a re-run.")
    queues: dict[str, QueueLoad] = Field(default_factory=dict, description="Each named queue's load.")


class WorkerInfo(BaseModel):
    id: str
    host: str
    pid: int
    started_at: datetime
    last_heartbeat: datetime
    alive: bool
    running: int = 0
    done: int = 0
    failed: int = 0
    queues: dict[str, tuple[int, int]] = Field(default_factory=dict, description="Each queue it serves: "
                                               "(jobs it runs from it, its slots).")


def utcnow() -> datetime:
    return datetime.now(UTC)
