"""One family of errors, each with a message a user can act on."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


class TaskdeckError(Exception):
    """Base of every error Taskdeck raises on purpose."""

    exit_code = 2


class InvalidPayload(TaskdeckError):
    """The payload does not match the task type's model, or is too large or malformed."""

    def __init__(self, message: str, errors: list[dict[str, object]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class UnknownTaskType(TaskdeckError):
    """No task type of that name is registered."""


class JobNotFound(TaskdeckError):
    """No job with that id, or not one the acting user may see."""


class TokenNotFound(TaskdeckError):
    """No API token with that id (it may have been revoked already)."""


class InvalidTransition(TaskdeckError):
    """The job is not in a state that allows the action (e.g. cancelling a completed job)."""


class AccessDenied(TaskdeckError):
    """The acting user's role does not allow the action, or the user is not on the allow-list."""


class LimitExceeded(TaskdeckError):
    """A limit refused the submit; the message says which and when to try again."""

    def __init__(self, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(TaskdeckError):
    """The task type needs something this deployment has not configured (e.g. an LLM endpoint)."""


class Fatal(TaskdeckError):
    """Raised by a task when another attempt cannot help: the job fails at once, without retries."""


class RetryLater(TaskdeckError):
    """Raised by a task when another attempt may work: with `after_s` (what a 429's or 503's Retry-After
    asked), the next attempt is due then instead of after the type's backoff (up to RETRY_AFTER_CAP_S)."""

    def __init__(self, message: str, after_s: float | None = None) -> None:
        super().__init__(message)
        self.after_s = after_s


RETRY_AFTER_CAP_S = 3600.0  # a Retry-After asking for more is waited this long


def asked_wait(headers: Mapping[str, str]) -> float | None:
    """Seconds a reply asks to wait: `retry-after-ms`, else `Retry-After` in seconds or as an HTTP date
    (the LLM client's retries and a fetched page's or feed's next attempt read it alike)."""
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return max(0.0, float(ms) / 1000)
        if (value := headers.get("retry-after")) is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = parsedate_to_datetime(value)
            return max(0.0, (when - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


class RedisUnavailable(TaskdeckError):
    """Redis could not be reached; nothing was written."""

    exit_code = 1


class NotReplicated(RedisUnavailable):
    """The change was made on the Redis primary but did not reach TASKDECK_REDIS_MIN_REPLICAS replicas in
    time: a failover now could undo it. `job_id` names the job to check."""

    def __init__(self, message: str, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id
