"""A user's inbox in Redis: their notifications newest first, which are unread, and how many of their
failed jobs' notices came since they last looked.

Per user, under Keys.inbox*: the ids by time (a sorted set), the notifications (a hash of JSON), the
unread ids and the failed-job notices not yet looked at (sorted sets). lua/inbox_add.lua adds one and
trims the inbox to the newest CAP and to the retention; every key expires with the retention.
"""
from __future__ import annotations

import time

from pydantic import BaseModel, Field

from ..errors import InvalidPayload
from ..storage.store import Store
from . import scripts
from .model import Notification

CAP = 500
MAX_IDS = 1000


class InboxItem(Notification):
    read: bool = False


class InboxPage(BaseModel):
    items: list[InboxItem] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass it for the next (older) page; none at the end.")
    unread: int = Field(description="Unread notifications in all.")
    failed_since_looked: int = Field(description="Failed-job notices that came since the inbox was last looked at "
                                     "(its first page read, or everything marked read).")


class InboxCounts(BaseModel):
    unread: int
    failed_since_looked: int


def retention_s(store: Store) -> int:
    return int(store.settings.retention_days * 86400)


async def add(store: Store, user: str, note: Notification) -> bool:
    """Put `note` in `user`'s inbox, unread; False when it held it already."""
    failed = note.kind == "job" and note.event == "failed"
    args = [user, note.id, note.created_at.timestamp(), note.model_dump_json(), "1" if failed else "0", CAP,
            retention_s(store), time.time()]
    return bool(await scripts.run(store, "inbox_add", args))


def cursor_of(score: float, note_id: str) -> str:
    return f"{score!r}:{note_id}"


def parse_cursor(cursor: str) -> tuple[float, str]:
    score, _, note_id = cursor.partition(":")
    try:
        return float(score), note_id
    except ValueError:
        raise InvalidPayload(f"cursor {cursor!r} is not one this inbox gave out") from None


async def page(store: Store, user: str, limit: int = 50, cursor: str | None = None, unread: bool = False,
               look: bool = True) -> InboxPage:
    """A page of `user`'s notifications, newest first (`unread`: the unread ones only). The first page
    (`look`) counts as the user looking: their failed-since-looked count starts again from 0."""
    keys = store.keys
    index = keys.inbox_unread(user) if unread else keys.inbox(user)
    top: float | str = "+inf"
    after = None
    if cursor:
        top, after = parse_cursor(cursor)
    # members of one score come in reverse lexical order: skip those at or before the cursor's
    rows = await store.redis.zrevrangebyscore(index, top, "-inf", start=0, num=limit + 20, withscores=True)
    if after is not None:
        rows = [(m, s) for m, s in rows if s < float(top) or m < after]
    rows = rows[:limit + 1]
    shown, more = rows[:limit], len(rows) > limit
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.hmget(keys.inbox_notes(user), [m for m, _ in shown] or ["-"])
        pipe.zmscore(keys.inbox_unread(user), [m for m, _ in shown] or ["-"])
        pipe.zcard(keys.inbox_unread(user))
        pipe.zcard(keys.inbox_failed(user))
        if look and not cursor:
            pipe.delete(keys.inbox_failed(user))
        notes, unread_scores, unread_count, failed, *_ = await pipe.execute()
    items = [InboxItem.model_validate_json(raw).model_copy(update={"read": flag is None})
             for raw, flag in zip(notes, unread_scores, strict=False) if raw]
    next_cursor = cursor_of(*reversed(shown[-1])) if more and shown else None
    return InboxPage(items=items, next_cursor=next_cursor, unread=unread_count,
                     failed_since_looked=0 if look and not cursor else failed)


async def counts(store: Store, user: str) -> InboxCounts:
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.zcard(store.keys.inbox_unread(user))
        pipe.zcard(store.keys.inbox_failed(user))
        unread, failed = await pipe.execute()
    return InboxCounts(unread=unread, failed_since_looked=failed)


async def mark_read(store: Store, user: str, ids: list[str] | None) -> int:
    """Mark `ids` read (None: all of them, which also counts as looking); the unread count after."""
    keys = store.keys
    if ids is not None and len(ids) > MAX_IDS:
        raise InvalidPayload(f"at most {MAX_IDS} ids at a time")
    async with store.redis.pipeline(transaction=True) as pipe:
        if ids is None:
            pipe.delete(keys.inbox_unread(user), keys.inbox_failed(user))
        elif ids:
            pipe.zrem(keys.inbox_unread(user), *ids)
        pipe.zcard(keys.inbox_unread(user))
        replies = await pipe.execute()
    return int(replies[-1])
