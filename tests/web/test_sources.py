"""The context tasks against local web servers: a page's readable text, a feed's new items, the health
of each source (5 failures in a row mark it unhealthy until re-enabled), and whose each source is (its
owner's alone: another user neither lists it nor gets its text as context; an admin sees all)."""
from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from runner import AccessDenied, AsyncClient, Client, Fatal, JobStatus, TaskdeckError
from runner.settings import Settings
from runner.web import sources
from runner.worker import runtime
from tests.fake_llm import FakeLLM
from tests.fake_web import FakeWeb, Route, web  # noqa: F401
from tests.inline import Run
from tests.polling import wait_until

ANA, BO, CY, DI, AL = "ana@x.io", "bo@x.io", "cy@acme.io", "di@acme.io", "al@x.io"
ROLES = {AL: "analyst", "*@x.io": "staff", "*@acme.io": "staff"}
ALLOW_LOOPBACK = {"TASKDECK_FETCH_ALLOW": '["127.0.0.1"]'}

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
async def clean_runtime(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    for name, value in {**ALLOW_LOOPBACK, "TASKDECK_ROLES": json.dumps(ROLES),
                        "TASKDECK_ORGS": json.dumps({"*@acme.io": "acme"})}.items():
        monkeypatch.setenv(name, value)
    yield
    await runtime.close()


class Submitted:
    """A job of `user`'s, submitted for real, whose attempts run in this process."""

    def __init__(self, type_name: str, payload: dict[str, Any], user: str = ANA) -> None:
        self.type_name, self.payload, self.user = type_name, payload, user
        self.id, self.org = "", ""

    async def run(self, attempt: int = 1) -> Any:
        if not self.id:
            async with AsyncClient() as ac:
                job = await ac.submit(self.type_name, self.payload, user=self.user)
            self.id, self.org = job.id, job.org_id
        return await Run(self.id, self.type_name, attempt=attempt, user_id=self.user, org_id=self.org)(self.payload)


async def run(type_name: str, payload: dict[str, Any], user: str = ANA) -> Any:
    return await Submitted(type_name, payload, user).run()


def listed(user: str | None = None) -> list[tuple[str, str]]:
    with Client(user=user) as client:
        return [(s.owner, s.url) for s in client.sources()]


async def context(owner: str, url: str) -> list[str]:
    return await sources.context(runtime.runtime().redis, "taskdeck:", owner, [url])


async def test_a_page_is_read_as_clean_text_and_kept(web: FakeWeb, r) -> None:  # noqa: F811
    web.routes["/cold-brew"] = Route(ARTICLE)
    job = Submitted("SCRAPE_WEBSITE", {"url": web.url("/cold-brew")})
    result = await job.run()
    assert result["title"] == "Cold brew, explained"
    assert "steeping coarse grounds" in result["text"] and "Copyright" not in result["text"]
    kept = await context(f"user:{ANA}", web.url("/cold-brew"))
    assert "steeping coarse grounds" in kept[0]
    [source] = sources.list_sources(Settings(), None)
    assert source.healthy and source.kind == "page" and source.last_ok_at and source.owner == f"user:{ANA}"


async def test_a_page_without_readable_text_fails_at_once(web: FakeWeb) -> None:  # noqa: F811
    web.routes["/empty"] = Route(b"<html><body><script>app()</script></body></html>")
    with pytest.raises(Fatal, match="has no readable text"):
        await run("SCRAPE_WEBSITE", {"url": web.url("/empty")})


async def test_a_429_says_how_long_the_site_asked_to_wait(web: FakeWeb) -> None:  # noqa: F811
    web.routes["/busy"] = Route(b"slow down", "text/plain", 429, headers={"Retry-After": "7"})
    with pytest.raises(sources.SourceFailed, match="answered HTTP 429; it asked to wait 7 s") as failed:
        await run("SCRAPE_WEBSITE", {"url": web.url("/busy")})
    assert failed.value.after_s == 7
    web.routes["/down"] = Route(b"", "text/plain", 503)
    with pytest.raises(sources.SourceFailed) as plain:
        await run("SCRAPE_WEBSITE", {"url": web.url("/down")})
    assert plain.value.after_s is None


def test_a_worker_retries_a_throttled_fetch_when_the_site_asked(web: FakeWeb, start_worker) -> None:  # noqa: F811
    """The next attempt is due when Retry-After said (30 s), not after SCRAPE_WEBSITE's 2 s backoff."""
    web.routes["/busy"] = Route(b"slow down", "text/plain", 429, headers={"Retry-After": "30"})
    start_worker(**ALLOW_LOOPBACK)
    with Client(user=ANA) as client:
        job = client.submit("SCRAPE_WEBSITE", {"url": web.url("/busy")})
        waiting = wait_until(lambda: (j := client.get(job.id)).status is JobStatus.retrying and j, 15, "a retry")
        assert waiting.next_attempt_at is not None and waiting.attempt_log[-1].finished_at is not None
        wait_s = (waiting.next_attempt_at - waiting.attempt_log[-1].finished_at).total_seconds()
        assert 29 <= wait_s <= 30 * 1.1 + 1, wait_s  # Backoff's jitter is up to 10 %
        client.cancel(job.id)


async def test_a_feed_keeps_new_items_and_skips_seen_ones(web: FakeWeb) -> None:  # noqa: F811
    web.routes["/feed.xml"] = Route(feed("Oat milk", "Espresso tonic", "Decaf"), "application/rss+xml")
    first = await run("SYNC_RSS", {"url": web.url("/feed.xml")})
    assert (first["title"], first["new"], first["skipped"]) == ("Coffee news", 3, 0)
    web.routes["/feed.xml"] = Route(feed("Matcha latte", "Oat milk", "Espresso tonic", "Decaf"), "application/rss+xml")
    second = await run("SYNC_RSS", {"url": web.url("/feed.xml")})
    assert (second["new"], second["skipped"]) == (1, 3) and second["items"][0]["title"] == "Matcha latte"
    kept = await context(f"user:{ANA}", web.url("/feed.xml"))
    assert [line.split(" (")[0] for line in kept] == ["- Matcha latte", "- Oat milk", "- Espresso tonic", "- Decaf"]


async def test_an_unchanged_feed_is_not_downloaded_again(web: FakeWeb) -> None:  # noqa: F811
    web.routes["/feed.xml"] = Route(feed("Oat milk"), "application/rss+xml", etag='"v1"')
    await run("SYNC_RSS", {"url": web.url("/feed.xml")})
    again = await run("SYNC_RSS", {"url": web.url("/feed.xml")})
    assert again["not_modified"] and again["new"] == 0


async def test_five_failures_in_a_row_mark_a_source_unhealthy_until_re_enabled(web: FakeWeb) -> None:  # noqa: F811
    url = web.url("/feed.xml")
    web.routes["/feed.xml"] = Route(b"down", "text/plain", status=503)
    job = Submitted("SYNC_RSS", {"url": url})
    for n in range(1, 6):
        with pytest.raises(sources.SourceFailed, match="answered HTTP 503"):
            await job.run(attempt=n)
    [source] = sources.list_sources(Settings(), None)
    assert not source.healthy and source.failures == 5 and "503" in source.last_error
    with pytest.raises(Fatal, match="marked unhealthy after 5 failures in a row"):
        await run("SYNC_RSS", {"url": url})
    assert web.hits["/feed.xml"] == 5, "an unhealthy source must not be fetched"

    web.routes["/feed.xml"] = Route(feed("Back"), "application/rss+xml")
    assert sources.enable(Settings(), url, f"user:{ANA}").healthy
    assert (await run("SYNC_RSS", {"url": url}))["new"] == 1
    source = next(s for s in sources.list_sources(Settings(), None) if s.owner == f"user:{ANA}")
    assert source.healthy and source.failures == 0


async def test_a_missing_page_fails_at_once_and_counts_against_its_source(web: FakeWeb) -> None:  # noqa: F811
    with pytest.raises(Fatal, match="answered HTTP 404; check the URL"):
        await run("SCRAPE_WEBSITE", {"url": web.url("/gone")})
    assert sources.list_sources(Settings(), None)[0].failures == 1


async def test_sources_belong_to_who_asked_for_them_and_admins_see_all(web: FakeWeb) -> None:  # noqa: F811
    web.routes["/cold-brew"] = Route(ARTICLE)
    web.routes["/feed.xml"] = Route(feed("Oat milk"), "application/rss+xml")
    page, news = web.url("/cold-brew"), web.url("/feed.xml")
    await run("SCRAPE_WEBSITE", {"url": page}, user=ANA)
    await run("SYNC_RSS", {"url": news}, user=CY)

    assert listed(ANA) == [(f"user:{ANA}", page)]
    assert listed(BO) == [], "another user's URLs are not listed"
    assert listed(AL) == [], "reading everyone's jobs is not seeing everyone's sources"
    assert listed(DI) == [("org:acme", news)], "a job of an org's member keeps its sources in the org's namespace"
    assert sorted(listed()) == [("org:acme", news), (f"user:{ANA}", page)], "the admin sees every owner's"
    assert await context(f"user:{BO}", page) == [] and await context("org:acme", page) == []
    assert await context(f"user:{ANA}", news) == []


async def test_the_same_url_is_a_separate_source_for_each_owner(web: FakeWeb) -> None:  # noqa: F811
    url = web.url("/feed.xml")
    web.routes["/feed.xml"] = Route(b"down", "text/plain", status=503)
    with pytest.raises(sources.SourceFailed):
        await run("SYNC_RSS", {"url": url}, user=ANA)
    web.routes["/feed.xml"] = Route(feed("Oat milk"), "application/rss+xml")
    assert (await run("SYNC_RSS", {"url": url}, user=BO))["new"] == 1
    with Client(user=BO) as bo:
        [mine] = bo.sources()
    assert (mine.owner, mine.failures, mine.last_error) == (f"user:{BO}", 0, None), "ana's failure is not bo's"


async def test_only_admins_re_enable_sources_of_one_owner_or_of_all() -> None:
    url = "http://feeds.example/news.xml"
    for owner in (f"user:{ANA}", "org:acme"):
        for _ in range(sources.UNHEALTHY_AFTER):
            await sources.failed(runtime.runtime().redis, "taskdeck:", owner, url, "feed", "HTTP 503")
    with Client(user=ANA) as ana, pytest.raises(AccessDenied):
        ana.enable_source(url)
    with Client() as admin:
        [one] = admin.enable_source(url, "org:acme")
        assert one.owner == "org:acme" and one.healthy
        assert {s.owner: s.healthy for s in admin.sources()} == {f"user:{ANA}": False, "org:acme": True}
        assert len(admin.enable_source(url)) == 2, "without an owner, every owner's source of that URL"
        assert all(s.healthy for s in admin.sources())
        with pytest.raises(TaskdeckError, match="no source"):
            admin.enable_source(url, f"user:{BO}")


async def test_a_generation_reads_only_its_owners_pages(web: FakeWeb, fake_llm: FakeLLM, llm_env,  # noqa: F811
                                                        start_worker) -> None:
    web.routes["/cold-brew"] = Route(ARTICLE)
    page = web.url("/cold-brew")
    start_worker(**ALLOW_LOOPBACK)
    async with AsyncClient() as ac:
        scraped = await ac.submit("SCRAPE_WEBSITE", {"url": page}, user=ANA)
        assert (await ac.wait_terminal(scraped.id, 30)).status is JobStatus.completed
        brief = {"industry": "coffee", "count": 3, "sources": [page]}
        for user in (BO, ANA):
            job = await ac.submit("GENERATE_TRENDS", brief, user=user)
            assert (await ac.wait_terminal(job.id, 30)).status is JobStatus.completed
    bo_asked, ana_asked = fake_llm.requests[0].task, fake_llm.requests[-1].task
    assert "steeping coarse grounds" not in bo_asked and "Context from the brief's sources" not in bo_asked
    assert "steeping coarse grounds" in ana_asked


def test_only_http_urls_are_sources() -> None:
    with pytest.raises(Exception, match="is not an http"):
        sources.canonical("file:///etc/passwd")
