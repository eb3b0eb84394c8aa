"""A real redis-server per session, real `arq` worker processes, and a clean database per test."""
from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis

from runner.ops import redis_server
from runner.process import die_with_parent
from runner.settings import Settings
from runner.storage.store import Store, connect

# Fixture modules every test module may use without importing them by hand.
pytest_plugins = ["tests.dashboard_fixtures", "tests.fake_llm", "tests.browser"]
ROOT = Path(__file__).resolve().parent.parent
TEST_SETTINGS = {
    "TASKDECK_LEASE_S": "3",
    "TASKDECK_POLL_DELAY_S": "0.05",
    "TASKDECK_SHUTDOWN_GRACE_S": "0",
    "TASKDECK_PROGRESS_INTERVAL_S": "0.1",
    "TASKDECK_TASK_MODULES": '["runner.tasks", "tests.sample_tasks"]',
    "TASKDECK_DEFAULT_SCHEDULES": "false",  # tests that count schedules start from none; test_refresh turns it on
    "TASKDECK_ARCHIVE": "false",  # no archive in the repo's .data/; archive tests turn it on with a tmp data dir
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(count: int) -> int:
    """The first of `count` consecutive ports free now, below the ephemeral range (where the kernel would
    hand them to outgoing connections meanwhile)."""
    for _ in range(1000):
        first = random.randrange(20000, 32000)
        if all(bindable(port) for port in range(first, first + count)):
            return first
    raise RuntimeError(f"no {count} consecutive free ports")


def bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("redis")
    for attempt in range(5):
        port = free_port()
        try:
            proc = redis_server.start(data, port, persistent=False)
            break
        except RuntimeError:
            if attempt == 4:
                raise
    url = f"redis://127.0.0.1:{port}/0"
    saved = dict(os.environ)
    os.environ.update(TEST_SETTINGS, REDIS_URL=url)
    yield url
    os.environ.clear()
    os.environ.update(saved)
    proc.terminate()
    proc.wait(10)


@pytest.fixture(autouse=True)
def r(redis_url: str) -> Iterator[redis.Redis]:
    """A decoded sync client on a freshly flushed database."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushall()
    yield client
    client.close()


class OwnRedis:
    """A redis-server of one test's own, with AOF like production, that the test may kill or pause."""

    def __init__(self, data: Path) -> None:
        self.data, self.port = data, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = redis_server.start(self.data, self.port, persistent=True)

    def kill_and_restart(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = redis_server.start(self.data, self.port, persistent=True)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """Request it before `start_worker`, so that workers stop before their Redis does."""
    server = OwnRedis(tmp_path / "own-redis")
    yield server
    server.stop()


WorkerFactory = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def start_worker(redis_url: str, tmp_path: Path) -> Iterator[WorkerFactory]:
    """Start `arq runner.worker.WorkerSettings` processes; each is stopped (SIGTERM, then SIGKILL) at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(**settings: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, **TEST_SETTINGS, "REDIS_URL": redis_url, **settings}
        with open(tmp_path / f"worker-{len(procs)}.log", "wb") as log:  # the worker keeps its own copy
            proc = subprocess.Popen([sys.executable, "-m", "arq", "runner.worker.WorkerSettings"], cwd=ROOT, env=env,
                                    stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def worker(start_worker: WorkerFactory) -> subprocess.Popen[bytes]:
    return start_worker()


@pytest.fixture(scope="module")
def api(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `python -m runner api` server for the module's tests (tests/api_server.py)."""
    from tests.api_server import serve, stop

    proc, url = serve({**os.environ, **TEST_SETTINGS, "REDIS_URL": redis_url},
                      tmp_path_factory.mktemp("api") / "api.log")
    yield url
    stop(proc)


@pytest.fixture
def own_api(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start API servers with settings of their own (a Redis, limits); each is stopped at teardown."""
    from tests.api_server import serve, stop

    procs: list[subprocess.Popen[bytes]] = []

    def start(**settings: str) -> str:
        proc, url = serve({**os.environ, **TEST_SETTINGS, "REDIS_URL": redis_url, **settings},
                          tmp_path / f"api-{len(procs)}.log")
        procs.append(proc)
        return url

    yield start
    for proc in procs:
        stop(proc)


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    """A Store on the test Redis, with the test settings (for tests that write through the Lua scripts)."""
    settings = Settings()
    opened = Store(connect(settings), settings)
    yield opened
    await opened.redis.aclose()
