"""The outside sources the context tasks read (web pages, RSS feeds): their health, and what was taken
from them, kept for the generative types to use as context.

Each source belongs to an owner, the namespace of whoever asked for it: a job's organisation when it has
one (`org:<org_id>`), else its submitter (`user:<email>`). Its record, page and feed items live there, and
a job reads context only from its own owner's namespace, so one user's URLs, errors and fetched text
never reach another.

A source that fails 5 times in a row is marked unhealthy: jobs that read it fail at once until someone
re-enables it (`enable`, or the Workers page).
"""
from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

import orjson
from pydantic import BaseModel
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from ..context import TaskContext
from ..errors import Fatal, InvalidPayload, RetryLater, TaskdeckError, asked_wait
from ..models import utcnow
from ..settings import Settings
from ..storage.keys import Keys
from ..storage.store import blocking, dumps
from . import outbound
from .outbound import Fetched

UNHEALTHY_AFTER = 5
ITEMS_KEPT = 500
SEEN_KEPT = 5000


class Source(BaseModel):
    url: str
    owner: str = ""
    kind: str = ""
    healthy: bool = True
    failures: int = 0
    last_error: str | None = None
    last_ok_at: datetime | None = None
    last_failure_at: datetime | None = None
    etag: str | None = None
    last_modified: str | None = None


class FeedItem(BaseModel):
    id: str
    title: str = ""
    link: str = ""
    summary: str = ""
    published: str | None = None


class Page(BaseModel):
    url: str
    final_url: str
    title: str | None = None
    author: str | None = None
    date: str | None = None
    text: str
    fetched_at: datetime


class SourceFailed(RetryLater):
    """A fetch failed in a way that may pass: a network error, a timeout, a 5xx or a 429; `after_s` when the
    site said how long to wait (Retry-After), which the job's next attempt honours."""


def canonical(url: str) -> str:
    """The source's name: scheme and host lower-cased, no fragment."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidPayload(f"{url!r} is not an http(s) URL")
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", parts.query, ""))


def owner_of(user_id: str, org_id: str = "") -> str:
    """The namespace a job's sources live in: its organisation's when it has one, else its submitter's."""
    return f"org:{org_id}" if org_id else f"user:{user_id}"


def owners_of(email: str, org: str) -> list[str]:
    """The namespaces a user reads: their own, and their organisation's."""
    return [owner_of(email), *([owner_of(email, org)] if org else [])]


def job_owner(ctx: TaskContext) -> str:
    """The owner of a running job's sources; Fatal when the job says nobody submitted it."""
    if not ctx.user_id:
        raise Fatal(f"job {ctx.job_id} has no record saying who submitted it, so it has no sources")
    return owner_of(ctx.user_id, ctx.org_id)


def member(owner: str, url: str) -> str:
    return orjson.dumps([owner, url]).decode()


def pair(raw: str) -> tuple[str, str]:
    owner, url = orjson.loads(raw)
    return owner, url


def decode(owner: str, url: str, raw: Mapping[str, str]) -> Source:
    return Source.model_validate({**{k: orjson.loads(v) for k, v in raw.items()}, "url": url, "owner": owner})


async def load(redis: Redis, prefix: str, owner: str, url: str) -> Source:
    return decode(owner, url, await redis.hgetall(Keys(prefix).source(owner, url)))  # type: ignore[misc]  # redis-py types replies `Awaitable[T] | T` for both clients


async def ensure_healthy(redis: Redis, prefix: str, owner: str, url: str) -> Source:
    source = await load(redis, prefix, owner, url)
    if not source.healthy:
        raise Fatal(f"source {url} is marked unhealthy after {source.failures} failures in a row (last: "
                    f"{source.last_error}); fix it, then ask an admin to re-enable it on the Workers page or "
                    "with runner.sources.enable()")
    return source


async def succeeded(redis: Redis, prefix: str, owner: str, url: str, kind: str, **extra: str | None) -> None:
    fields = {"kind": kind, "healthy": True, "failures": 0, "last_ok_at": utcnow(), **extra}
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(Keys(prefix).source(owner, url), mapping={k: dumps(v) for k, v in fields.items()})
        indexed(pipe, prefix, owner, url)
        await pipe.execute()


async def failed(redis: Redis, prefix: str, owner: str, url: str, kind: str, error: str) -> Source:
    """Count one more failure in a row; the fifth marks the source unhealthy."""
    key = Keys(prefix).source(owner, url)
    fields = {"kind": kind, "last_error": error[:500], "last_failure_at": utcnow()}
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hincrby(key, "failures", 1)
        pipe.hset(key, mapping={k: dumps(v) for k, v in fields.items()})
        indexed(pipe, prefix, owner, url)
        failures, *_ = await pipe.execute()
    if failures >= UNHEALTHY_AFTER:
        await redis.hset(key, "healthy", dumps(False))  # type: ignore[misc]  # redis-py types replies `Awaitable[T] | T` for both clients
    return await load(redis, prefix, owner, url)


def indexed(pipe: Pipeline, prefix: str, owner: str, url: str) -> None:
    now, keys = time.time(), Keys(prefix)
    pipe.zadd(keys.sources(owner), {url: now})
    pipe.zadd(keys.sources_all, {member(owner, url): now})


async def fetch(url: str, headers: dict[str, str] | None = None, allow: Iterable[str] = ()) -> Fetched:
    """GET `url` through the outbound policy (`allow`: TASKDECK_FETCH_ALLOW). SourceFailed when another
    try may work (no answer, a 5xx, a 408 or 429), runner.Fatal when it cannot (the policy refused it, a
    4xx, an oversized body)."""
    try:
        fetched = await outbound.fetch(url, allow, headers)
    except outbound.Unreachable as e:
        raise SourceFailed(str(e)) from None
    status = fetched.status
    if status >= 500 or status in (408, 429):
        asked = asked_wait(fetched.headers)
        raise SourceFailed(f"{url} answered HTTP {status}" + (f"; it asked to wait {asked:g} s" if asked else ""),
                           asked)
    if status >= 400:
        raise Fatal(f"{url} answered HTTP {status}; check the URL")
    return fetched


async def add_items(redis: Redis, prefix: str, owner: str, url: str, items: list[FeedItem]) -> list[FeedItem]:
    """Keep the items not seen before (newest first) and return them; seen ones are skipped."""
    if not items:
        return []
    keys = Keys(prefix)
    seen, kept = keys.feed_seen(owner, url), keys.feed_items(owner, url)
    now = time.time()
    async with redis.pipeline(transaction=False) as pipe:
        for item in items:
            pipe.zadd(seen, {item.id: now}, nx=True)
        added = await pipe.execute()
    new = [item for item, fresh in zip(items, added, strict=True) if fresh]
    async with redis.pipeline(transaction=True) as pipe:
        if new:
            pipe.lpush(kept, *[item.model_dump_json() for item in reversed(new)])
            pipe.ltrim(kept, 0, ITEMS_KEPT - 1)
        pipe.zremrangebyrank(seen, 0, -SEEN_KEPT - 1)
        await pipe.execute()
    return new


async def save_page(redis: Redis, prefix: str, owner: str, url: str, page: Page) -> None:
    await redis.set(Keys(prefix).page(owner, url), page.model_dump_json())


async def context(redis: Redis, prefix: str, owner: str, urls: Iterable[str],
                  items_per_source: int = 20) -> list[str]:
    """Lines for a prompt: the stored pages' text and the newest feed items of each of `urls`, as `owner`
    (the reading job's owner_of) has them; another owner's copies are never read."""
    urls, keys = [canonical(url) for url in urls], Keys(prefix)
    async with redis.pipeline(transaction=False) as pipe:
        for url in urls:
            pipe.get(keys.page(owner, url))
            pipe.lrange(keys.feed_items(owner, url), 0, items_per_source - 1)
        rows = await pipe.execute()
    lines = []
    for url, page, items in zip(urls, rows[::2], rows[1::2], strict=True):
        if page:
            found = Page.model_validate_json(page)
            lines.append(f"Page {found.title or url} ({url}): {found.text[:4000]}")
        for raw in items:
            item = FeedItem.model_validate_json(raw)
            lines.append(f"- {item.title} ({item.published or 'undated'}) {item.link}: {item.summary[:300]}")
    return lines


def list_sources(settings: Settings, owners: Collection[str] | None, limit: int = 200) -> list[Source]:
    """The sources of `owners` (None: every owner's, for admins), most recently checked first."""
    keys = Keys(settings.prefix)
    with blocking(settings) as redis:
        found = newest(redis, settings.prefix, owners, limit)
        with redis.pipeline(transaction=False) as pipe:
            for owner, url in found:
                pipe.hgetall(keys.source(owner, url))
            rows = pipe.execute()
    return [decode(owner, url, raw) for (owner, url), raw in zip(found, rows, strict=True) if raw]


def newest(redis: SyncRedis, prefix: str, owners: Collection[str] | None, limit: int) -> list[tuple[str, str]]:
    """(owner, url) of the `limit` sources of `owners` checked last."""
    keys = Keys(prefix)
    if owners is None:
        return [pair(m) for m in redis.zrevrange(keys.sources_all, 0, limit - 1)]  # type: ignore[union-attr]  # redis-py types replies `Awaitable[T] | T` for both clients
    with redis.pipeline(transaction=False) as pipe:
        for owner in owners:
            pipe.zrevrange(keys.sources(owner), 0, limit - 1, withscores=True)
        rows = pipe.execute()
    scored = [(score, owner, url) for owner, row in zip(owners, rows, strict=True) for url, score in row]
    return [(owner, url) for _, owner, url in sorted(scored, reverse=True)[:limit]]


def holders(settings: Settings, url: str) -> list[str]:
    """The owners that have a source named `url`."""
    with blocking(settings) as redis:
        members = [pair(m) for m, _ in redis.zscan_iter(Keys(settings.prefix).sources_all)]
    return [owner for owner, named in members if named == url]


def enable(settings: Settings, url: str, owner: str) -> Source:
    """Mark `owner`'s source `url` healthy again, its failure count back to 0."""
    url = canonical(url)
    key = Keys(settings.prefix).source(owner, url)
    with blocking(settings) as redis:
        if not redis.exists(key):
            raise TaskdeckError(f"no source {url} of {owner}; the Workers page lists the sources")
        redis.hset(key, mapping={"healthy": dumps(True), "failures": "0"})
        raw = redis.hgetall(key)
    return decode(owner, url, raw)
