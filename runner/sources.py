"""The outside sources the context tasks read (web pages, RSS feeds): their health, and what was taken
from them, kept for the generative types to use as context.

A source that fails 5 times in a row is marked unhealthy: jobs that read it fail at once until someone
re-enables it (`enable`, or the Workers page).
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

import orjson
from pydantic import BaseModel
from redis.asyncio import Redis

from .errors import Fatal, InvalidPayload
from .models import utcnow
from .runtime import blocking
from .settings import Settings
from .store import dumps

UNHEALTHY_AFTER = 5
ITEMS_KEPT = 500
SEEN_KEPT = 5000
FETCH_TIMEOUT_S = 20.0
MAX_BYTES = 5_000_000
USER_AGENT = "Taskdeck/0.1 (context fetcher)"


class Source(BaseModel):
    url: str
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


class SourceFailed(RuntimeError):
    """A fetch failed in a way that may pass: a network error, a timeout or a 5xx."""


@dataclass
class Fetched:
    status: int
    url: str
    headers: dict[str, str]
    body: bytes


def canonical(url: str) -> str:
    """The source's name: scheme and host lower-cased, no fragment."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidPayload(f"{url!r} is not an http(s) URL")
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", parts.query, ""))


def source_key(prefix: str, url: str) -> str:
    return f"{prefix}source:{url}"


def index_key(prefix: str) -> str:
    return f"{prefix}sources"


def seen_key(prefix: str, url: str) -> str:
    return f"{prefix}feed:seen:{url}"


def items_key(prefix: str, url: str) -> str:
    return f"{prefix}feed:items:{url}"


def page_key(prefix: str, url: str) -> str:
    return f"{prefix}page:{url}"


def decode(url: str, raw: dict[str, str]) -> Source:
    return Source.model_validate({"url": url, **{k: orjson.loads(v) for k, v in raw.items()}})


async def load(redis: Redis, prefix: str, url: str) -> Source:
    return decode(url, await redis.hgetall(source_key(prefix, url)))


async def ensure_healthy(redis: Redis, prefix: str, url: str) -> Source:
    source = await load(redis, prefix, url)
    if not source.healthy:
        raise Fatal(f"source {url} is marked unhealthy after {source.failures} failures in a row (last: "
                    f"{source.last_error}); fix it, then re-enable it on the Workers page or with "
                    "runner.sources.enable()")
    return source


async def succeeded(redis: Redis, prefix: str, url: str, kind: str, **extra: str | None) -> None:
    fields = {"kind": kind, "healthy": True, "failures": 0, "last_ok_at": utcnow(), **extra}
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(source_key(prefix, url), mapping={k: dumps(v) for k, v in fields.items()})
        pipe.zadd(index_key(prefix), {url: time.time()})
        await pipe.execute()


async def failed(redis: Redis, prefix: str, url: str, kind: str, error: str) -> Source:
    """Count one more failure in a row; the fifth marks the source unhealthy."""
    key = source_key(prefix, url)
    fields = {"kind": kind, "last_error": error[:500], "last_failure_at": utcnow()}
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hincrby(key, "failures", 1)
        pipe.hset(key, mapping={k: dumps(v) for k, v in fields.items()})
        pipe.zadd(index_key(prefix), {url: time.time()})
        failures, *_ = await pipe.execute()
    if failures >= UNHEALTHY_AFTER:
        await redis.hset(key, "healthy", dumps(False))
    return await load(redis, prefix, url)


async def fetch(url: str, headers: dict[str, str] | None = None) -> Fetched:
    """GET `url` (redirects followed, at most MAX_BYTES). SourceFailed when another try may work,
    runner.Fatal when it cannot (a 4xx, an oversized body)."""
    import httpx

    try:
        async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_S, follow_redirects=True,
                                     headers={"User-Agent": USER_AGENT, **(headers or {})}) as http:
            async with http.stream("GET", url) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BYTES:
                        raise Fatal(f"{url} is larger than {MAX_BYTES:,} bytes")
    except httpx.HTTPError as e:
        raise SourceFailed(f"could not fetch {url}: {type(e).__name__}: {e}") from None
    status = response.status_code
    if status >= 500 or status in (408, 429):
        raise SourceFailed(f"{url} answered HTTP {status}")
    if status >= 400:
        raise Fatal(f"{url} answered HTTP {status}; check the URL")
    return Fetched(status, str(response.url), dict(response.headers), bytes(body))


async def add_items(redis: Redis, prefix: str, url: str, items: list[FeedItem]) -> list[FeedItem]:
    """Keep the items not seen before (newest first) and return them; seen ones are skipped."""
    if not items:
        return []
    now = time.time()
    async with redis.pipeline(transaction=False) as pipe:
        for item in items:
            pipe.zadd(seen_key(prefix, url), {item.id: now}, nx=True)
        added = await pipe.execute()
    new = [item for item, fresh in zip(items, added) if fresh]
    async with redis.pipeline(transaction=True) as pipe:
        if new:
            pipe.lpush(items_key(prefix, url), *[item.model_dump_json() for item in reversed(new)])
            pipe.ltrim(items_key(prefix, url), 0, ITEMS_KEPT - 1)
        pipe.zremrangebyrank(seen_key(prefix, url), 0, -SEEN_KEPT - 1)
        await pipe.execute()
    return new


async def save_page(redis: Redis, prefix: str, url: str, page: Page) -> None:
    await redis.set(page_key(prefix, url), page.model_dump_json())


async def context(redis: Redis, prefix: str, urls: Iterable[str], items_per_source: int = 20) -> list[str]:
    """Lines for a prompt: the stored pages' text and the newest feed items of each of `urls`."""
    urls = [canonical(url) for url in urls]
    async with redis.pipeline(transaction=False) as pipe:
        for url in urls:
            pipe.get(page_key(prefix, url))
            pipe.lrange(items_key(prefix, url), 0, items_per_source - 1)
        rows = await pipe.execute()
    lines = []
    for url, page, items in zip(urls, rows[::2], rows[1::2]):
        if page:
            found = Page.model_validate_json(page)
            lines.append(f"Page {found.title or url} ({url}): {found.text[:4000]}")
        for raw in items:
            item = FeedItem.model_validate_json(raw)
            lines.append(f"- {item.title} ({item.published or 'undated'}) {item.link}: {item.summary[:300]}")
    return lines


def list_sources(settings: Settings, limit: int = 200) -> list[Source]:
    """Every known source, most recently checked first (for the Workers page)."""
    with blocking(settings) as redis:
        urls = redis.zrevrange(index_key(settings.prefix), 0, limit - 1)
        with redis.pipeline(transaction=False) as pipe:
            for url in urls:
                pipe.hgetall(source_key(settings.prefix, url))
            rows = pipe.execute()
    return [decode(url, raw) for url, raw in zip(urls, rows) if raw]


def enable(settings: Settings, url: str) -> Source:
    """Mark a source healthy again, its failure count back to 0."""
    url = canonical(url)
    with blocking(settings) as redis:
        redis.hset(source_key(settings.prefix, url), mapping={"healthy": dumps(True), "failures": "0"})
        raw = redis.hgetall(source_key(settings.prefix, url))
    return decode(url, raw)
