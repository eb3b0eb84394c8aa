"""Taskdeck: long AI generation jobs in the background, on ARQ and Redis, watched from a browser."""
from .client import AsyncClient, Client
from .context import TaskContext
from .errors import (
    AccessDenied,
    Fatal,
    InvalidPayload,
    InvalidTransition,
    JobNotFound,
    LimitExceeded,
    RedisUnavailable,
    RetryLater,
    TaskdeckError,
    Unavailable,
    UnknownTaskType,
)
from .models import Job, JobStatus, Priority, Stats
from .registry import Backoff, task
from .settings import Settings

__all__ = [
    "AccessDenied", "AsyncClient", "Backoff", "Client", "Fatal", "InvalidPayload", "InvalidTransition", "Job",
    "JobNotFound", "JobStatus", "LimitExceeded", "Priority", "RedisUnavailable", "RetryLater", "Settings", "Stats",
    "TaskContext",
    "TaskdeckError", "Unavailable", "UnknownTaskType", "task",
]
