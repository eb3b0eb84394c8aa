"""One family of errors, each with a message a user can act on."""
from __future__ import annotations


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


class RedisUnavailable(TaskdeckError):
    """Redis could not be reached; nothing was written."""

    exit_code = 1


class NotReplicated(RedisUnavailable):
    """The change was made on the Redis primary but did not reach TASKDECK_REDIS_MIN_REPLICAS replicas in
    time: a failover now could undo it. `job_id` names the job to check."""

    def __init__(self, message: str, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id
