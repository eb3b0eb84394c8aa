"""README's minimal Redis ACL users are enough for workers and the dashboard, and no more."""
from __future__ import annotations

import re

import pytest
import redis

from runner import Client, JobStatus, Settings
from tests.conftest import ROOT
from tests.polling import wait_until


def readme_acl() -> dict[str, str]:
    """The `ACL SETUSER` lines as README gives them, keyed by user name."""
    lines = re.findall(r"^ACL SETUSER (\S+) (.+)$", (ROOT / "README.md").read_text(), re.MULTILINE)
    assert {name for name, _ in lines} == {"taskdeck-worker", "taskdeck-dashboard"}
    return dict(lines)


@pytest.fixture
def acl_urls(redis_url: str, r: redis.Redis):
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    urls = {}
    for name, rules in readme_acl().items():
        password = f"{name}-secret"
        r.execute_command("ACL", "SETUSER", name, *rules.replace("<password>", password).split())
        urls[name] = f"redis://{name}:{password}@127.0.0.1:{port}/0"
    yield urls
    for name in urls:
        r.execute_command("ACL", "DELUSER", name)


def test_minimal_acl_users_run_the_whole_lifecycle(acl_urls: dict[str, str], start_worker) -> None:
    start_worker(REDIS_URL=acl_urls["taskdeck-worker"])
    with Client(Settings(redis_url=acl_urls["taskdeck-dashboard"])) as dashboard:
        done = dashboard.submit("DEMO", {"duration_s": 0.2, "steps": 2})
        assert dashboard.wait_terminal(done.id, 15).status is JobStatus.completed
        running = dashboard.submit("TEST_SLEEP", {"seconds": 30})
        wait_until(lambda: dashboard.get(running.id).status is JobStatus.processing, 15, "the job to start")
        assert dashboard.cancel(running.id).status is JobStatus.cancelled
        assert dashboard.retry(running.id).status is JobStatus.queued
        assert dashboard.stats().workers_alive == 1


def test_acl_users_cannot_touch_other_keys_or_flush(acl_urls: dict[str, str]) -> None:
    for url in acl_urls.values():
        client = redis.Redis.from_url(url)
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.set("someone-elses:key", 1)
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.flushall()
        client.close()
