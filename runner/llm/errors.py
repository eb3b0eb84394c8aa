"""How an LLM call can fail once its own retries are spent: the attempt fails (and is retried with the
job's backoff), or, when no attempt can help, the job fails at once (runner.Fatal)."""
from __future__ import annotations

from ..errors import Fatal


class LlmError(RuntimeError):
    """The call failed for now; another attempt of the job may succeed."""


class CircuitOpen(LlmError):
    """The endpoint failed too often in a row; calls fail fast until its cool-down ends."""


class EndpointFailed(LlmError):
    """5xx replies, timeouts or broken streams outlasted the call's tries, or 429s its throttle wait."""


class OutputInvalid(LlmError):
    """The reply did not fit the result model, even after asking again."""


class EndpointRefused(Fatal):
    """The endpoint refused the request in a way retrying cannot fix: key, model, quota or request."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
