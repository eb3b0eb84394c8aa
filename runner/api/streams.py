"""Event streams of the HTTP API: one reader of the event stream per API process, fanned out.

Each GET /api/jobs/{id}/events used to hold a Redis connection of its own, blocked in XREAD, for as
long as it stayed open. Here one task (Hub.run) reads the stream with XREAD BLOCK and hands each
entry to the open streams following its job, so a thousand followers cost one blocked connection.
A stream catches up from its resume position with reads that never block (events.Follow) after it
has joined the hub, so nothing falls between the two. Streams end when their job is final, or after
`api_stream_max_s` with a `retry:` hint; each user may hold `api_streams_per_user` open at once. A job
that only the archive holds is final: its stream is its archived record as the snapshot, then the end.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

from ..errors import LimitExceeded, RedisUnavailable
from ..models import Job
from ..reads import events
from ..reads.events import Event, Follow, Snapshot
from ..storage.store import Store

logger = logging.getLogger("taskdeck.api")
QUIET_S = 5.0  # a follower's longest wait without news: when it looks at its deadline again
PING_S = 15
RETRY_MS = 1000  # the reconnect delay a stream at its time limit asks for
PENDING_MAX = 1000  # entries waiting for one slow follower before it reads them from Redis instead
RETRY_AFTER_MAX_S = 60
DONE = object()


class Subscriber:
    """One open stream's place at the hub: the entries of its job read since it joined (a events.Tail)."""

    def __init__(self, hub: Hub, job_id: str, user: str) -> None:
        self.hub, self.job_id, self.user = hub, job_id, user
        self.opened = time.monotonic()
        self.pending: list[Event] = []
        self.lost = False
        self.ready = asyncio.Event()

    def push(self, entry: Event) -> None:
        if len(self.pending) >= PENDING_MAX:
            self.lose()
            return
        self.pending.append(entry)
        self.ready.set()

    def lose(self) -> None:
        """Entries may be missing: the follower catches up from Redis on its next call."""
        self.lost, self.pending = True, []
        self.ready.set()

    async def next(self, position: str, timeout_s: float) -> tuple[list[Event], str] | None:
        if not self.pending and not self.lost:
            self.ready.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self.ready.wait()
        if self.lost:
            self.lost = False
            return None
        batch, self.pending = self.pending, []
        through = self.hub.position or position
        return batch, through if events.older(position, through) else position


class Hub:
    """The one reader. Entries reach a Subscriber only if it joined before the hub read them; what
    came earlier its follower reads itself (events.Follow's catch-up)."""

    def __init__(self, store: Store, per_user: int, max_s: float, count: int = 500) -> None:
        self.store, self.per_user, self.max_s, self.count = store, per_user, max_s, count
        self.block_ms = max(1, min(1000, int(store.settings.redis_timeout_s * 500)))  # under the socket timeout
        self.followers: dict[str, set[Subscriber]] = {}
        self.by_user: dict[str, list[Subscriber]] = {}
        self.position: str | None = None
        self.started = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name="taskdeck-event-hub")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    async def run(self) -> None:
        """Read until stopped; a failed read (Redis away) is tried again from the same position."""
        backoff = 0.1
        while True:
            try:
                await self.step()
                backoff = 0.1
            except Exception:
                logger.warning("event hub: reading %s failed; again in %.1f s", self.store.keys.events, backoff,
                               exc_info=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def step(self) -> None:
        if self.position is None:
            self.position = (await events.bounds(self.store)).newest
            self.started.set()
        entries, whole = await events.read(self.store, self.position, self.block_ms, self.count)
        if not whole:
            self.lose_all()
        for entry in entries:
            for subscriber in self.followers.get(entry.job, ()):
                subscriber.push(entry)
        if entries:
            self.position = entries[-1].id

    def lose_all(self) -> None:
        for subscribers in self.followers.values():
            for subscriber in subscribers:
                subscriber.lose()

    async def ready(self) -> None:
        """Wait until the hub knows where it reads from: a follower joining earlier could miss entries."""
        try:
            async with asyncio.timeout(self.store.settings.redis_timeout_s):
                await self.started.wait()
        except TimeoutError:
            raise RedisUnavailable("the event stream cannot be read (Redis unreachable); nothing was "
                                   "streamed, try again shortly") from None

    def join(self, job_id: str, user: str) -> Subscriber:
        """A place for a new stream of `user`'s, or LimitExceeded when they hold their share already."""
        mine = self.by_user.get(user, [])
        if mine and len(mine) >= self.per_user:
            wait = mine[0].opened + self.max_s - time.monotonic()  # when the oldest one ends at the latest
            raise LimitExceeded(f"{user} has {len(mine)} event streams open on this server, the limit "
                                "(TASKDECK_API_STREAMS_PER_USER); close one, or try again when one ends",
                                retry_after_s=max(1, min(RETRY_AFTER_MAX_S, math.ceil(wait))))
        subscriber = Subscriber(self, job_id, user)
        self.by_user.setdefault(user, []).append(subscriber)
        self.followers.setdefault(job_id, set()).add(subscriber)
        return subscriber

    def leave(self, subscriber: Subscriber) -> None:
        followers = self.followers.get(subscriber.job_id, set())
        followers.discard(subscriber)
        if not followers:
            self.followers.pop(subscriber.job_id, None)
        mine = self.by_user.get(subscriber.user, [])
        if subscriber in mine:
            mine.remove(subscriber)
        if not mine:
            self.by_user.pop(subscriber.user, None)


class Stream(EventSourceResponse):
    """An EventSourceResponse that runs `close` however it ends: a client gone before the first byte
    never starts the body, so the body's own clean-up would not run."""

    def __init__(self, content: AsyncIterator[ServerSentEvent], close: Callable[[], Awaitable[None]]) -> None:
        super().__init__(content, ping=PING_S)
        self.close = close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.close()


async def open_stream(hub: Hub, store: Store, job_id: str, user: str, last_event_id: str | None) -> Stream:
    """`job_id`'s events as a response, for a caller who may read the job (the route checked it).
    Errors before the first item (a bad Last-Event-ID, the cap, Redis away) answer as problems."""
    async with store.guard("nothing was streamed"):
        after = await events.resume_point(store, last_event_id)
    await hub.ready()
    subscriber = hub.join(job_id, user)
    follow = Follow(store, job_id, after, subscriber, quiet_s=QUIET_S, until=time.monotonic() + hub.max_s)
    items = aiter(follow)
    try:
        async with store.guard("nothing was streamed"):
            first = await anext(items, None)
    except BaseException:
        hub.leave(subscriber)
        raise

    async def close() -> None:
        hub.leave(subscriber)
        await items.aclose()

    return Stream(frames(first, items, follow, store), close)


async def archived_stream(store: Store, job: Job, last_event_id: str | None) -> Stream:
    """The stream of a job that only the archive holds (the route read it there, for a caller who may see
    it), as a final job's in Redis: its record as the snapshot, then the end; a reconnect gets the record
    again. Last-Event-ID is checked as for any stream; the stream takes no place at the hub."""
    async with store.guard("nothing was streamed"):
        await events.resume_point(store, last_event_id)
        first = await events.snapshot_of(store, job)

    async def only() -> AsyncIterator[ServerSentEvent]:
        yield frame(first)

    async def close() -> None:
        pass

    return Stream(only(), close)


async def frames(first: Snapshot | Event | None, items: AsyncGenerator[Snapshot | Event | None, None], follow: Follow,
                 store: Store) -> AsyncIterator[ServerSentEvent]:
    """The stream's SSE frames; at its time limit (or when Redis fails) a last frame with the position to
    resume from as its id and a `retry:` hint, so an EventSource reconnects and reads on."""
    item: object = first
    while item is not DONE:
        if isinstance(item, Snapshot | Event):
            yield frame(item)
        try:
            async with store.guard():
                item = await anext(items, DONE)
        except RedisUnavailable as e:
            logger.warning("event stream of job %s ended early: %s", follow.job_id, e)
            break
    if not follow.final and follow.position is not None:
        yield ServerSentEvent(id=follow.position, retry=RETRY_MS,
                              comment="time limit of one stream; reconnect with Last-Event-ID to read on")


def frame(item: Snapshot | Event) -> ServerSentEvent:
    if isinstance(item, Snapshot):
        return ServerSentEvent(data=item.job.model_dump_json(), event="snapshot", id=item.id)
    return ServerSentEvent(data=item.model_dump_json(), event=item.event, id=item.id)
