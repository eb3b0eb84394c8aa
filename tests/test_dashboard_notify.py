"""Sidebar: my running jobs, and toasts when my jobs finish (failures at once, completions batched)."""
from __future__ import annotations

from runner import Client
from tests.dashboard_fixtures import drive, open_page, texts
from tests.polling import wait_until


def toasts(at) -> list[str]:
    return [t.value for t in at.toast]


def test_running_count_and_toasts_for_my_finished_jobs(client: Client) -> None:
    at = open_page("workers")
    older = client.submit("DEMO", {})
    drive(older.id, "processing")
    at.run()
    assert "1 of my jobs running" in texts(at)
    failed, done, also = (client.submit("DEMO", {}) for _ in range(3))
    theirs = client.submit("DEMO", {}, user="bob@x.io")
    drive(failed.id, "failed", error="DemoFailure: [click](http://evil.example)")
    drive(done.id, "completed", result={})
    drive(also.id, "completed", result={})
    drive(theirs.id, "failed", error="not mine")
    at.run()
    now = toasts(at)
    assert len(now) == 1 and failed.id[:8] in now[0] and "`DemoFailure: [click](http://evil.example)`" in now[0]
    batched = wait_until(lambda: toasts(at.run()), 10, "the batched completion toast")
    assert batched == [f"2 jobs completed: `{done.id[:8]}`, `{also.id[:8]}`"]
    assert toasts(at.run()) == []
    assert "1 of my jobs running" in texts(at)
