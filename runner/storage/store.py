"""Taskdeck's Redis data layer: job records, their indexes and every guarded change to them.

Every change to a record goes through one Lua script (lua/transition.lua) so that the record, its
indexes, metric buckets, the event stream and ARQ's own keys never disagree, even for a moment.
The scripts spell no key name, status or TTL: `render` writes in Python's own (keys.py, models.py),
a TransitionSpec is what a change asks for, and `outcome` decodes what the script answers.
"""
from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from enum import IntEnum
from functools import cache, partial
from importlib.resources import files
from typing import Any, Literal, NamedTuple, NotRequired, TypedDict
from urllib.parse import urlsplit, urlunsplit

import orjson
from pydantic_core import to_jsonable_python
from redis import Redis as SyncRedis
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff, ExponentialBackoff
from redis.commands.core import AsyncScript

from .. import queues
from ..errors import NotReplicated, RedisUnavailable
from ..models import LIST_FIELDS, TERMINAL, Attempt, Job, JobStatus, Priority
from ..queues import DEFAULT as DEFAULT_QUEUE
from ..settings import Settings
from . import sentinel
from .keys import BUCKET_SECONDS, BUCKET_TTL_S, PENDING, Keys, lua_concat, lua_value

ABORT_MAX_AGE_MS = 3_600_000
# Store's scripts, each the lua/ files it is made of (parking.lua: the unpark that transition and release share).
SCRIPTS = {"transition": ("parking", "transition"), "claim": ("claim",), "lease": ("lease",),
           "release": ("parking", "release")}
ATTEMPT_FIELD = "attempt:"
LIST_FIELD_NAMES = list(LIST_FIELDS)


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


def unavailable(settings: Settings, error: Exception, what: str) -> RedisUnavailable:
    if settings.redis_sentinels:
        return RedisUnavailable(
            f"job queue unavailable: Redis is failing over or down: cannot reach {sentinel.where(settings)} "
            f"({error}); {what}. Try again in a few seconds; if it lasts, check the sentinels' logs.")
    return RedisUnavailable(
        f"job queue unavailable: cannot reach Redis at {redacted(settings.url)} ({error}); {what}. "
        "Start it with `python -m runner up` or point REDIS_URL at a running Redis."
    )


def riding_out(settings: Settings) -> dict[str, Any]:
    """A client's retries while a failover lasts (TASKDECK_REDIS_FAILOVER_WAIT_S): none by default, so a
    call fails fast with RedisUnavailable. Through sentinels, one at once: a pooled connection to a primary
    that is gone fails, and its retry connects to the one the sentinels name now."""
    tries = int(settings.redis_failover_wait_s / FAILOVER_STEP_S) or (1 if settings.redis_sentinels else 0)
    if not tries:
        return {}
    pause = FAILOVER_STEP_S if settings.redis_failover_wait_s else 0
    return {"retry": Retry(ConstantBackoff(pause), retries=tries), "retry_on_error": RECONNECT_ERRORS}


FAILOVER_STEP_S = 0.25


def connect(settings: Settings, resilient: bool = False) -> Redis:
    """A client fails fast (RedisUnavailable). A worker (`resilient`) waits for Redis to come back; it
    has no per-command timeout (on Python 3.11 that costs a task per command) and finds a dead peer
    through TCP keepalive instead. With TASKDECK_REDIS_SENTINELS, the primary the sentinels name."""
    options: dict[str, Any] = (
        {"retry": reconnecting(), "retry_on_error": RECONNECT_ERRORS, "socket_keepalive": True,
         "socket_keepalive_options": KEEPALIVE}
        if resilient else {"socket_timeout": settings.redis_timeout_s, **riding_out(settings)}
    )
    options.update(decode_responses=True, health_check_interval=30,
                   socket_connect_timeout=min(2.0, settings.redis_timeout_s))
    if settings.redis_sentinels:
        return sentinel.primary(settings, **options)
    if settings.url.startswith("rediss://"):
        options["ssl_check_hostname"] = True
    client: Redis = Redis.from_url(settings.url, **options)
    return client


class Call(NamedTuple):
    keys: list[str]
    args: list[Any]
    future: asyncio.Future[Any]
    replicated: bool  # wait until TASKDECK_REDIS_MIN_REPLICAS replicas have it


class Batched:
    """A Lua script whose calls made in one turn of the event loop go to Redis as one pipeline.

    A worker starts and finishes many jobs at once (a claim of 500 jobs, a wave of them ending);
    one round trip per call would cost each its own send, read and wake-up. A call made `replicated`
    returns (reply, replicas that have it): WAIT goes at the end of the same pipeline, since it waits for
    the writes of its own connection.
    """

    def __init__(self, redis: Redis, script: AsyncScript, replicas: int = 0, wait_ms: int = 1000) -> None:
        self.redis, self.script, self.replicas, self.wait_ms = redis, script, replicas, wait_ms
        self.waiting: list[Call] = []
        self.sending: set[asyncio.Task[None]] = set()

    async def __call__(self, keys: list[str], args: list[Any], replicated: bool = False) -> Any:
        loop = asyncio.get_running_loop()
        if not self.waiting:
            loop.call_soon(self.send)
        future = loop.create_future()
        self.waiting.append(Call(keys, args, future, replicated and self.replicas > 0))
        return await future

    def send(self) -> None:
        batch, self.waiting = self.waiting, []
        single = len(batch) == 1 and not batch[0].replicated
        task = asyncio.ensure_future(self.one(batch[0]) if single else self.many(batch))
        self.sending.add(task)  # the loop holds tasks weakly: an unreferenced one may vanish mid-flight
        task.add_done_callback(self.sending.discard)

    async def one(self, call: Call) -> None:
        try:
            settle(call.future, await self.script(keys=call.keys, args=call.args))
        except Exception as e:
            settle(call.future, e)

    async def many(self, batch: list[Call]) -> None:
        results = await self.piped(batch)
        lost = [n for n, result in enumerate(results) if isinstance(result, redis_errors.NoScriptError)]
        if lost:  # Redis restarted, flushed its scripts, or promoted a replica that never ran this one
            try:
                await self.redis.script_load(self.script.script)
                again = await self.piped([batch[n] for n in lost])
            except Exception as e:
                again = [e] * len(lost)
            for n, result in zip(lost, again, strict=True):
                results[n] = result
        for call, result in zip(batch, results, strict=True):
            settle(call.future, result)

    async def piped(self, batch: list[Call]) -> list[Any]:
        wait = any(call.replicated for call in batch)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for call in batch:
                    pipe.evalsha(self.script.sha, len(call.keys), *call.keys, *call.args)
                if wait:
                    pipe.execute_command("WAIT", self.replicas, self.wait_ms)
                results: list[Any] = await pipe.execute(raise_on_error=False)
        except Exception as e:
            return [e] * len(batch)
        if not wait:
            return results
        acked = results.pop()
        return [(result, acked) if call.replicated and not isinstance(result, Exception) else result
                for call, result in zip(batch, results, strict=True)]


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
    queue: str = DEFAULT_QUEUE  # the named queue it was claimed from


class Claimed(NamedTuple):
    """What one poll took (lua/claim.lua): the claimed jobs in queue order, and every id asked to abort."""

    claims: list[Claim]
    aborts: list[str]


def claimed(reply: list[Any], served: list[str]) -> Claimed:
    """lua/claim.lua's reply {{{id, score, {field, value, ...}, queue's place}, ...}, {abort id, ...}} as
    Claimed; `served`: the named queues in the order the claim gave them."""
    jobs, aborts = reply
    return Claimed([Claim(job_id, int(float(score)), dict(zip(raw[::2], raw[1::2], strict=True)), served[place - 1])
                    for job_id, score, raw, place in jobs], aborts)


Lease = Literal["renew", "release"]


class Who(TypedDict):
    """The owner fields of a record, which never change: passed along so that the script need not read them."""

    type: str
    user: str
    priority: str
    org: str


class Create(Who):
    """A new record: its score in the indexes (queued_at), and [key, seconds] of its idempotency key."""

    score: float
    idempotency: NotRequired[list[str | int]]


class Audit(TypedDict):
    action: str
    by: str


# One change of one record, as lua/transition.lua runs it (transitions.py builds them; JSON on the wire).
TransitionSpec = TypedDict("TransitionSpec", {
    # the guard: the change is refused unless every part given holds
    "create": Create,  # the record does not exist yet
    "from": list[str],  # its status is one of these
    "match": dict[str, Any],  # these fields have these values
    "unless": str,  # this field is unset
    "absent": list[str],  # none of these keys exists
    "not_in": list[str],  # the job is in none of these sorted sets
    "rate": list[str | int],  # [key, most admissions, window s]: one more admission in a sliding window
    "limits": dict[str, int | None],  # running limits by kind (user, org, type, global): parked when one is full
    "queued_score": int,  # where a parked job goes back in ARQ's queue (else its score there now)
    # the change
    "who": Who,
    "delete": bool,  # the record and its index entries
    "set": dict[str, str],  # fields, JSON-encoded
    "incr": dict[str, int],
    "status": JobStatus,
    "metrics": dict[str, float],  # counters added to the metric buckets
    "event": dict[str, Any],  # the fields of the entry in the event stream
    "audit": Audit,
    "calls": list[list[Any]],  # Redis commands that happen with it (ARQ's keys)
    "wake": bool,  # wake the workers up
    "retention": float,  # seconds a finished record is kept (Store.apply fills it in)
    "maxlen": int,  # of the event and audit streams (Store.apply fills it in)
}, total=False)


class Reply(IntEnum):
    """What lua/transition.lua did, the first element of its reply (REPLY, written in by `render`)."""

    refused = 0
    applied = 1
    parked = 2
    rate = 3
    duplicate = 4


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one transition did (decoded by `outcome`).

    applied        the change was written
    status         the status before the change, or now if refused; "" when there is no record
    parked         refused for now: a running limit is full, and the job waits off the queue
    retry_after_s  refused: the hourly admissions (spec `rate`) are used up; seconds until one frees
    first_id       refused: the create's idempotency key was used first by this job
    short          applied, but fewer replicas than TASKDECK_REDIS_MIN_REPLICAS confirmed it in time
                   (apply's `replicated`): the message to give, naming the job
    """

    applied: bool
    status: str = ""
    parked: bool = False
    retry_after_s: int | None = None
    first_id: str | None = None
    short: str | None = None

    def confirmed(self, job_id: str) -> Outcome:
        """This outcome, or NotReplicated when the change to `job_id` may not survive a failover (for callers
        that must tell whoever asked for it)."""
        if self.short:
            raise NotReplicated(self.short, job_id)
        return self


def outcome(reply: list[Any]) -> Outcome:
    """lua/transition.lua's reply {code, status, detail} as an Outcome: the one place that reads it."""
    code, status, detail = Reply(int(reply[0])), str(reply[1]), reply[2]
    if code is Reply.rate:
        return Outcome(False, status, retry_after_s=int(detail))
    if code is Reply.duplicate:
        return Outcome(False, status, first_id=str(detail))
    return Outcome(code is Reply.applied, status, parked=code is Reply.parked)


def transition_args(spec: TransitionSpec, at: float) -> list[str]:
    """lua/transition.lua's ARGV: the time of the change (epoch seconds) and the spec."""
    return [repr(at), orjson.dumps(spec).decode()]


LUA_CONSTANTS: dict[str, object] = {
    "STATUS": {status.name: status.value for status in JobStatus},
    "STATUSES": [status.value for status in JobStatus],
    "TERMINAL": frozenset(status.value for status in TERMINAL),
    "PENDING": frozenset(status.value for status in PENDING),
    "PRIORITIES": [priority.value for priority in Priority],
    "BUCKETS": [{"resolution": name, "seconds": size, "ttl": BUCKET_TTL_S[name]}
                for name, size in BUCKET_SECONDS.items()],
    "REPLY": {reply.name: reply.value for reply in Reply},
    "DEFAULT_QUEUE": DEFAULT_QUEUE,
}


def constant(match: re.Match[str]) -> str:
    """`REPLY.applied` as its value's literal, `TERMINAL` as its table's."""
    value = LUA_CONSTANTS[match.group(1)]
    if match.group(2):
        assert isinstance(value, dict)
        value = value[match.group(2)]
    literal = lua_value(value)
    return f"({literal})" if literal.startswith("{") else literal  # `({...})[new]`: Lua indexes no bare constructor


def arguments(text: str, start: int) -> tuple[list[str], int]:
    """The comma-separated Lua expressions of the call whose "(" is at `text[start]`, and the index after
    its ")": nesting and quoted strings are skipped over."""
    args: list[str] = []
    depth, begin, i, quote = 0, start + 1, start, ""
    while True:
        char = text[i]
        if quote:
            i += 2 if char == "\\" else 1
            quote = "" if char == quote else quote
            continue
        if char in "'\"":
            quote = char
        elif char in "({[":
            depth += 1
        elif char in ")}]":
            depth -= 1
            if depth == 0:
                return [*args, text[begin:i].strip()] if args or text[begin:i].strip() else [], i + 1
        elif char == "," and depth == 1:
            args.append(text[begin:i].strip())
            begin = i + 1
        i += 1


def builders(keys: Keys, text: str) -> str:
    """Every `K.name(args)` in `text` as the concatenation it builds (`lua_concat`), inner calls first."""
    out, at = [], 0
    for match in re.finditer(r"\bK\.(\w+)\(", text):
        if match.start() < at:
            continue  # inside a call already written
        args, at_end = arguments(text, match.end() - 1)
        out += [text[at:match.start()], lua_concat(getattr(keys, match.group(1)), [builders(keys, a) for a in args])]
        at = at_end
    return "".join(out) + text[at:]


def key(keys: Keys, match: re.Match[str]) -> str:
    """`K.all` as its literal."""
    return lua_value(getattr(keys, match.group(1)))


def render(keys: Keys, source: str) -> str:
    """`source` with what Python holds (keys.py, models.py) written in where it is used: a key (`K.all`) and a
    constant (`REPLY.applied`, `STATUS.failed`) as its literal, a key builder (`K.job(id)`) as a
    concatenation, a table (`TERMINAL`, `BUCKETS`) as its constructor. Nothing is built on a call that does
    not use it: a table of every name built on each call cost about 2 µs, a third of a transition's own
    time. Comments go; lines keep their numbers, so a Redis error names the line in `source`."""
    code = re.sub(r"""('(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*")|--[^\n]*""", lambda m: m.group(1) or "", source)
    body = re.sub(r"\bK\.(\w+)\b(?!\()", partial(key, keys), code)
    names = "|".join(LUA_CONSTANTS)
    return re.sub(rf"\b({names})\b(?:\.(\w+))?", constant, builders(keys, body))


@cache
def script(prefix: str, queue: str, *names: str) -> str:
    """lua/<name>.lua for each of `names`, in order, with Python's names written in (`render`): one text
    per key prefix and queue."""
    source = "\n".join(files("runner.storage").joinpath(f"lua/{name}.lua").read_text() for name in names)
    return render(Keys(prefix, queue), source)


class Store:
    """Reads and guarded writes of job records over one asyncio Redis connection pool."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.prefix, settings.queue_name)
        scripts = {name: script(self.keys.prefix, self.keys.queue, *parts) for name, parts in SCRIPTS.items()}
        self._transition = Batched(redis, redis.register_script(scripts["transition"]), settings.redis_min_replicas,
                                   int(settings.redis_wait_timeout_s * 1000))
        self._claim = redis.register_script(scripts["claim"])
        self._lease = redis.register_script(scripts["lease"])
        self._release = redis.register_script(scripts["release"])

    @asynccontextmanager
    async def guard(self, what: str = "nothing was written") -> AsyncIterator[None]:
        """Turn a lost or refused Redis connection into one clear RedisUnavailable."""
        try:
            yield
        except UNREACHABLE as e:
            raise unavailable(self.settings, e, what) from None

    async def apply(self, job_id: str, spec: TransitionSpec, now: datetime | None = None,
                    replicated: bool = False) -> Outcome:
        """Run one guarded change (see lua/transition.lua). `replicated`: return once
        TASKDECK_REDIS_MIN_REPLICAS replicas have it, or with `short` set when they did not in time."""
        spec.setdefault("retention", self.settings.retention_days * 86400)
        spec.setdefault("maxlen", self.settings.events_maxlen)
        args = transition_args(spec, now.timestamp() if now else time.time())
        reply = await self._transition(keys=[self.keys.job(job_id)], args=args, replicated=replicated)
        wanted = self._transition.replicas if replicated else 0
        if not wanted:
            return outcome(reply)
        reply, acked = reply
        result = outcome(reply)
        if not result.applied or acked >= wanted:
            return result
        return replace(result, short=f"job {job_id}: the change was made on the Redis primary but reached {acked} "
                       f"of {wanted} replicas within {self.settings.redis_wait_timeout_s:g} s, so a failover now "
                       f"could undo it; check it with `python -m runner show {job_id}`")

    async def claim(self, owner: str, free: Mapping[str, int], scan: int) -> Claimed:
        """Due jobs taken for `owner`, up to `free[queue]` of each named queue, and the ids asked to abort
        (see lua/claim.lua)."""
        now_ms = int(time.time() * 1000)
        served = list(free)
        args: list[str | int] = [now_ms, scan, owner, now_ms - ABORT_MAX_AGE_MS]
        for name in served:
            args += [free[name], self.lease_ms(name)]
        keys = [self.keys.abort, *(self.keys.arq_queue(name) for name in served)]
        return claimed(await self._claim(keys=keys, args=args), served)

    def lease_ms(self, queue: str) -> int:
        return int(queues.lease_s(self.settings, queue) * 1000)

    async def leases(self, action: Lease, owner: str, jobs: Mapping[str, str], client: Any = None) -> None:
        """`renew` or `release` `owner`'s leases on `jobs` (job id -> its named queue; lua/lease.lua)."""
        args: list[str | int] = [action, owner, int(time.time() * 1000)]
        for job_id, queue in jobs.items():
            args += [job_id, self.keys.arq_queue(queue), self.lease_ms(queue)]
        await self._lease(args=args, client=client)

    async def release_parked(self, kind: str, name: str, client: Any = None) -> None:
        """Every job waiting on the running limit `kind`:`name` back to the queue (lua/release.lua), by
        the same unpark as a transition's; `client`: a pipeline that also changes the limit."""
        await self._release(args=[kind, name], client=client)

    async def release(self, job_id: str, owner: str, queue: str) -> None:
        """Give up a claim that no transition ended: the job is due again at once."""
        await self.leases("release", owner, {job_id: queue})

    async def drop(self, job_id: str, owner: str, queue: str) -> None:
        """Take a claimed job off ARQ for good: its record is finished or gone, so there is nothing to run."""
        async with self.redis.pipeline(transaction=True) as pipe:
            await self.leases("release", owner, {job_id: queue}, client=pipe)
            pipe.zrem(self.keys.arq_queue(queue), job_id)
            pipe.zrem(self.keys.abort, job_id)
            pipe.delete(self.keys.arq_job(job_id), self.keys.arq_retry(job_id))
            await pipe.execute()

    async def load(self, job_id: str) -> Job | None:
        raw = await self.redis.hgetall(self.keys.job(job_id))  # type: ignore[misc]  # redis-py types replies `Awaitable[T] | T` for both clients
        return decode(raw) if raw else None

    async def status(self, job_id: str) -> JobStatus | None:
        raw = await self.redis.hget(self.keys.job(job_id), "status")  # type: ignore[misc]  # redis-py types replies `Awaitable[T] | T` for both clients
        return JobStatus(orjson.loads(raw)) if raw else None

    async def load_many(self, ids: Sequence[str]) -> list[Job]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(self.keys.job(job_id), LIST_FIELD_NAMES)
            rows = await pipe.execute()
        jobs = []
        for row in rows:
            if row[0] is not None:
                raw = {name: value for name, value in zip(LIST_FIELDS, row, strict=True) if value is not None}
                jobs.append(decode(raw))
        return jobs

    async def take_duty(self, name: str, every_s: float, holder: str = "1") -> bool:
        """True for one caller of all every `every_s` seconds, for work that one worker does for all
        (`SET {prefix}duty:<name> NX PX`); `holder` is the value the key keeps meanwhile."""
        key = self.keys.duty(name)
        return bool(await self.redis.set(key, holder, nx=True, px=int(every_s * 1000)))


def blocking(settings: Settings) -> SyncRedis:
    """A plain blocking Redis client, for the readers that pages and scripts call."""
    options: dict[str, Any] = {"decode_responses": True, "socket_timeout": settings.redis_timeout_s,
                               "socket_connect_timeout": min(2.0, settings.redis_timeout_s)}
    if settings.redis_sentinels:
        return sentinel.blocking_primary(settings, **options)
    return SyncRedis.from_url(settings.url, **options)
