"""`python -m runner up`, the main run command: Redis, a worker and the dashboard, stopped together."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from runner import Client, JobStatus, Settings
from tests.conftest import ROOT, free_port, free_ports
from tests.polling import wait_until


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.mark.skipif(not (ROOT / "dashboard.py").exists(), reason="no dashboard.py yet")
def test_up_starts_everything_and_stops_it_on_ctrl_c(tmp_path: Path) -> None:
    port, redis_port, api_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env |= {"TASKDECK_DATA_DIR": str(tmp_path), "TASKDECK_LOCAL_REDIS_PORT": str(redis_port),
            "TASKDECK_API_PORT": str(api_port)}
    up = subprocess.Popen([sys.executable, "-m", "runner", "up", "--port", str(port)], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: healthy(port) or up.poll() is not None, 60, "the dashboard")
        assert up.poll() is None
        wait_until(lambda: listening(api_port), 30, "the HTTP API")
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/api/health", timeout=5) as r:
            assert r.status == 200
        with Client(Settings(redis_url=f"redis://127.0.0.1:{redis_port}/0")) as client:
            job = client.submit("DEMO", {"duration_s": 1, "steps": 3})
            done = wait_until(lambda: (j := client.get(job.id)).status.terminal and j, 30, "the job")
        assert done.status is JobStatus.completed and done.progress == 100

        second = subprocess.run([sys.executable, "-m", "runner", "up", "--port", str(free_port())], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=30)
        assert second.returncode == 1 and "already running" in second.stderr
    finally:
        up.send_signal(signal.SIGINT)
        out, err = up.communicate(timeout=30)
    assert up.returncode == 0, err
    assert f"dashboard http://127.0.0.1:{port}" in out and f"HTTP API http://127.0.0.1:{api_port}/api" in out
    assert not listening(port) and not listening(redis_port) and not listening(api_port)
    assert (tmp_path / "redis" / "appendonlydir").is_dir(), "the local Redis keeps an AOF under the data dir"


@pytest.mark.skipif(not (ROOT / "dashboard.py").exists(), reason="no dashboard.py yet")
def test_up_ha_runs_everything_through_sentinels(tmp_path: Path) -> None:
    port, redis_port, api_port = free_port(), free_ports(5), free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env |= {"TASKDECK_DATA_DIR": str(tmp_path), "TASKDECK_LOCAL_REDIS_PORT": str(redis_port),
            "TASKDECK_API_PORT": str(api_port)}
    up = subprocess.Popen([sys.executable, "-m", "runner", "up", "--ha", "--port", str(port)], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sentinels = ",".join(f"127.0.0.1:{redis_port + n}" for n in (2, 3, 4))
    try:
        wait_until(lambda: healthy(port) or up.poll() is not None, 60, "the dashboard")
        assert up.poll() is None
        with Client(Settings(redis_sentinels=sentinels, redis_min_replicas=1)) as client:
            job = client.submit("DEMO", {"duration_s": 0.2})
            done = wait_until(lambda: (j := client.get(job.id)).status.terminal and j, 30, "the job")
        assert done.status is JobStatus.completed
    finally:
        up.send_signal(signal.SIGINT)
        out, err = up.communicate(timeout=30)
    assert up.returncode == 0, err
    assert f"sentinels {sentinels}" in out
    assert not any(listening(redis_port + n) for n in range(5))
