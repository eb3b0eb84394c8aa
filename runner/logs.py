"""One log line per job transition, plain or as JSON lines (Settings.log_json)."""
from __future__ import annotations

import logging
import sys

import orjson

from .models import Job

logger = logging.getLogger("taskdeck.jobs")


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"at": self.formatTime(record), "level": record.levelname, "message": record.getMessage()}
        line.update(getattr(record, "job", {}))
        return orjson.dumps(line).decode()


def configure(json_lines: bool, arq_job_lines: bool = False) -> None:
    """Give the `taskdeck` loggers a handler of their own, unless the host app configured one."""
    if not arq_job_lines:
        logging.getLogger("arq.worker").addFilter(WithoutArqJobLines())
    root = logging.getLogger("taskdeck")
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines() if json_lines else logging.Formatter("%(asctime)s: %(message)s", "%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False


class WithoutArqJobLines(logging.Filter):
    """Drops ARQ's two INFO lines per job ("→ id:taskdeck()", "← ... ●"): Taskdeck logs each transition
    itself, with the real outcome, and the extra lines cost a noticeable share of a short job's CPU."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.INFO and str(record.msg).startswith("%6.2fs"))


def log_transition(job: Job, status: str, detail: str, level: int = logging.INFO) -> None:
    fields = {"job_id": job.id, "type": job.type, "attempt": job.attempts, "status": status, "detail": detail}
    logger.log(level, "%s %s attempt %d/%d → %s: %s", job.id, job.type, job.attempts, job.max_attempts, status,
               detail, extra={"job": fields})
