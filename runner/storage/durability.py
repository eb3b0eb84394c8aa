"""Refuse to run production workers on a Redis that can lose jobs (TASKDECK_PRODUCTION=true)."""
from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import ResponseError

SAFE_EVICTION = "noeviction"


async def problems(redis: Redis) -> list[str]:
    """What about this Redis can drop jobs; empty when it is fit for production."""
    try:
        config = {**await redis.config_get("appendonly"), **await redis.config_get("save"),
                  **await redis.config_get("maxmemory-policy")}
    except ResponseError as e:
        return [f"cannot read Redis's configuration ({e}); grant CONFIG GET to the worker's user"]
    found = []
    if config.get("appendonly") != "yes" and not config.get("save"):
        found.append("it keeps no data on disk (appendonly no and no save points): a restart loses every job; "
                     "set appendonly yes")
    if config.get("maxmemory-policy") != SAFE_EVICTION:
        found.append(f"maxmemory-policy is {config.get('maxmemory-policy')}: under memory pressure it can evict "
                     f"job keys; set maxmemory-policy {SAFE_EVICTION}")
    return found
