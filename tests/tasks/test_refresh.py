"""The house's default schedule (issue 14): REFRESH_SOURCES submits one fetch per healthy source, as its
owner, once per 6-hour window; the schedule is created once and stays paused or deleted."""
from __future__ import annotations

import redis

from runner import Client
from runner.client.schedules import SCHEDULER
from runner.web import sources
from runner.worker.runtime import runtime
from tests.inline import Run
from tests.polling import wait_until

PAGE, FEED, BROKEN = "https://ana.example/", "https://acme.example/feed.xml", "https://gone.example/"


async def sources_of_two_owners() -> None:
    rt = runtime()
    await sources.succeeded(rt.redis, rt.prefix, "user:ana@x.io", PAGE, "page")
    await sources.succeeded(rt.redis, rt.prefix, "org:acme", FEED, "feed")
    await sources.succeeded(rt.redis, rt.prefix, "user:ana@x.io", BROKEN, "page")
    for _ in range(5):
        await sources.failed(rt.redis, rt.prefix, "user:ana@x.io", BROKEN, "page", "503")


async def test_a_refresh_submits_one_job_per_healthy_source_as_its_owner_once_a_window(r: redis.Redis) -> None:
    await sources_of_two_owners()
    assert not (await sources.load(runtime().redis, runtime().prefix, "user:ana@x.io", BROKEN)).healthy
    first = await Run("r1", "REFRESH_SOURCES")({})
    again = await Run("r2", "REFRESH_SOURCES")({})
    assert first == {"sources": 2, "submitted": 2} and again == {"sources": 2, "submitted": 0}
    with Client() as admin:
        jobs = admin.list(limit=10)
    made = sorted((j.type, j.payload["url"], j.user_id, j.org_id, j.queue) for j in jobs)
    assert made == [("SCRAPE_WEBSITE", PAGE, "ana@x.io", "", "scraping"),
                    ("SYNC_RSS", FEED, SCHEDULER, "acme", "scraping")]


def test_the_default_schedule_is_made_once_and_stays_paused_or_deleted(start_worker) -> None:
    defaults = {"TASKDECK_DEFAULT_SCHEDULES": "true"}
    first = start_worker(**defaults)
    with Client() as admin:
        made = wait_until(lambda: [s for s in admin.schedules() if s.name == "refresh-sources"], 15, "the default")
        assert (made[0].type, made[0].cron) == ("REFRESH_SOURCES", "0 */6 * * *")
        admin.pause_schedule("refresh-sources")
        first.terminate()
        first.wait(15)
        second = start_worker(**defaults)
        wait_until(lambda: any(w.alive and w.pid == second.pid for w in admin.workers()), 15, "the second worker")
        assert [s.paused for s in admin.schedules() if s.name == "refresh-sources"] == [True]
        admin.delete_schedule("refresh-sources")
        second.terminate()
        second.wait(15)
        third = start_worker(**defaults)
        wait_until(lambda: any(w.alive and w.pid == third.pid for w in admin.workers()), 15, "the third worker")
        assert [s.name for s in admin.schedules()] == []
