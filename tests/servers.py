"""A real `streamlit run dashboard.py` for browser tests, stopped with its test module."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runner.process import die_with_parent
from tests.conftest import ROOT, free_port
from tests.polling import wait_until

HOST = "127.0.0.1"


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as answer:
            return answer.status == 200
    except OSError:
        return False


@contextmanager
def dashboard_server(log: Path, env: dict[str, str], *args: str, port: int | None = None) -> Iterator[str]:
    """Yield the URL of a dashboard serving on `port` (a free one by default) once it answers."""
    port = port or free_port()
    url = f"http://{HOST}:{port}"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "dashboard.py", "--server.port", str(port),
             "--server.headless", "true", "--server.address", HOST, *args],
            cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent)
        try:
            wait_until(lambda: healthy(url) or proc.poll() is not None, 30, "the dashboard's health check")
            assert proc.poll() is None, f"streamlit exited with {proc.returncode}; see {log}"
            yield url
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
