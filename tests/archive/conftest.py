"""The archive's fixtures: a real Postgres for the session (Debian's postgresql, started like Redis is),
SQLite in a temporary file, and the same tests over both through the `archive_url` parameter."""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from glob import glob
from pathlib import Path
from typing import IO, Any

import psycopg
import pytest

from runner.archive.store import Archive
from runner.models import Attempt, Job, JobStatus, Step, StepStatus
from runner.process import die_with_parent
from tests.conftest import free_port

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def pg_bin(name: str) -> str | None:
    found = sorted(glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return found[-1] if found else shutil.which(name)


def pg_user() -> str | None:
    """Postgres refuses to run as root: as root, run it as the `postgres` user (Debian's package makes it)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres").pw_name
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
        return "postgres"


class PgServer:
    """A throwaway Postgres cluster in a temporary folder (no fsync: tests only), that a test may stop
    and start again on the same port."""

    def __init__(self) -> None:
        self.initdb, self.postgres = pg_bin("initdb"), pg_bin("postgres")
        if not (self.initdb and self.postgres):
            raise FileNotFoundError("postgresql is not installed (apt-get install postgresql)")
        self.user = pg_user()
        self.root = Path(tempfile.mkdtemp(prefix="taskdeck-pg-"))  # /tmp: the postgres user can reach it
        if self.user:
            shutil.chown(self.root, self.user)
        self.data, self.port = self.root / "data", free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.run([self.initdb, "-D", str(self.data), "-U", "taskdeck", "--auth=trust", "-E", "UTF8", "--no-sync"])

    def run(self, args: list[str]) -> None:
        subprocess.run(args, check=True, capture_output=True, user=self.user, group=self.user)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://taskdeck@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 20.0) -> None:
        with open(self.root / "postgres.log", "ab") as log:
            self.proc = self.spawn(log)
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not start; see {self.root / 'postgres.log'}")
            time.sleep(0.05)

    def spawn(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [str(self.postgres), "-D", str(self.data), "-p", str(self.port), "-k", str(self.root), "-h", "127.0.0.1",
             "-F", "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off",
             "-c", "max_connections=200"],
            stdout=log, stderr=subprocess.STDOUT, user=self.user, group=self.user,
            preexec_fn=die_with_parent)

    def ready(self) -> bool:
        try:
            with psycopg.connect(self.url().replace("+psycopg", ""), connect_timeout=1):
                return True
        except psycopg.OperationalError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown; SIGTERM's "smart" one waits for every client
            self.proc.wait(20)
        self.proc = None

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url().replace("+psycopg", ""), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    try:
        server = PgServer()
    except FileNotFoundError as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(e))
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def archive_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind: a SQLite file, a new Postgres database."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'archive.db'}"
    server: PgServer = request.getfixturevalue("pg")
    return server.create_database()


@pytest.fixture
def archive(archive_url: str) -> Iterator[Archive]:
    opened = Archive.at(archive_url, lock_timeout_s=0.5, connect_timeout_s=1)
    yield opened
    opened.close()


@pytest.fixture
def outage(backend: str, request: pytest.FixtureRequest,
           archive_url: str) -> Callable[[], AbstractContextManager[None]]:
    """A context in which the archive cannot be written: Postgres stopped, or SQLite locked by another
    connection (with the `archive` fixture's 0.5 s lock timeout)."""

    @contextmanager
    def down() -> Iterator[None]:
        if backend == "postgres":
            server: PgServer = request.getfixturevalue("pg")
            server.stop()
            try:
                yield
            finally:
                server.start()
            return
        import sqlite3

        holder = sqlite3.connect(archive_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()

    return down


def make_job(n: int, **fields: Any) -> Job:
    """A finished job, submitted `n` seconds after BASE (unless `queued_at` is given)."""
    queued = fields.pop("queued_at", BASE + timedelta(seconds=n))
    status = fields.pop("status", JobStatus.completed)
    steps = [Step(name=name, status=StepStatus.completed) for name in fields.pop("steps", ["Draft"])]
    attempts = fields.pop("attempts", 1)
    log = [Attempt(number=i + 1, outcome="completed", steps=steps, traceback="Traceback ..." * 10)
           for i in range(attempts)]
    values: dict[str, Any] = {
        "id": fields.pop("id", f"job{n:05d}"), "type": "DEMO", "payload": {"topic": f"job {n}"},
        "user_id": "ann@acme.io", "org_id": "acme", "status": status, "queued_at": queued,
        "started_at": queued + timedelta(seconds=1), "completed_at": queued + timedelta(seconds=3),
        "updated_at": queued + timedelta(seconds=3), "attempts": attempts, "steps": steps, "attempt_log": log,
        "result": {"text": f"result {n}"} if status is JobStatus.completed else None,
    }
    values.update(fields)
    return Job.model_validate(values)
