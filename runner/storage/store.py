"""Taskdeck's Redis data layer: job records, their indexes and every guarded change to them.

Every change to a record goes through one Lua script (lua/transition.lua) so that the record, its
indexes, metric buckets, the event stream and ARQ's own keys never disagree, even for a moment.
"""
from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from importlib.resources import files
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

import orjson
from pydantic_core import to_jsonable_python
from redis import Redis as SyncRedis
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript

from ..errors import RedisUnavailable
from .keys import Keys
from ..models import LIST_FIELDS, Attempt, Job, JobStatus
from ..settings import Settings

TRANSITION = files("runner.storage").joinpath("lua/transition.lua").read_text()
CLAIM = files("runner.storage").joinpath("lua/claim.lua").read_text()
LEASE = files("runner.storage").joinpath("lua/lease.lua").read_text()
ABORT_MAX_AGE_MS = 3_600_000
ATTEMPT_FIELD = "attempt:"


def dumps(value: Any) -> str:
    return orjson.dumps(value, default=to_jsonable_python).decode()


def encode(fields: dict[str, Any]) -> dict[str, str]:
    return {name: dumps(value) for name, value in fields.items()}


def decode(raw: dict[str, str]) -> Job:
    values = {k: orjson.loads(v) for k, v in raw.items() if not k.startswith(ATTEMPT_FIELD)}
    attempts = [Attempt.model_validate_json(v) for k, v in raw.items() if k.startswith(ATTEMPT_FIELD)]
    values["attempt_log"] = sorted(attempts, key=lambda a: a.number)
    return Job.model_validate(values)


def redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


RECONNECT_ERRORS = [redis_errors.ConnectionError, redis_errors.TimeoutError, OSError]


def reconnecting() -> Retry:
    """Retry forever with backoff up to 2 s: how workers ride out a Redis restart."""
    return Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=-1)


KEEPALIVE = {socket.TCP_KEEPIDLE: 10, socket.TCP_KEEPINTVL: 5, socket.TCP_KEEPCNT: 3}


UNREACHABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)


def unavailable(url: str, error: Exception, what: str) -> RedisUnavailable:
    return RedisUnavailable(
        f"job queue unavailable: cannot reach Redis at {redacted(url)} ({error}); {what}. "
        "Start it with `python -m runner up` or point REDIS_URL at a running Redis."
    )


def connect(settings: Settings, resilient: bool = False) -> Redis:
    """A client fails fast (RedisUnavailable). A worker (`resilient`) waits for Redis to come back; it
    has no per-command timeout (on Python 3.11 that costs a task per command) and finds a dead peer
    through TCP keepalive instead."""
    options: dict[str, Any] = (
        {"retry": reconnecting(), "retry_on_error": RECONNECT_ERRORS, "socket_keepalive": True,
         "socket_keepalive_options": KEEPALIVE}
        if resilient else {"socket_timeout": settings.redis_timeout_s}
    )
    if settings.url.startswith("rediss://"):
        options["ssl_check_hostname"] = True
    return Redis.from_url(settings.url, decode_responses=True, health_check_interval=30,
                          socket_connect_timeout=min(2.0, settings.redis_timeout_s), **options)


class Batched:
    """A Lua script whose calls made in one turn of the event loop go to Redis as one pipeline.

    A worker starts and finishes many jobs at once (a claim of 500 jobs, a wave of them ending);
    one round trip per call would cost each its own send, read and wake-up.
    """

    def __init__(self, redis: Redis, script: AsyncScript) -> None:
        self.redis, self.script = redis, script
        self.waiting: list[tuple[list[str], list[Any], asyncio.Future[Any]]] = []
        self.sending: set[asyncio.Task[None]] = set()

    async def __call__(self, keys: list[str], args: list[Any]) -> Any:
        loop = asyncio.get_running_loop()
        if not self.waiting:
            loop.call_soon(self.send)
        future = loop.create_future()
        self.waiting.append((keys, args, future))
        return await future

    def send(self) -> None:
        batch, self.waiting = self.waiting, []
        task = asyncio.ensure_future(self.one(*batch[0]) if len(batch) == 1 else self.many(batch))
        self.sending.add(task)  # the loop holds tasks weakly: an unreferenced one may vanish mid-flight
        task.add_done_callback(self.sending.discard)

    async def one(self, keys: list[str], args: list[Any], future: asyncio.Future[Any]) -> None:
        try:
            settle(future, await self.script(keys=keys, args=args))
        except Exception as e:
            settle(future, e)

    async def many(self, batch: list[tuple[list[str], list[Any], asyncio.Future[Any]]]) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for keys, args, _ in batch:
                    pipe.evalsha(self.script.sha, len(keys), *keys, *args)
                results = await pipe.execute(raise_on_error=False)
        except Exception as e:
            results = [e] * len(batch)
        for (keys, args, future), result in zip(batch, results):
            if isinstance(result, redis_errors.NoScriptError):
                await self.one(keys, args, future)  # Redis restarted or flushed its scripts: loads it again
            else:
                settle(future, result)


def settle(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


class Claim(NamedTuple):
    job_id: str
    score: int
    record: dict[str, str]


class Store:
    """Reads and guarded writes of job records over one asyncio Redis connection pool."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.prefix, settings.queue_name)
        self._transition = Batched(redis, redis.register_script(TRANSITION))
        self._claim = redis.register_script(CLAIM)
        self._lease = redis.register_script(LEASE)

    @asynccontextmanager
    async def guard(self, what: str = "nothing was written") -> AsyncIterator[None]:
        """Turn a lost or refused Redis connection into one clear RedisUnavailable."""
        try:
            yield
        except UNREACHABLE as e:
            raise unavailable(self.settings.url, e, what) from None

    async def apply(self, job_id: str, spec: dict[str, Any], now: datetime | None = None) -> tuple[bool, str]:
        """Run one guarded change (see lua/transition.lua); returns (applied, status before)."""
        spec.setdefault("retention", self.settings.retention_days * 86400)
        spec.setdefault("maxlen", self.settings.events_maxlen)
        spec.setdefault("queue", self.keys.queue)
        at = now.timestamp() if now else time.time()
        args = [self.keys.prefix, repr(at), orjson.dumps(spec).decode()]
        applied, status = await self._transition(keys=[self.keys.job(job_id)], args=args)
        return bool(applied), status

    async def claim(self, owner: str, free: int, scan: int) -> tuple[list[Claim], list[str]]:
        """Up to `free` due jobs taken for `owner` (see lua/claim.lua), and the ids asked to abort."""
        now_ms = int(time.time() * 1000)
        args = [now_ms, free, scan, int(self.settings.lease_s * 1000), owner, self.keys.arq_in_progress(""),
                self.keys.job(""), now_ms - ABORT_MAX_AGE_MS]
        claimed, aborts = await self._claim(keys=[self.keys.queue, self.keys.abort], args=args)
        return [Claim(job_id, int(float(score)), dict(zip(raw[::2], raw[1::2]))) for job_id, score, raw in claimed], aborts

    async def leases(self, action: str, owner: str, job_ids: Iterable[str], client: Any = None) -> None:
        """`renew` or `release` `owner`'s leases on `job_ids` (lua/lease.lua)."""
        args = [action, owner, int(time.time() * 1000), int(self.settings.lease_s * 1000),
                self.keys.arq_in_progress(""), *job_ids]
        await self._lease(keys=[self.keys.queue], args=args, client=client)

    async def release(self, job_id: str, owner: str) -> None:
        """Give up a claim that no transition ended: the job is due again at once."""
        await self.leases("release", owner, [job_id])

    async def drop(self, job_id: str, owner: str) -> None:
        """Take a claimed job off ARQ for good: its record is finished or gone, so there is nothing to run."""
        async with self.redis.pipeline(transaction=True) as pipe:
            await self.leases("release", owner, [job_id], client=pipe)
            pipe.zrem(self.keys.queue, job_id)
            pipe.zrem(self.keys.abort, job_id)
            pipe.delete(self.keys.arq_job(job_id), self.keys.arq_retry(job_id))
            await pipe.execute()

    async def load(self, job_id: str) -> Job | None:
        raw = await self.redis.hgetall(self.keys.job(job_id))
        return decode(raw) if raw else None

    async def status(self, job_id: str) -> JobStatus | None:
        raw = await self.redis.hget(self.keys.job(job_id), "status")
        return JobStatus(orjson.loads(raw)) if raw else None

    async def load_many(self, ids: Sequence[str]) -> list[Job]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(self.keys.job(job_id), LIST_FIELDS)
            rows = await pipe.execute()
        jobs = []
        for row in rows:
            if row[0] is not None:
                raw = {name: value for name, value in zip(LIST_FIELDS, row) if value is not None}
                jobs.append(decode(raw))
        return jobs

    async def page(
        self,
        statuses: Iterable[str] = (),
        filters: Iterable[str] = (),
        limit: int = 50,
        offset: int = 0,
    ) -> list[str]:
        """Ids newest first: in any of the status indexes (or all jobs), and in every filter index."""
        sources = [self.keys.status(s) for s in statuses] or [self.keys.all]
        filters = list(filters)
        if len(sources) == 1 and not filters:
            return await self.redis.zrevrange(sources[0], offset, offset + limit - 1)
        if len(sources) == 1 and filters:
            sizes = await self._sizes([*sources, *filters])
            ordered = sorted(zip(sizes, [*sources, *filters]))
            sources, filters = [ordered[0][1]], [key for _, key in ordered[1:]]
        wanted, found = offset + limit, []
        batch: list[str] = []
        async for job_id in self._newest(sources):
            batch.append(job_id)
            if len(batch) >= 200:
                found += await self._in_all(batch, filters)
                batch = []
                if len(found) >= wanted:
                    break
        if batch and len(found) < wanted:
            found += await self._in_all(batch, filters)
        return found[offset:wanted]

    async def _sizes(self, keys: Sequence[str]) -> list[int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zcard(key)
            return await pipe.execute()

    async def _in_all(self, ids: list[str], keys: Sequence[str]) -> list[str]:
        """The ids that are members of every one of `keys`, in their order."""
        if not keys:
            return ids
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zmscore(key, ids)
            scores = await pipe.execute()
        return [job_id for i, job_id in enumerate(ids) if all(row[i] is not None for row in scores)]

    async def _newest(self, sources: Sequence[str], chunk: int = 200) -> AsyncIterator[str]:
        """Merge sorted sets newest first, reading each in chunks."""
        buffers: dict[str, list[tuple[str, float]]] = {key: [] for key in sources}
        offsets = dict.fromkeys(sources, 0)
        exhausted: set[str] = set()
        while True:
            for key in sources:
                if not buffers[key] and key not in exhausted:
                    rows = await self.redis.zrevrange(key, offsets[key], offsets[key] + chunk - 1, withscores=True)
                    offsets[key] += len(rows)
                    buffers[key] = list(reversed(rows))
                    if len(rows) < chunk:
                        exhausted.add(key)
            live = [key for key in sources if buffers[key]]
            if not live:
                return
            best = max(live, key=lambda key: buffers[key][-1][1])
            yield buffers[best].pop()[0]


def blocking(settings: Settings) -> SyncRedis:
    """A plain blocking Redis client, for the readers that pages and scripts call."""
    return SyncRedis.from_url(settings.url, decode_responses=True, socket_timeout=settings.redis_timeout_s,
                              socket_connect_timeout=min(2.0, settings.redis_timeout_s))
