"""The context tasks against local web servers: a page's readable text, a feed's new items, and the
health of each source (5 failures in a row mark it unhealthy until re-enabled)."""
from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from runner import Fatal, runtime, sources
from runner.settings import Settings
from tests.fake_web import FakeWeb, Route, web  # noqa: F401
from tests.inline import Run

ARTICLE = b"""<html><head><title>Cold brew, explained</title></head><body>
<nav><a href="/">Home</a> | <a href="/shop">Shop</a></nav>
<article><h1>Cold brew, explained</h1>
<p>Cold brew coffee is made by steeping coarse grounds in cold water for twelve to twenty-four hours.</p>
<p>The long, cool extraction pulls fewer bitter compounds, so the result tastes smooth and naturally sweet.</p>
<p>Most cafes dilute the concentrate one to one with water or milk before serving it over ice.</p>
</article><footer>Copyright Brew Ltd</footer></body></html>"""


def feed(*titles: str) -> bytes:
    items = "".join(f"<item><title>{t}</title><link>http://news.test/{t.replace(' ', '-')}</link>"
                    f"<guid>{t}</guid><description>About {t}</description></item>" for t in titles)
    return (f'<?xml version="1.0"?><rss version="2.0"><channel><title>Coffee news</title>{items}'
            "</channel></rss>").encode()


@pytest.fixture(autouse=True)
async def clean_runtime(redis_url: str) -> AsyncIterator[None]:
    yield
    await runtime.close()


async def test_a_page_is_read_as_clean_text_and_kept(web: FakeWeb, r) -> None:  # noqa: F811
    web.routes["/cold-brew"] = Route(ARTICLE)
    run = Run("a" * 32, "SCRAPE_WEBSITE")
    result = await run({"url": web.url("/cold-brew")})
    assert result["title"] == "Cold brew, explained"
    assert "steeping coarse grounds" in result["text"] and "Copyright" not in result["text"]
    assert [s.status for s in run.ctx.steps] == ["completed"] * 3
    kept = await sources.context(runtime.runtime().redis, "taskdeck:", [web.url("/cold-brew")])
    assert "steeping coarse grounds" in kept[0]
    [source] = sources.list_sources(Settings())
    assert source.healthy and source.kind == "page" and source.last_ok_at


async def test_a_page_without_readable_text_fails_at_once(web: FakeWeb) -> None:  # noqa: F811
    web.routes["/empty"] = Route(b"<html><body><script>app()</script></body></html>")
    with pytest.raises(Fatal, match="has no readable text"):
        await Run("a" * 32, "SCRAPE_WEBSITE")({"url": web.url("/empty")})


async def test_a_feed_keeps_new_items_and_skips_seen_ones(web: FakeWeb) -> None:  # noqa: F811
    web.routes["/feed.xml"] = Route(feed("Oat milk", "Espresso tonic", "Decaf"), "application/rss+xml")
    first = await Run("a" * 32, "SYNC_RSS")({"url": web.url("/feed.xml")})
    assert (first["title"], first["new"], first["skipped"]) == ("Coffee news", 3, 0)
    web.routes["/feed.xml"] = Route(feed("Matcha latte", "Oat milk", "Espresso tonic", "Decaf"), "application/rss+xml")
    second = await Run("b" * 32, "SYNC_RSS")({"url": web.url("/feed.xml")})
    assert (second["new"], second["skipped"]) == (1, 3) and second["items"][0]["title"] == "Matcha latte"
    kept = await sources.context(runtime.runtime().redis, "taskdeck:", [web.url("/feed.xml")])
    assert [line.split(" (")[0] for line in kept] == ["- Matcha latte", "- Oat milk", "- Espresso tonic", "- Decaf"]


async def test_an_unchanged_feed_is_not_downloaded_again(web: FakeWeb) -> None:  # noqa: F811
    web.routes["/feed.xml"] = Route(feed("Oat milk"), "application/rss+xml", etag='"v1"')
    await Run("a" * 32, "SYNC_RSS")({"url": web.url("/feed.xml")})
    again = await Run("b" * 32, "SYNC_RSS")({"url": web.url("/feed.xml")})
    assert again["not_modified"] and again["new"] == 0


async def test_five_failures_in_a_row_mark_a_source_unhealthy_until_re_enabled(web: FakeWeb) -> None:  # noqa: F811
    url = web.url("/feed.xml")
    web.routes["/feed.xml"] = Route(b"down", "text/plain", status=503)
    for n in range(1, 6):
        with pytest.raises(sources.SourceFailed, match="answered HTTP 503"):
            await Run("a" * 32, "SYNC_RSS", attempt=n)({"url": url})
    [source] = sources.list_sources(Settings())
    assert not source.healthy and source.failures == 5 and "503" in source.last_error
    with pytest.raises(Fatal, match="marked unhealthy after 5 failures in a row"):
        await Run("a" * 32, "SYNC_RSS")({"url": url})
    assert web.hits["/feed.xml"] == 5, "an unhealthy source must not be fetched"

    web.routes["/feed.xml"] = Route(feed("Back"), "application/rss+xml")
    assert sources.enable(Settings(), url).healthy
    assert (await Run("b" * 32, "SYNC_RSS")({"url": url}))["new"] == 1
    [source] = sources.list_sources(Settings())
    assert source.healthy and source.failures == 0


async def test_a_missing_page_fails_at_once_and_counts_against_its_source(web: FakeWeb) -> None:  # noqa: F811
    with pytest.raises(Fatal, match="answered HTTP 404; check the URL"):
        await Run("a" * 32, "SCRAPE_WEBSITE")({"url": web.url("/gone")})
    assert sources.list_sources(Settings())[0].failures == 1


def test_only_http_urls_are_sources() -> None:
    with pytest.raises(Exception, match="is not an http"):
        sources.canonical("file:///etc/passwd")
