"""The HTTP API over the archive (SQLite; the reads themselves are tested on both stores in test_reads.py):
GET /api/jobs/{id}/events of a job that only the archive holds streams it as a final job's stream
(its record as the snapshot, then the end) instead of an empty stream that an EventSource would reopen
forever; another user's archived job answers exactly like a missing one."""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from runner import Client, Settings
from runner.archive import operations
from runner.models import Job
from runner.policy.access import Role
from runner.storage import transitions
from runner.storage.store import Store, connect
from tests.api_server import ROLES, is_problem, token
from tests.dashboard_fixtures import drive

SAM, OLGA, BOSS = "sam@x.io", "olga@x.io", "boss@x.io"
MISSING = "0" * 32
Frame = dict[str, str]


@pytest.fixture(autouse=True)
def engines() -> Iterator[None]:
    yield
    operations.close_all()


@pytest.fixture
def archive_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    env = {"TASKDECK_ARCHIVE": "true", "TASKDECK_DATA_DIR": str(tmp_path / "data"), "TASKDECK_ARCHIVE_URL": ""}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


async def purge(job_id: str) -> None:
    settings = Settings()
    store = Store(connect(settings), settings)
    try:
        assert (await store.apply(job_id, transitions.purge())).applied
        assert await store.load(job_id) is None
    finally:
        await store.redis.aclose()


@pytest.fixture
def jobs(redis_url: str, archive_env: dict[str, str]) -> tuple[Job, Job]:
    """Two completed jobs of Sam's, both archived: the first then removed from Redis, the second still there."""
    with Client(Settings(roles=ROLES)) as admin:
        gone, held = (admin.submit("DEMO", {"duration_s": 0}, user=SAM) for _ in range(2))
        for job in (gone, held):
            drive(job.id, "completed", result={"text": f"poster {job.id}"})
        assert admin.archive_backfill() == 2
    asyncio.run(purge(gone.id))
    return gone, held


def stream(api: str, job_id: str, auth: dict[str, str], last_id: str | None = None) -> list[Frame]:
    """Every SSE frame ({id, event, data, retry}) until the server ends the stream (within 10 s)."""
    headers = {**auth, **({"Last-Event-ID": last_id} if last_id is not None else {})}
    seen: list[Frame] = []
    current: Frame = {}
    with httpx.stream("GET", f"{api}/api/jobs/{job_id}/events", headers=headers, timeout=10) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            name, _, value = line.partition(":")
            if line and name in ("id", "event", "data", "retry"):
                current[name] = value.removeprefix(" ")
            elif not line and current:
                seen.append(current)
                current = {}
    return seen


def test_an_archived_job_streams_its_record_and_ends_like_a_final_one(
        own_api: Callable[..., str], archive_env: dict[str, str], jobs: tuple[Job, Job]) -> None:
    gone, held = jobs
    api = own_api(**archive_env)
    sam = token(SAM)
    started = time.monotonic()
    (snapshot,) = stream(api, gone.id, sam)
    assert time.monotonic() - started < 5, "the stream ended on its own, without waiting"
    assert snapshot["event"] == "snapshot" and "retry" not in snapshot
    record = json.loads(snapshot["data"])
    assert record["id"] == gone.id and record["status"] == "completed"
    assert record["result"] == {"text": f"poster {gone.id}"}
    assert [f["event"] for f in stream(api, held.id, sam)] == ["snapshot"]  # a final job Redis still holds
    assert stream(api, gone.id, sam, last_id=snapshot["id"]) == [snapshot]  # a reconnect: the record again
    assert [f["event"] for f in stream(api, gone.id, token(BOSS, Role.admin))] == ["snapshot"]  # reads everyone's
    bad = httpx.get(f"{api}/api/jobs/{gone.id}/events", headers={**sam, "Last-Event-ID": "not-an-id"}, timeout=10)
    assert "event id" in is_problem(bad, 422)["detail"]
    health = httpx.get(f"{api}/api/health", timeout=10).json()  # the API process's one archive, read by both
    assert health["archive"]["ok"] is True and health["archive"]["rows"] == 2


def test_another_users_archived_job_streams_like_a_missing_one(
        own_api: Callable[..., str], archive_env: dict[str, str], jobs: tuple[Job, Job]) -> None:
    gone, _ = jobs
    api = own_api(**archive_env)
    olga = token(OLGA)
    other = httpx.get(f"{api}/api/jobs/{gone.id}/events", headers=olga, timeout=10)
    missing = httpx.get(f"{api}/api/jobs/{MISSING}/events", headers=olga, timeout=10)
    is_problem(other, 404)
    is_problem(missing, 404)
    assert json.loads(other.text.replace(gone.id, MISSING)) == missing.json()
    assert other.headers["content-type"] == missing.headers["content-type"]
