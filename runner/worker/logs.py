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
    """One Taskdeck worker's say over ARQ's lines; `close` at its shutdown, so that a context it leaves behind
    (a `worker.main()` awaited in the caller's own task) silences nothing after it. `job_lines`: drop ARQ's
    per-job lines too (TASKDECK_LOG_ARQ_JOBS keeps them); ARQ's health line always goes, for Taskdeck's own
    stats line (heartbeat.stats_line): ARQ's counts failed attempts as complete and cancels as retries."""

    def __init__(self, job_lines: bool = True) -> None:
        self.active = True
        self.job_lines = job_lines

    def close(self) -> None:
        self.active = False


quiet: ContextVar[Quiet | None] = ContextVar("taskdeck_quiet_arq_job_lines", default=None)


class WithoutArqJobLines(logging.Filter):
    """Drops ARQ's INFO lines per job ("→ id:taskdeck()", "← ... ●") and its health line emitted inside a
    Taskdeck worker: Taskdeck logs each transition itself, with the real outcome, and its own stats line;
    the per-job lines cost a noticeable share of a short job's CPU. The `arq.worker` logger is ARQ's and
    shared by every worker in the process, so the filter asks the emitting task's context: records of any
    other worker pass.

    Taskdeck workers start jobs through claim.py, not ARQ's run_job, so today they emit no per-job
    lines; the filter keeps them out should ARQ's path ever run a Taskdeck job."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        scope = quiet.get()
        if scope is None or not scope.active:
            return True
        text = str(record.msg)
        return not (text.startswith("recording health") or (scope.job_lines and text.startswith("%6.2fs")))


ARQ_JOB_LINES = WithoutArqJobLines()


def hide_arq_job_lines(job_lines: bool = True) -> Quiet:
    """Drop ARQ's health line, and its per-job lines unless `job_lines` is false, for the worker whose
    startup calls this (its main task's context and the job tasks started from it), and only for it."""
    logging.getLogger("arq.worker").addFilter(ARQ_JOB_LINES)  # one instance: adding it again is a no-op
    scope = Quiet(job_lines)
    quiet.set(scope)
    return scope


def log_transition(job: Job, status: str, detail: str, level: int = logging.INFO) -> None:
    fields = {"job_id": job.id, "type": job.type, "attempt": job.attempts, "status": status, "detail": detail}
    logger.log(level, "%s %s attempt %d/%d → %s: %s", job.id, job.type, job.attempts, job.max_attempts, status,
               detail, extra={"job": fields})
