"""Redis through Sentinel: the primary that TASKDECK_REDIS_SENTINELS name, for every part.

Each connection asks the sentinels where the primary is when it connects, and a connection that finds
its server gone or demoted (READONLY) is dropped, so the next try (a worker's retry policy, a client's
next call) reaches the promoted replica. Lua scripts are loaded again on a NOSCRIPT reply (store.Batched,
redis-py's Script), and pub/sub listeners re-subscribe through their own reconnect loops.
"""
from __future__ import annotations

from typing import Any

from arq.connections import RedisSettings
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelManagedConnection
from redis.backoff import NoBackoff
from redis.sentinel import Sentinel as SyncSentinel

from ..settings import Settings


def hosts(settings: Settings) -> list[tuple[str, int]]:
    """TASKDECK_REDIS_SENTINELS as (host, port) pairs; empty when Sentinel is not used."""
    pairs = []
    for item in filter(None, (part.strip() for part in settings.redis_sentinels.split(","))):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"TASKDECK_REDIS_SENTINELS: {item!r} is not host:port")
        pairs.append((host.strip("[]"), int(port)))
    return pairs


def where(settings: Settings) -> str:
    """How messages name the Redis in use: the sentinels and the master's name."""
    return f"the primary {settings.redis_sentinel_master!r} of sentinels " + ",".join(
        f"{host}:{port}" for host, port in hosts(settings))


def sentinel_options(settings: Settings) -> dict[str, Any]:
    timeout = min(2.0, settings.redis_timeout_s)
    return {"password": settings.redis_sentinel_password, "socket_timeout": timeout,
            "socket_connect_timeout": timeout, "decode_responses": True}


class FailoverConnection(SentinelManagedConnection):
    """A connection that asks the sentinels again on each try. redis-py 5.3 retries the connect to the
    address they gave with the connection's own retry policy: a worker's retries forever, so it would
    knock at a dead primary forever. One try per address here; the retry around it asks again."""

    async def connect_to(self, address: tuple[str, int]) -> None:
        retry, self.retry = self.retry, Retry(NoBackoff(), 0)
        try:
            await super().connect_to(address)  # type: ignore[no-untyped-call]
        finally:
            self.retry = retry


def primary(settings: Settings, **options: Any) -> Redis:
    """An asyncio client of the current primary; `options` are its connections' (store.connect's)."""
    sentinel = Sentinel(hosts(settings), sentinel_kwargs=sentinel_options(settings))  # type: ignore[no-untyped-call]
    client: Redis = sentinel.master_for(settings.redis_sentinel_master, redis_class=Redis,
                                        password=settings.redis_password, connection_class=FailoverConnection,
                                        **options)
    return client


def blocking_primary(settings: Settings, **options: Any) -> SyncRedis:
    # redis-py's synchronous Sentinel has no annotations
    sentinel = SyncSentinel(hosts(settings), sentinel_kwargs=sentinel_options(settings))  # type: ignore[no-untyped-call]
    client: SyncRedis = sentinel.master_for(  # type: ignore[no-untyped-call]
        settings.redis_sentinel_master, redis_class=SyncRedis, password=settings.redis_password, **options)
    return client


def arq_settings(settings: Settings) -> RedisSettings:
    """ARQ's own connection in its sentinel mode. ARQ 0.28 gives a sentinel pool no retry policy and
    the sentinels no password; `arm` adds the first, and sentinels with a password need ARQ's
    pool to be one Taskdeck builds (not done: README names the limit)."""
    return RedisSettings(host=hosts(settings), sentinel=True, sentinel_master=settings.redis_sentinel_master,
                         password=settings.redis_password, conn_timeout=int(min(2.0, settings.redis_timeout_s)) or 1)


async def arm(arq_redis: Redis, **options: Any) -> None:
    """Give ARQ's sentinel pool Taskdeck's retry policy (`options`: retry, retry_on_error), so that a
    worker waits out a failover instead of ending; the connection ARQ opened without it is dropped."""
    arq_redis.connection_pool.connection_kwargs.update(options)
    arq_redis.connection_pool.connection_class = FailoverConnection
    await arq_redis.connection_pool.disconnect()
