"""One log line per job transition, plain or as JSON lines (Settings.log_json)."""
from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

import orjson

from ..models import Job

logger = logging.getLogger("taskdeck.jobs")


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"at": self.formatTime(record), "level": record.levelname, "message": record.getMessage()}
        line.update(getattr(record, "job", {}))
        return orjson.dumps(line).decode()


def configure(json_lines: bool) -> None:
    """Give the `taskdeck` loggers a handler of their own, unless the host app configured one."""
    root = logging.getLogger("taskdeck")
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines() if json_lines else logging.Formatter("%(asctime)s: %(message)s", "%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False


class Quiet:
    """One Taskdeck worker's say over ARQ's per-job lines; `close` at its shutdown, so that a context
    it leaves behind (a `worker.main()` awaited in the caller's own task) silences nothing after it."""

    def __init__(self) -> None:
        self.active = True

    def close(self) -> None:
        self.active = False


quiet: ContextVar[Quiet | None] = ContextVar("taskdeck_quiet_arq_job_lines", default=None)


class WithoutArqJobLines(logging.Filter):
    """Drops ARQ's INFO lines per job ("→ id:taskdeck()", "← ... ●") emitted inside a Taskdeck worker:
    Taskdeck logs each transition itself, with the real outcome, and the extra lines cost a noticeable
    share of a short job's CPU. The `arq.worker` logger is ARQ's and shared by every worker in the
    process, so the filter asks the emitting task's context: records of any other worker pass.

    Taskdeck workers start jobs through claim.py, not ARQ's run_job, so today they emit none of these
    lines; the filter keeps it so should ARQ's path ever run a Taskdeck job."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO or not str(record.msg).startswith("%6.2fs"):
            return True
        scope = quiet.get()
        return scope is None or not scope.active


ARQ_JOB_LINES = WithoutArqJobLines()


def hide_arq_job_lines() -> Quiet:
    """Drop ARQ's per-job lines for the worker whose startup calls this (its main task's context and the
    job tasks started from it), and only for it."""
    logging.getLogger("arq.worker").addFilter(ARQ_JOB_LINES)  # one instance: adding it again is a no-op
    scope = Quiet()
    quiet.set(scope)
    return scope


def log_transition(job: Job, status: str, detail: str, level: int = logging.INFO) -> None:
    fields = {"job_id": job.id, "type": job.type, "attempt": job.attempts, "status": status, "detail": detail}
    logger.log(level, "%s %s attempt %d/%d → %s: %s", job.id, job.type, job.attempts, job.max_attempts, status,
               detail, extra={"job": fields})
