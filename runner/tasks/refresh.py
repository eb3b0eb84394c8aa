"""REFRESH_SOURCES: fetch every healthy context source again, one SCRAPE_WEBSITE or SYNC_RSS job per source,
on behalf of its owner. A default schedule runs it every 6 hours (client/schedules.py, DEFAULTS)."""
from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field

from ..client.facade import AsyncClient
from ..client.schedules import SCHEDULER
from ..context import TaskContext
from ..models import utcnow
from ..registry import task
from ..storage.keys import Keys
from ..web import sources
from ..worker.runtime import runtime

WINDOW_S = 6 * 3600  # one refresh per source per window, however many runs or workers ask for it
KIND_TYPES = {"feed": "SYNC_RSS", "page": "SCRAPE_WEBSITE"}


class RefreshPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", title="Refresh context sources")

    max_sources: int = Field(1000, ge=1, le=100_000, description="Most sources refreshed in one run.")


def acting_as(owner: str) -> tuple[str, str]:
    """The (user, org) a refresh of `owner`'s source is submitted as: the user whose source it is, or for an
    organisation's source the scheduler's own account in that organisation (the same namespace)."""
    kind, _, name = owner.partition(":")
    return (SCHEDULER, name) if kind == "org" else (name, "")


@task("REFRESH_SOURCES", payload=RefreshPayload, steps=["List", "Submit"], timeout_s=600, max_attempts=2,
      queue="scraping", description="Fetch every healthy context source again (one job per source).")
async def refresh_sources(ctx: TaskContext, payload: RefreshPayload) -> dict[str, int]:
    rt, began = runtime(), utcnow()
    keys = Keys(rt.prefix)
    async with ctx.step("List"):
        found = [sources.pair(raw) for raw in await rt.redis.zrevrange(keys.sources_all, 0, payload.max_sources - 1)]
        healthy = [(owner, url, source.kind) for owner, url in found
                   if (source := await sources.load(rt.redis, rt.prefix, owner, url)).healthy
                   and source.kind in KIND_TYPES]
    window = int(time.time() // WINDOW_S)
    submitted = 0
    async with ctx.step("Submit"), AsyncClient(rt.settings) as client:
        for n, (owner, url, kind) in enumerate(healthy, 1):
            user, org = acting_as(owner)
            key = keys.schedule_slot("refresh", f"{owner}|{url}|{window}")
            job = await client.submit_keyed(KIND_TYPES[kind], {"url": url}, user, org, None, key)
            submitted += job.queued_at >= began  # else this window's refresh of it exists already
            await ctx.progress(n / len(healthy) * 100)
    return {"sources": len(healthy), "submitted": submitted}
