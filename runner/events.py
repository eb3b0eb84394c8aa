"""The event stream `{prefix}events`, read forward from a position: what notifications are built on.

Every transition appends one entry (lua/transition.lua: job, type, user, status, event, then the
transition's own fields); the stream is capped at about `events_maxlen` entries.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from .models import TERMINAL, Job
from .store import Store

START = "0-0"
BASE_FIELDS = ("job", "type", "user", "status", "event")
TERMINAL_NAMES = frozenset(s.value for s in TERMINAL)


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
    rows = await store.redis.xrevrange(store.keys.events, count=1)
    return rows[0][0] if rows else START


def terminal(event: Event) -> bool:
    return event.status in TERMINAL_NAMES


async def oldest_id(store: Store) -> str | None:
    rows = await store.redis.xrange(store.keys.events, count=1)
    return rows[0][0] if rows else None


def older(a: str, b: str) -> bool:
    """Whether stream id `a` comes before `b`."""
    ms_a, _, seq_a = a.partition("-")
    ms_b, _, seq_b = b.partition("-")
    return (int(ms_a), int(seq_a or 0)) < (int(ms_b), int(seq_b or 0))


async def resumable(store: Store, position: str) -> bool:
    """Whether nothing after `position` has been trimmed off the capped stream yet."""
    oldest = await oldest_id(store)
    return oldest is None or not older(position, oldest) or position == START


async def of_job(store: Store, job_id: str, position: str, block_ms: int = 1000,
                 count: int = 500) -> AsyncIterator[Event | None]:
    """`job_id`'s events after `position`, oldest first, for as long as the caller reads; None
    after every `block_ms` without one (a chance to send a keep-alive)."""
    while True:
        rows = await store.redis.xread({store.keys.events: position}, count=count, block=block_ms)
        found = False
        for _, batch in rows:
            for entry_id, fields in batch:
                position = entry_id
                if fields.get("job") == job_id:
                    found = True
                    yield event(entry_id, fields)
        if not found:
            yield None
