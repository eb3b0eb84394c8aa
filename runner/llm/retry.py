"""Retries inside one LLM call (tenacity): 429s are waited out as the endpoint's Retry-After asks, for up
to a time budget, so throttling never fails the job's attempt; 5xx replies, timeouts and broken streams
get a few tries with exponential backoff and jitter."""
from __future__ import annotations

import openai
from tenacity import RetryCallState
from tenacity.wait import wait_base

from ..errors import asked_wait

RETRYABLE_STATUS = frozenset({408, 409})


class CallTimeout(Exception):
    """One try took longer than Settings.llm_timeout_s (the stream as a whole, not one read)."""


class BrokenStream(Exception):
    """The endpoint's stream was malformed or ended before the reply did."""


def out_of_quota(error: BaseException | None) -> bool:
    """OpenAI answers 429 also when the account has no credit left; waiting does not help then."""
    return isinstance(error, openai.RateLimitError) and error.code == "insufficient_quota"


def throttled(error: BaseException | None) -> bool:
    return isinstance(error, openai.RateLimitError) and not out_of_quota(error)


def failing(error: BaseException) -> bool:
    """A failure of the endpoint itself: it counts against the call's tries and the circuit breaker."""
    if isinstance(error, openai.APIStatusError):
        return error.status_code >= 500 or error.status_code in RETRYABLE_STATUS
    return isinstance(error, (openai.APIConnectionError, openai.APIError, CallTimeout, BrokenStream))


def transient(error: BaseException) -> bool:
    return throttled(error) or failing(error)


def retry_after(error: BaseException | None) -> float | None:
    """Seconds the endpoint asked to wait, from the failed call's response (`asked_wait`)."""
    response = getattr(error, "response", None)
    return None if response is None else asked_wait(response.headers)


class wait_retry_after(wait_base):
    """Wait as long as the reply's Retry-After asks (capped at `cap_s`), else as `fallback` says."""

    def __init__(self, fallback: wait_base, cap_s: float) -> None:
        self.fallback = fallback
        self.cap_s = cap_s

    def __call__(self, retry_state: RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        asked = retry_after(error)
        return min(asked, self.cap_s) if asked is not None else self.fallback(retry_state)


class stop_policy:
    """Stop retrying: 429s once the call has spent `throttle_s` in all; other failures after `max_tries`."""

    def __init__(self, max_tries: int, throttle_s: float) -> None:
        self.max_tries = max_tries
        self.throttle_s = throttle_s
        self.failures = 0
        self.throttled = 0

    def __call__(self, retry_state: RetryCallState) -> bool:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if throttled(error):
            self.throttled += 1
            return (retry_state.seconds_since_start or 0.0) >= self.throttle_s
        self.failures += 1
        return self.failures >= self.max_tries
