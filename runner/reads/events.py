"""The event stream `{prefix}events`, read forward from a position: what notifications are built on.

Every transition appends one entry (lua/transition.lua: job, type, user, status, event, then the
transition's own fields); the stream is capped at about `events_maxlen` entries.
"""
from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from pydantic import BaseModel, Field
from redis.exceptions import ResponseError

from ..errors import InvalidPayload
from ..models import TERMINAL, Job
from ..storage.store import Store

START = "0-0"
BASE_FIELDS = ("job", "type", "user", "status", "event")
TERMINAL_NAMES = frozenset(s.value for s in TERMINAL)
CATCH_UP_MAX = 5000  # entries a resume reads through before a snapshot is the cheaper answer


class Event(BaseModel):
    id: str = Field(description="Stream entry id; pass the last one seen as `after` to read on.")
    job: str
    type: str
    user: str
    status: str
    event: str
    extra: dict[str, str] = Field(default_factory=dict, description="attempt, error, by, step, progress...")

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(int(self.id.split("-")[0]) / 1000, UTC)


def event(entry_id: str, fields: dict[str, str]) -> Event:
    base = {name: fields.get(name, "") for name in BASE_FIELDS}
    return Event(id=entry_id, **base, extra={k: v for k, v in fields.items() if k not in BASE_FIELDS})


class Snapshot(BaseModel):
    """A job's whole record, sent where its events start (or where they were lost to the stream's cap)."""

    id: str = Field(description="The stream position the record is as of: events after it follow.")
    job: Job


class Feed(BaseModel):
    position: str = Field(description="Where the next read starts: the last entry read, seen or filtered out.")
    events: list[Event]


async def after(store: Store, position: str = START, count: int = 500) -> Feed:
    """Up to `count` events after `position`, oldest first (never blocks)."""
    rows = await store.redis.xread({store.keys.events: position}, count=count)
    entries = [event(entry_id, fields) for _, batch in rows for entry_id, fields in batch]
    return Feed(position=entries[-1].id if entries else position, events=entries)


async def last_id(store: Store) -> str:
    """The position of the newest event: reading after it returns only what happens from now on."""
    return (await bounds(store)).newest


def terminal(event: Event) -> bool:
    return event.status in TERMINAL_NAMES


def older(a: str, b: str) -> bool:
    """Whether stream id `a` comes before `b`."""
    return split(a) < split(b)


def split(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def parse_id(text: str) -> str:
    """`text` as a stream id to read after, or InvalidPayload (e.g. a forged Last-Event-ID)."""
    ms, _, seq = text.partition("-")
    parts = (ms, seq) if "-" in text else (ms,)
    if len(text) <= 41 and text.isascii() and all(p.isdigit() and int(p) < 2**64 for p in parts):
        return f"{int(ms)}-{int(seq or 0)}"
    raise InvalidPayload(f"{text[:60]!r} is not an event id (like 1700000000000-0, from an event's `id`)")


@dataclass(frozen=True)
class Bounds:
    """The stream's oldest entry still kept (None when empty) and the newest id it ever gave out."""

    oldest: str | None
    newest: str

    def kept(self, position: str) -> bool:
        """Whether every entry after `position` is still in the stream. The cap trims from the old end,
        so an oldest entry past `position` may have taken some with it (or only `position` itself: then
        a resume costs one needless snapshot)."""
        if self.oldest is None:
            return not older(position, self.newest)
        return not older(position, self.oldest)


def bounds_of(info: object) -> Bounds:
    """Bounds from an XINFO STREAM answer; a missing stream (an error here) has had no entries."""
    if isinstance(info, ResponseError) and "no such key" in str(info):
        return Bounds(None, START)
    if isinstance(info, Exception):
        raise info
    assert isinstance(info, dict)
    first = info.get("first-entry")
    return Bounds(first[0] if first else None, str(info["last-generated-id"]))


async def bounds(store: Store) -> Bounds:
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.xinfo_stream(store.keys.events)
        (info,) = await pipe.execute(raise_on_error=False)
    return bounds_of(info)


async def resume_point(store: Store, last_event_id: str | None) -> str | None:
    """A client's Last-Event-ID as a position to resume after, or InvalidPayload when it is not an id
    or names an entry the stream has not given out yet (a forged or foreign id)."""
    if last_event_id is None:
        return None
    position = parse_id(last_event_id)
    newest = (await bounds(store)).newest
    if older(newest, position):
        raise InvalidPayload(f"event id {position} is newer than the newest event ({newest}); "
                             "resume with an id this stream sent, or without one")
    return position


async def read(store: Store, position: str, block_ms: int | None, count: int) -> tuple[list[Event], bool]:
    """Entries after `position` (waiting up to `block_ms` for one, if given), and whether nothing after
    `position` had been trimmed when they were read: the stream's bounds are read in the same pipeline,
    just after, and trimming only moves the oldest entry forward."""
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.xread({store.keys.events: position}, count=count, block=block_ms)
        pipe.xinfo_stream(store.keys.events)
        rows, info = await pipe.execute(raise_on_error=False)
    if isinstance(rows, Exception):
        raise rows
    entries = [event(entry_id, fields) for _, batch in rows or [] for entry_id, fields in batch]
    return entries, bounds_of(info).kept(position)


async def snapshot(store: Store, job_id: str) -> Snapshot | None:
    """The record as of the newest id the stream has given out: the job's events after it follow."""
    position = (await bounds(store)).newest
    job = await store.load(job_id)
    return Snapshot(id=position, job=job) if job is not None else None


async def snapshot_of(store: Store, job: Job) -> Snapshot:
    """A record read elsewhere (a final job's, from the archive) as of the newest id the stream has given
    out: what a stream of a job that Redis no longer holds sends before it ends."""
    return Snapshot(id=(await bounds(store)).newest, job=job)


class Tail(Protocol):
    """Where a follower's entries come from once it has caught up: the API's one shared reader
    (api/streams.py), or a blocking read of its own (Direct)."""

    async def next(self, position: str, timeout_s: float) -> tuple[list[Event], str] | None:
        """The followed job's entries after `position` (a few at or before it may come again), and the
        position read through; ([], position) after `timeout_s` without one; None when entries may
        have been lost (trimmed before they were read): the follower catches up from `position`."""
        ...


@dataclass
class Direct:
    """A Tail of one follower's own: an XREAD BLOCK per wait, so one blocked connection per follower."""

    store: Store
    job_id: str
    count: int = 500

    async def next(self, position: str, timeout_s: float) -> tuple[list[Event], str] | None:
        entries, whole = await read(self.store, position, max(1, int(timeout_s * 1000)), self.count)
        if not whole:
            return None
        return [e for e in entries if e.job == self.job_id], entries[-1].id if entries else position


class Follow:
    """One job as it changes, until it is final: a Snapshot of its record, then each of its events;
    None after every `quiet_s` without one (a chance to send a keep-alive).

    Resuming `after` a position reads what followed it (at most `catch_up_max` entries, without
    blocking) and then hands over to `tail`, which was listening since before the first read, so
    nothing falls between the two. A fresh snapshot replaces what the capped stream has dropped
    after the position, or what would take too long to read. A resume when the job is already final
    sends what remains of its events, then its final record, and ends without waiting. `until` (a
    time.monotonic() deadline) ends the iteration early: `position` then says where to resume."""

    def __init__(self, store: Store, job_id: str, after: str | None, tail: Tail, quiet_s: float = 1.0,
                 until: float | None = None, catch_up_max: int = CATCH_UP_MAX, count: int = 500) -> None:
        self.store, self.job_id, self.tail = store, job_id, tail
        self.position, self.quiet_s, self.until = after, quiet_s, until
        self.catch_up_max, self.count = catch_up_max, count
        self.final = False
        self.budget = catch_up_max

    def __aiter__(self) -> AsyncGenerator[Snapshot | Event | None, None]:
        return self.items()

    def expired(self) -> bool:
        return self.until is not None and time.monotonic() >= self.until

    def wait_s(self) -> float:
        left = self.quiet_s if self.until is None else self.until - time.monotonic()
        return max(0.001, min(self.quiet_s, left))

    async def items(self) -> AsyncGenerator[Snapshot | Event | None, None]:
        async for entry in self.resumed_final():
            yield entry
        behind = True
        while not self.final and not self.expired():
            if self.position is None:
                fresh = await self.snapshot()
                if fresh is None:
                    return
                behind = True
                yield fresh
                continue
            got = await (self.catch_up() if behind else self.tail.next(self.position, self.wait_s()))
            if got is None:
                self.position = None if behind else self.position
                behind, self.budget = True, self.catch_up_max
                continue
            entries, through = got
            behind = behind and through != self.position
            news = [e for e in entries if older(self.position, e.id)]
            for entry in news:
                self.position, self.final = entry.id, terminal(entry)
                yield entry
                if self.final:
                    return
            if older(self.position, through):
                self.position = through
            if not news and not behind:
                yield None

    async def resumed_final(self) -> AsyncGenerator[Event, None]:
        """On a resume after a job that is final now: what remains of its events; its final record follows."""
        if self.position is not None and await self.finished():
            async for entry in self.remaining():
                yield entry
            self.position = None

    async def snapshot(self) -> Snapshot | None:
        fresh = await snapshot(self.store, self.job_id)
        if fresh is not None:
            self.position, self.final = fresh.id, fresh.job.status.terminal
            self.budget = self.catch_up_max
        return fresh

    async def finished(self) -> bool:
        status = await self.store.status(self.job_id)
        return status is None or status.terminal

    async def remaining(self) -> AsyncGenerator[Event, None]:
        """A final job's events after the position, up to the stream's end (its terminal events too:
        a retried job has several), or as far as they are kept and the budget goes."""
        while (got := await self.catch_up()) is not None and got[1] != self.position:
            entries, self.position = got
            for entry in entries:
                yield entry

    async def catch_up(self) -> tuple[list[Event], str] | None:
        """The job's entries in the next stretch after the position, read without blocking; None when
        some were trimmed, or when the budget is spent (a snapshot is then cheaper than reading on)."""
        position = self.position or START
        if self.budget <= 0:
            return None
        entries, whole = await read(self.store, position, None, self.count)
        if not whole:
            return None
        self.budget -= len(entries)
        return [e for e in entries if e.job == self.job_id], entries[-1].id if entries else position
