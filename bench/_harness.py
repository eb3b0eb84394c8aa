"""Shared bench plumbing: a private redis-server and worker processes, and percentile printing."""
from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner import redis_server  # noqa: E402
from tests.conftest import free_port  # noqa: E402


@contextmanager
def private_redis() -> Iterator[str]:
    """A throwaway redis-server on a free port; yields its URL and sets REDIS_URL for children."""
    with tempfile.TemporaryDirectory() as data:
        port = free_port()
        proc = redis_server.start(Path(data), port, persistent=False)
        url = f"redis://127.0.0.1:{port}/0"
        os.environ["REDIS_URL"] = url
        try:
            yield url
        finally:
            proc.terminate()
            proc.wait(10)


def start_worker(log: Path, **settings: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings}
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "arq", "runner.worker.WorkerSettings"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, preexec_fn=redis_server.die_with_parent)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def ms(values: list[float]) -> str:
    return f"p50 {pct(values, 50) * 1000:7.2f} ms   p99 {pct(values, 99) * 1000:7.2f} ms   (n={len(values)})"
