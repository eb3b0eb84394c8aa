"""The event stream `{prefix}events`, read forward from a position: what notifications are built on.

Every transition appends one entry (lua/transition.lua: job, type, user, status, event, then the
transition's own fields); the stream is capped at about `events_maxlen` entries.
"""
from __future__ import annotations

from datetime import datetime, timezone

from pydantic import BaseModel, Field

from .store import Store

START = "0-0"
BASE_FIELDS = ("job", "type", "user", "status", "event")


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
        return datetime.fromtimestamp(int(self.id.split("-")[0]) / 1000, timezone.utc)


def event(entry_id: str, fields: dict[str, str]) -> Event:
    base = {name: fields.get(name, "") for name in BASE_FIELDS}
    return Event(id=entry_id, **base, extra={k: v for k, v in fields.items() if k not in BASE_FIELDS})


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
