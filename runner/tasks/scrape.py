"""SCRAPE_WEBSITE: fetch one page and keep its readable text as context for the generative types."""
from __future__ import annotations

import asyncio

import orjson
from pydantic import BaseModel, ConfigDict, Field

from ..context import TaskContext
from ..errors import Fatal
from ..models import utcnow
from ..registry import Backoff, task
from ..web import sources
from ..worker.runtime import runtime


class ScrapePayload(BaseModel):
    model_config = ConfigDict(extra="forbid", title="Scrape a web page")

    url: str = Field(description="The page to read (http or https).", max_length=2000)
    max_chars: int = Field(20_000, ge=100, le=200_000, description="Longest text kept.")


def extract(html: bytes, url: str) -> dict[str, str | None]:
    """Readable text and metadata of a page (trafilatura), or {} when it has none."""
    import trafilatura

    found = trafilatura.extract(html, url=url, output_format="json", with_metadata=True, include_comments=False)
    return orjson.loads(found) if found else {}


@task("SCRAPE_WEBSITE", payload=ScrapePayload, steps=["Fetch", "Extract", "Store"], timeout_s=120, max_attempts=3,
      backoff=Backoff(base_s=2.0), description="Fetch a web page and keep its readable text as context.",
      queue="scraping")
async def scrape_website(ctx: TaskContext, payload: ScrapePayload) -> dict[str, object]:
    rt = runtime()
    url = sources.canonical(payload.url)
    owner = sources.job_owner(ctx)
    async with ctx.step("Fetch"):
        await sources.ensure_healthy(rt.redis, rt.prefix, owner, url)
        try:
            page = await sources.fetch(url, allow=rt.settings.fetch_allow)
        except (sources.SourceFailed, Fatal) as e:
            await sources.failed(rt.redis, rt.prefix, owner, url, "page", str(e))
            raise
    async with ctx.step("Extract"):
        found = await asyncio.to_thread(extract, page.body, page.url)
        if not found.get("text"):
            raise Fatal(f"{url} has no readable text (an empty page, or one built by JavaScript)")
    async with ctx.step("Store"):
        text = found["text"] or ""
        kept = sources.Page(url=url, final_url=page.url, title=found.get("title"), author=found.get("author"),
                            date=found.get("date"), text=text[: payload.max_chars], fetched_at=utcnow())
        await sources.save_page(rt.redis, rt.prefix, owner, url, kept)
        await sources.succeeded(rt.redis, rt.prefix, owner, url, "page")
    return {**kept.model_dump(mode="json"), "chars": len(text), "truncated": len(text) > payload.max_chars}
