"""Redis away: every page shows one clear banner, never a traceback, and comes back by itself."""
from __future__ import annotations

from pathlib import Path

import pytest

from runner import Client
from runner.ops import redis_server
from tests.conftest import free_port
from tests.dashboard_fixtures import open_page, texts

PAGES = ["submit", "live", "job", "history", "metrics", "workers", "settings", "inbox", "profile"]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_shows_a_banner_when_redis_is_unreachable(page: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    at = open_page(page, id="0" * 32)
    shown = texts(at)
    assert "Job queue unavailable" in shown and "cannot reach Redis" in shown
    assert "Job queue offline" in shown
    assert not at.exception


@pytest.mark.parametrize("page", ["submit", "live"])
def test_a_page_shows_a_banner_when_no_primary_answers_through_the_sentinels(
        page: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKDECK_REDIS_SENTINELS", f"127.0.0.1:{free_port()}")
    at = open_page(page, id="0" * 32)
    shown = texts(at)
    assert "Job queue unavailable" in shown and "Redis is failing over or down" in shown
    assert not at.exception


def test_a_page_recovers_when_redis_comes_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    monkeypatch.setenv("REDIS_URL", url)
    server = redis_server.start(tmp_path, port, persistent=False)
    try:
        with Client() as c:
            job = c.submit("DEMO", {})
        at = open_page("live")
        assert list(at.dataframe[0].value["Job"]) == [f"job?id={job.id}"]
        server.terminate()
        server.wait(10)
        at.run()
        assert "Job queue unavailable" in texts(at) and not at.exception
        server = redis_server.start(tmp_path, port, persistent=False)
        at.run()
        assert "Job queue unavailable" not in texts(at) and not at.exception
        assert "No queued or running jobs" in texts(at)  # a fresh, empty Redis
    finally:
        server.terminate()
        server.wait(10)
