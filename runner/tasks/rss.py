"""SYNC_RSS: read a feed and keep its new items (ones seen before are skipped) as context."""
from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..context import TaskContext
from ..errors import Fatal
from ..registry import Backoff, task
from ..web import sources
from ..worker.runtime import runtime


class RssPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", title="Sync an RSS or Atom feed")

    url: str = Field(description="The feed (RSS or Atom, http or https).", max_length=2000)
    max_items: int = Field(100, ge=1, le=1000, description="Most items read from the feed in one sync.")


def parse(body: bytes, max_items: int) -> tuple[str, list[sources.FeedItem]]:
    """The feed's title and items; Fatal when the body is no feed at all."""
    import feedparser

    feed: Any = feedparser.parse(body)
    if feed.bozo and not feed.entries:
        raise Fatal(f"not an RSS or Atom feed: {feed.get('bozo_exception', 'unreadable')}")
    items = [item(entry) for entry in feed.entries[:max_items]]
    return feed.feed.get("title", ""), items


def item(entry: Any) -> sources.FeedItem:
    link = entry.get("link", "")
    title = entry.get("title", "")
    key = entry.get("id") or link or hashlib.sha1(f"{title}|{entry.get('summary', '')}".encode()).hexdigest()
    return sources.FeedItem(id=key, title=title, link=link, summary=entry.get("summary", "")[:2000],
                            published=entry.get("published") or entry.get("updated"))


@task("SYNC_RSS", payload=RssPayload, steps=["Fetch", "Parse", "Store new items"], timeout_s=120, max_attempts=3,
      backoff=Backoff(base_s=2.0), description="Read an RSS/Atom feed and keep its new items as context.",
      queue="scraping")
async def sync_rss(ctx: TaskContext, payload: RssPayload) -> dict[str, object]:
    rt = runtime()
    url = sources.canonical(payload.url)
    owner = sources.job_owner(ctx)
    async with ctx.step("Fetch"):
        known = await sources.ensure_healthy(rt.redis, rt.prefix, owner, url)
        validators = (("If-None-Match", known.etag), ("If-Modified-Since", known.last_modified))
        conditional = {name: value for name, value in validators if value}
        try:
            feed = await sources.fetch(url, conditional, allow=rt.settings.fetch_allow)
        except (sources.SourceFailed, Fatal) as e:
            await sources.failed(rt.redis, rt.prefix, owner, url, "feed", str(e))
            raise
    if feed.status == 304:
        await sources.succeeded(rt.redis, rt.prefix, owner, url, "feed")
        return {"url": url, "title": None, "new": 0, "skipped": 0, "not_modified": True, "items": []}
    async with ctx.step("Parse"):
        try:
            title, items = await asyncio.to_thread(parse, feed.body, payload.max_items)
        except Fatal as e:
            await sources.failed(rt.redis, rt.prefix, owner, url, "feed", str(e))
            raise
    async with ctx.step("Store new items"):
        new = await sources.add_items(rt.redis, rt.prefix, owner, url, items)
        await sources.succeeded(rt.redis, rt.prefix, owner, url, "feed", etag=feed.headers.get("etag"),
                                last_modified=feed.headers.get("last-modified"))
    return {"url": url, "title": title, "new": len(new), "skipped": len(items) - len(new), "not_modified": False,
            "items": [i.model_dump() for i in new]}
