"""The archive in operation: real workers feed it on their own (and run jobs without it when it cannot be
opened), `python -m runner archive status|backfill|prune`, /api/health and the Workers page."""
from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from runner import AsyncClient, Client, JobStatus, Settings
from runner.archive import handle, migrate, operations
from runner.archive.store import Archive
from runner.storage.store import Store, connect
from runner.worker import archiving
from tests.archive.conftest import make_job
from tests.conftest import WorkerFactory, free_port
from tests.dashboard_fixtures import drive, open_page, texts
from tests.ops.test_cli import cli
from tests.polling import wait_until

OPS = {"TASKDECK_ROLES": '{"boss@x.io": "admin", "ann@x.io": "analyst", "*@x.io": "staff"}'}


def refused_url() -> str:
    """A Postgres URL where nothing listens: the archive is down."""
    return f"postgresql://taskdeck:s3cret@127.0.0.1:{free_port()}/archive"


@pytest.fixture(autouse=True)
def engines() -> Iterator[None]:
    yield
    operations.close_all()  # the engines this process opened on each test's archive


@pytest.fixture
def archive_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """The archive on, SQLite under a data dir in tmp, for this process and for the processes given the
    returned settings."""
    env = {"TASKDECK_ARCHIVE": "true", "TASKDECK_DATA_DIR": str(tmp_path / "data"), "TASKDECK_ARCHIVE_URL": ""}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def finished(client: Client, ids: list[str], timeout: float = 30) -> None:
    wait_until(lambda: all(client.get(job_id).status.terminal for job_id in ids), timeout, f"{len(ids)} jobs to end")


def run_jobs(client: Client, ok: int = 4, failing: int = 1) -> list[str]:
    ids = [client.submit("DEMO", {"duration_s": 0}).id for _ in range(ok)]
    ids += [client.submit("TEST_FAIL_WITH", {"message": f"nope {n}"}).id for n in range(failing)]
    finished(client, ids)
    return ids


def archived_ids(settings: Settings) -> set[str]:
    from runner.archive.store import Filters

    archive = Archive.open(settings, migrate_now=False)
    try:
        return {job.id for job in archive.page(Filters(), None, 1000, visible_to=None).jobs}
    finally:
        archive.close()


def test_a_worker_feeds_the_archive_on_its_own(start_worker: WorkerFactory, archive_on: dict[str, str],
                                               archive_url: str) -> None:
    """On both stores: the worker migrates the archive at startup and archives every finished job; at
    shutdown it leaves the consumer group (nothing pending on it)."""
    env = {**archive_on, "TASKDECK_ARCHIVE_URL": archive_url}
    worker = start_worker(**env)
    settings = Settings(archive=True, archive_url=archive_url)
    with Client(settings) as client:
        ids = run_jobs(client)

        def all_archived() -> bool:
            found = client.archive_status()
            return found.ok and found.rows == len(ids) and found.backlog.pending == 0 and found.backlog.lag == 0

        wait_until(all_archived, 20, "the worker to archive every finished job")
        assert archived_ids(settings) == set(ids)
        status = client.archive_status()
        assert status.revision == migrate.head() and status.backend in ("sqlite", "postgresql")
        assert status.backlog.consumers == 1
        worker.send_signal(signal.SIGTERM)
        worker.wait(15)
        assert client.archive_status().backlog.consumers == 0


def test_a_worker_that_cannot_open_the_archive_runs_jobs_and_says_why_once(
        start_worker: WorkerFactory, archive_on: dict[str, str], tmp_path: Path) -> None:
    url = refused_url()
    worker = start_worker(**{**archive_on, "TASKDECK_ARCHIVE_URL": url})
    with Client() as client:
        run_jobs(client, ok=3, failing=1)
        assert client.count(status=[JobStatus.completed]) == 3
    worker.send_signal(signal.SIGTERM)
    worker.wait(15)
    log = (tmp_path / "worker-0.log").read_text()
    lines = [line for line in log.splitlines() if "archive" in line]
    assert len(lines) == 1, log
    assert "archive: archive unavailable at postgresql+psycopg://taskdeck:***@127.0.0.1" in lines[0]
    assert "runs jobs without archiving" in lines[0] and "s3cret" not in log


async def test_a_worker_opens_the_archive_once_it_can(redis_url: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The archive's folder cannot be made (a file is in the way): the worker's feed tries again, quietly, and
    feeds as soon as it can open it; stopping it closes the archive."""
    monkeypatch.setattr(archiving, "RETRY_OPEN_S", 0.2)
    monkeypatch.setattr(archiving, "EVERY_S", 0.05)
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    settings = Settings(archive=True, archive_url="", data_dir=blocker / "data")
    store = Store(connect(settings), settings)
    try:
        feed = await archiving.Archiving.start(store, "w-test")
        assert feed is not None and feed.feeder is None and "Not a directory" in (feed.problem or "")
        blocker.unlink()
        await eventually(lambda: feed.feeder is not None and feed.problem is None, 10, "the archive to open")
        assert (blocker / "data" / "archive.db").exists()
        await feed.stop()
        assert feed.task is not None and feed.task.done()
    finally:
        await store.redis.aclose()


async def eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        await asyncio.sleep(0.02)


# --- the command line ---------------------------------------------------------------------------------------


def test_cli_status_backfill_and_prune(redis_url: str, archive_on: dict[str, str]) -> None:
    status = cli("archive", "status", "--json", env=archive_on)
    assert status.returncode == 0, status.stderr
    found = json.loads(status.stdout)
    assert found["ok"] is True and found["backend"] == "sqlite" and found["rows"] == 0
    assert found["url"].endswith("/data/archive.db") and found["revision"] is None  # not migrated by reading
    assert found["backlog"] == {"lag": 0, "pending": 0, "consumers": 0, "last_delivered": "0-0"}

    with Client() as client:  # jobs that ended while no worker archived: only a backfill brings them
        ids = [client.submit("DEMO").id for _ in range(3)]
    for job_id in ids:
        drive(job_id, "completed", result={"text": "done"})
    backfill = cli("archive", "backfill", "--json", env=archive_on)
    assert backfill.returncode == 0, backfill.stderr
    assert json.loads(backfill.stdout) == {"archived": 3}
    assert cli("archive", "backfill", env=archive_on).stdout == "archived 3 jobs\n"  # idempotent

    old = [make_job(n, queued_at=datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=n)) for n in range(4)]
    archive = Archive.open(Settings())
    try:
        archive.upsert(old)
    finally:
        archive.close()
    text = cli("archive", "status", env=archive_on).stdout
    assert "archive: sqlite at sqlite:///" in text and "jobs 7" in text and "0 pending" in text
    prune = cli("archive", "prune", "--before", "2025-06-01", "--json", env=archive_on)
    assert prune.returncode == 0, prune.stderr
    assert json.loads(prune.stdout) == {"deleted": 4, "before": "2025-06-01"}
    after = json.loads(cli("archive", "status", "--json", env=archive_on).stdout)
    assert after["rows"] == 3 and after["revision"] == migrate.head() and after["size_bytes"] > 0
    with Client() as client:
        assert [entry["action"] for entry in client.audit(2)] == [
            "archive prune before 2025-06-01 00:00 UTC: 4 jobs deleted", "archive backfill: 3 jobs written"]


@pytest.mark.parametrize(("args", "settings", "code", "message"), [
    (("status",), {"TASKDECK_ARCHIVE_URL": "refused"}, 1, "error: archive unavailable at postgresql+psycopg://"
                                                           "taskdeck:***@127.0.0.1:"),
    (("backfill",), {"TASKDECK_ARCHIVE_URL": "refused"}, 1, "error: archive unavailable at postgresql+psycopg://"),
    (("status",), {"TASKDECK_ARCHIVE_URL": "nosuchdb://x"}, 1, "error: the archive at nosuchdb://x cannot be opened"),
    (("prune", "--before", "2025-13-01"), {}, 2, "error: '2025-13-01' is not a date; write it as YYYY-MM-DD"),
    (("prune", "--before", "2999-01-01"), {}, 2, "error: 2999-01-01 00:00 UTC is in the future"),
    (("prune", "--before", "2025-01-01", "--as", "sam@x.io"), OPS, 2, "error: sam@x.io may not change settings"),
    (("backfill", "--as", "ann@x.io"), OPS, 2, "error: ann@x.io may not change settings"),
    (("status", "--as", "sam@x.io"), OPS, 2, "error: sam@x.io may not read everyone's jobs"),
    (("status",), {"TASKDECK_ARCHIVE": "false"}, 2, "error: the archive is off (TASKDECK_ARCHIVE=false)"),
])
def test_cli_errors_are_one_line(redis_url: str, archive_on: dict[str, str], args: tuple[str, ...],
                                 settings: dict[str, str], code: int, message: str) -> None:
    if settings.get("TASKDECK_ARCHIVE_URL") == "refused":
        settings = {"TASKDECK_ARCHIVE_URL": refused_url()}
    out = cli("archive", *args, env={**archive_on, **settings})
    assert out.returncode == code, out.stderr
    assert out.stderr.startswith(message) and out.stderr.count("\n") == 1, out.stderr
    assert out.stdout == "" and "s3cret" not in out.stderr


def test_the_analyst_reads_the_status(redis_url: str, archive_on: dict[str, str]) -> None:
    out = cli("archive", "status", "--json", "--as", "ann@x.io", env={**archive_on, **OPS})
    assert out.returncode == 0 and json.loads(out.stdout)["ok"] is True, out.stderr


# --- one Archive per process ---------------------------------------------------------------------------------


async def test_the_clients_reads_and_the_operations_share_one_archive(redis_url: str,
                                                                      archive_on: dict[str, str]) -> None:
    """The first read opens (and migrates) this process's Archive; the operations use the same one, every
    client holds it until it closes, and the last close closes its connections."""
    settings = Settings()
    async with AsyncClient(settings) as one, AsyncClient(settings) as two:
        assert await one.count(status=[]) == 0 and await two.count(status=[]) == 0  # both read the archive
        shared = one.archive.held
        assert shared is not None and shared is two.archive.held and shared.holders == 2
        archive = operations.opened(settings)
        assert shared.archive is archive and archive.migrated
        assert (await one.archive_status()).ok and operations.opened(settings) is archive
        await two.close()
        assert shared.holders == 1 and await one.count(status=[]) == 0
    assert shared.holders == 0 and shared.archive is archive and archive.engine.pool.checkedin() == 0


async def test_a_failed_open_is_logged_once_and_read_around_for_a_while(
        redis_url: str, archive_on: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A client that cannot open the archive reads Redis alone, says why once, and leaves the archive alone
    for RETRY_OPEN_S: every client of the process, since they share the archive."""
    settings = Settings(archive_url=refused_url())
    opens: list[str] = []
    real = Archive.at

    def counted(url: str, **kwargs: object) -> Archive:
        opens.append(url)
        return real(url, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Archive, "at", counted)
    async with AsyncClient(settings) as one, AsyncClient(settings) as two:
        for client in (one, two, one):
            assert await client.count(status=[]) == 0
    warned = [r.getMessage() for r in caplog.records if "archive: not read" in r.getMessage()]
    assert len(opens) == 1 and len(warned) == 1 and "s3cret" not in warned[0]
    assert handle.of(settings).resting()
    monkeypatch.setattr(handle, "RETRY_OPEN_S", 0.0)
    handle.of(settings).retry_at = 0.0
    async with AsyncClient(settings) as three:
        assert await three.count(status=[]) == 0  # tried again: still down, the same problem not logged again
    assert len([r for r in caplog.records if "archive: not read" in r.getMessage()]) == 1


# --- /api/health ---------------------------------------------------------------------------------------------


def test_health_shows_the_archive(own_api: Callable[..., str], start_worker: WorkerFactory,
                                  archive_on: dict[str, str]) -> None:
    start_worker(**archive_on)
    api = own_api(**archive_on)
    with Client() as client:
        run_jobs(client, ok=2, failing=0)
        wait_until(lambda: client.archive_status().rows == 2, 20, "the worker to archive both jobs")
    health = httpx.get(f"{api}/api/health").json()  # its first count: health counts at most every 30 s
    assert health["redis"] is True and health["workers_alive"] == 1
    assert health["archive"] == {"ok": True, "rows": 2, "problem": None, "backlog": {
        "lag": 0, "pending": 0, "consumers": 1, "last_delivered": health["archive"]["backlog"]["last_delivered"]}}


def test_a_down_archive_is_ok_false_not_a_failed_health(own_api: Callable[..., str],
                                                        archive_on: dict[str, str]) -> None:
    api = own_api(**{**archive_on, "TASKDECK_ARCHIVE_URL": refused_url()})
    answer = httpx.get(f"{api}/api/health", timeout=20)
    assert answer.status_code == 200
    found = answer.json()
    assert found["redis"] is True and found["archive"]["ok"] is False and found["archive"]["rows"] is None
    assert "Connection refused" in found["archive"]["problem"] and "s3cret" not in answer.text
    assert found["archive"]["backlog"] == {"lag": 0, "pending": 0, "consumers": 0, "last_delivered": "0-0"}


# --- the Workers page ----------------------------------------------------------------------------------------


def metrics(at: object) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}  # type: ignore[attr-defined]


def test_workers_page_shows_the_archive(redis_url: str, archive_on: dict[str, str]) -> None:
    with Client() as client:
        ids = [client.submit("DEMO").id for _ in range(2)]
        for job_id in ids:
            drive(job_id, "completed")
        assert client.archive_backfill() == 2
    at = open_page("workers")
    shown = metrics(at)
    assert shown["Backend"] == "`sqlite`" and shown["Jobs archived"] == "2"
    # no worker has fed the archive yet: the 6 events (2 jobs submitted, started, completed) are all unread
    assert shown["Backlog unread"] == "6" and shown["Backlog pending"] == "0"
    assert "archive.db" in texts(at) and not at.error


def test_workers_page_when_the_archive_is_down_or_off(redis_url: str, archive_on: dict[str, str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKDECK_ARCHIVE_URL", refused_url())
    at = open_page("workers")
    assert metrics(at)["Jobs archived"] == "—"
    assert "The archive does not answer" in texts(at) and "Connection refused" in texts(at)
    assert "s3cret" not in texts(at)
    monkeypatch.setenv("TASKDECK_ARCHIVE", "false")
    at = open_page("workers")
    assert "The archive is off (TASKDECK_ARCHIVE=false)" in texts(at) and "Jobs archived" not in metrics(at)


def test_workers_page_tells_staff_the_archive_is_for_analysts(redis_url: str, archive_on: dict[str, str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKDECK_ROLES", OPS["TASKDECK_ROLES"])
    at = open_page("workers", as_user="sam@x.io")
    assert "Analysts and admins see the archive's state here." in texts(at)
