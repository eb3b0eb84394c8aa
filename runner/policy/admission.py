"""Checks at submit, before anything is written: can this deployment run the type at all, and is the user
within their LLM token quota and their (and their org's) daily and monthly spend caps (llm/spend.py).
`AsyncClient.submit` calls `check`; pages call `unavailable_reason`.

A generative type can run when an endpoint is set, or, without one, when the embedded demo model can stand
in (runner.llm.embedded; TASKDECK_LLM_EMBEDDED=0 turns that off and restores the refusal)."""
from __future__ import annotations

import math
import time
from datetime import UTC, datetime

from redis.asyncio import Redis

from ..errors import Fatal, LimitExceeded, Unavailable
from ..llm import LLM_SETTINGS, embedded, spend
from ..registry import TaskType
from ..settings import Settings
from ..storage.keys import Keys, bucket_start
from ..storage.store import Store


def env_name(setting: str) -> str:
    return f"TASKDECK_{setting.upper()}"


def missing(task_type: TaskType, settings: Settings) -> list[str]:
    """The settings `task_type` requires that are not set, by field name; the LLM endpoint's are not missing
    while the embedded demo model stands in for it."""
    stands_in = embedded.active(settings) and embedded.problem() is None
    return [name for name in task_type.requires
            if not getattr(settings, name, None) and not (stands_in and name in LLM_SETTINGS)]


def needs_llm(task_type: TaskType) -> bool:
    return any(name in LLM_SETTINGS for name in task_type.requires)


def unavailable_reason(task_type: TaskType, settings: Settings) -> str | None:
    """Why `task_type` cannot run here, saying what to set; None when it can."""
    unset = missing(task_type, settings)
    if not unset:
        return None
    names = " and ".join(env_name(name) for name in unset)
    if all(name in LLM_SETTINGS for name in unset):
        if embedded.active(settings):
            return f"{task_type.name} needs an LLM endpoint, and {embedded.problem()}"
        return (f"{task_type.name} needs an LLM endpoint: set {names} (and TASKDECK_LLM_API_KEY if the endpoint "
                "needs a key), then restart the workers and the dashboard")
    return f"{task_type.name} needs settings that are not set: {names}"


def require_llm(settings: Settings) -> None:
    """In a worker, before its first LLM call: an endpoint is set, or the embedded demo model stands in (its
    URL is then written into `settings`, embedded.adopt); else fail the job at once, as no retry can help."""
    unset = [env_name(name) for name in LLM_SETTINGS if not getattr(settings, name)]
    if not unset:
        return
    if embedded.active(settings):
        embedded.adopt(settings)
        return
    raise Fatal(f"this worker has no LLM endpoint: set {' and '.join(unset)} in the workers' environment "
                "and restart them, then retry the job")


async def tokens_used(redis: Redis, prefix: str, user: str, now: float | None = None) -> int:
    """LLM tokens (in + out) `user`'s jobs used in the current clock hour."""
    bucket = Keys(prefix).metrics("1h", bucket_start("1h", now or time.time()))
    raw = await redis.hget(bucket, f"llm_tokens:user:{user}")  # type: ignore[misc]  # redis-py types replies `Awaitable[T] | T` for both clients
    return int(float(raw or 0))


async def check(store: Store, task_type: TaskType, user: str, org: str = "") -> None:
    """Raise Unavailable or LimitExceeded when `user` (of `org`) may not submit `task_type` now."""
    settings = store.settings
    reason = unavailable_reason(task_type, settings)
    if reason:
        raise Unavailable(reason)
    if not needs_llm(task_type):
        return
    now = time.time()
    async with store.guard("nothing was submitted"):
        capped = await spend.first_spent(store.redis, settings, user, org, now)
    if capped:
        raise LimitExceeded(capped.message, retry_after_s=math.ceil(capped.until.timestamp() - now))
    quota = settings.llm_user_tokens_per_hour
    if not quota:
        return
    async with store.guard("nothing was submitted"):
        used = await tokens_used(store.redis, settings.prefix, user, now)
    if used >= quota:
        reset = datetime.fromtimestamp((now // 3600 + 1) * 3600, UTC)
        raise LimitExceeded(
            f"{user} has used {used:,} of the {quota:,} LLM tokens allowed per hour; submit again after "
            f"{reset:%H:%M} UTC, or ask an admin to raise TASKDECK_LLM_USER_TOKENS_PER_HOUR",
            retry_after_s=math.ceil(reset.timestamp() - now),
        )
