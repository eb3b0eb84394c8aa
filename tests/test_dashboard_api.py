"""The runner API the dashboard reads through: history, live view, events, bulk actions, metrics."""
from __future__ import annotations

import asyncio
import subprocess
from datetime import timedelta

import pytest

from runner import AccessDenied, AsyncClient, Client, JobStatus, Settings
from runner.models import utcnow
from runner.reads import history
from runner.reads.history import HistoryPage, HistoryQuery
from runner.reads.metrics import percentile
from runner.storage.counters import DURATION_BOUNDS_S, normalise
from tests.dashboard_fixtures import drive
from tests.polling import wait_until


def finish_all(client: Client, n: int, outcome: str = "completed", **submit: object) -> list[str]:
    ids = []
    for _ in range(n):
        job = client.submit("DEMO", {}, **submit)
        drive(job.id, outcome, error="DemoFailure: no" if outcome == "failed" else None, result={})
        ids.append(job.id)
    return ids


def test_history_totals_are_exact_from_the_indexes_and_pages_merge_statuses(client: Client) -> None:
    done = finish_all(client, 4)
    failed = finish_all(client, 3, "failed")
    client.submit("DEMO", {})
    page = client.history(limit=5)
    assert page.exact and page.total == 7
    everything = [j.id for j in client.history(limit=5).jobs] + [j.id for j in client.history(limit=5, offset=5).jobs]
    assert everything == list(reversed(done + failed))
    assert client.history(HistoryQuery(status=[])).total == 8
    assert client.count("failed") == 3 and client.count() == 8 and client.count("active") == 1


def test_history_filters_cross_indexes_and_dates(client: Client) -> None:
    mine = finish_all(client, 2)
    theirs = finish_all(client, 3, user="bob@x.io")
    page = client.history(HistoryQuery(user="bob@x.io"))
    assert {j.id for j in page.jobs} == set(theirs) and page.total == 3
    assert client.history(HistoryQuery(type="DEMO", user="admin@local")).total == 2
    assert client.history(HistoryQuery(type="TEST_SLEEP")).total == 0
    now = utcnow()
    assert client.history(HistoryQuery(since=now - timedelta(minutes=5))).total == 5
    assert client.history(HistoryQuery(until=now - timedelta(minutes=5))).total == 0
    assert mine


def test_search_is_a_bounded_scan_that_says_so(client: Client) -> None:
    ids = finish_all(client, 6, "failed")
    hit = client.history(HistoryQuery(id_prefix=ids[2][:12]))
    assert [j.id for j in hit.jobs] == [ids[2]] and hit.exact
    assert client.history(HistoryQuery(error="demofailure")).total == 6

    async def scan_four() -> HistoryPage:
        async with AsyncClient() as ac:
            return await history.search(ac.store, HistoryQuery(error="no"), limit=2, scan_limit=4)

    bounded = asyncio.run(scan_four())
    assert bounded.total == 4 and not bounded.exact and bounded.scanned == 4 and len(bounded.jobs) == 2


def test_live_view_is_oldest_first_with_positions_and_includes(client: Client) -> None:
    finished = finish_all(client, 1)[0]
    first, second = client.submit("DEMO", {}), client.submit("DEMO", {}, priority="high")
    view = client.live(include=[finished])
    assert [r.job.id for r in view.jobs] == [first.id, second.id, finished]
    assert view.jobs[1].queue_position == 1 and view.jobs[0].queue_position == 2
    assert view.jobs[2].queue_position is None and view.queue_depth["high"] == 1
    assert client.live(limit=1).truncated


def test_events_advance_past_what_the_user_may_not_see(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    start = client.last_event_id()
    client.submit("DEMO", {}, user="bob@x.io")
    own = client.submit("DEMO", {}, user="staff@x.io")
    settings = Settings(roles={"staff@x.io": "staff"})
    with Client(settings, user="staff@x.io") as staff:
        feed = staff.events(start)
        assert [e.job for e in feed.events] == [own.id] and feed.events[0].event == "submitted"
        assert staff.events(feed.position).events == []
        assert staff.history(HistoryQuery(status=[])).total == 1
        assert staff.history(HistoryQuery(status=[], user="bob@x.io")).total == 0
        assert len(staff.live().jobs) == 1
        with pytest.raises(AccessDenied):
            staff.metrics()
    all_events = client.events(start)
    assert len(all_events.events) == 2 and all_events.events[0].at <= utcnow()


def test_bulk_actions_report_each_job(client: Client) -> None:
    done = finish_all(client, 1)[0]
    queued = client.submit("DEMO", {})
    result = client.cancel_many([queued.id, done, queued.id])
    assert result.done == [queued.id] and "already completed" in result.errors[done]
    failed = finish_all(client, 3, "failed")
    retried = client.retry_matching(HistoryQuery(), limit=2)
    assert retried.done == list(reversed(failed))[:2]
    assert client.retry_matching(HistoryQuery(status=[JobStatus.completed])).done == []
    assert client.retry_many([failed[0], done]).errors.keys() == {done}


def test_percentiles_from_histogram_buckets() -> None:
    hist = {"1": 50, "2.5": 50}
    assert percentile(hist, DURATION_BOUNDS_S, 0.5) == 1.0
    assert percentile(hist, DURATION_BOUNDS_S, 0.95) == pytest.approx(2.35)
    assert percentile({"inf": 3}, DURATION_BOUNDS_S, 0.5) == 3600
    assert percentile({}, DURATION_BOUNDS_S, 0.5) is None
    assert normalise("Timeout after 30.5 s on 9f86d081884c7d65\nTraceback...") == "Timeout after <n> s on <id>"


def test_metrics_invalid_span(client: Client) -> None:
    with pytest.raises(Exception, match="span must be one of"):
        client.metrics("2h")


def test_a_worker_writes_every_counter_the_metrics_page_reads(client: Client, start_worker) -> None:
    worker: subprocess.Popen[bytes] = start_worker()
    jobs = [client.submit("DEMO", {"duration_s": 0.2}) for _ in range(3)]
    bad = client.submit("TEST_FATAL", {})
    for job in [*jobs, bad]:
        wait_until(lambda job=job: client.get(job.id).status.terminal, 20, f"job {job.id} to finish")
    window = wait_until(lambda: (w := client.metrics("1h")).queue_depth() and w, 15, "a queue depth sample")
    assert window.total("completed") == 3 and window.total("failed") == 1
    demo = next(d for d in window.durations() if d.type == "DEMO")
    assert demo.count == 3 and 0.1 < demo.p50_s <= 1 and demo.mean_s is not None
    assert sum(r["count"] for r in window.wait_histogram()) == 4
    assert [e.message for e in window.top_errors] == ["Fatal: the input can never work"]
    assert [(u.user, u.completed, u.failed) for u in window.by_user()] == [("admin@local", 3, 1)]
    assert window.success_rate() == 0.75
    assert worker.poll() is None
