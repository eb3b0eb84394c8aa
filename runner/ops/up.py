"""`python -m runner up`: Redis (unless REDIS_URL is set), workers, the dashboard and the HTTP API, as one command.

Children die with this process (PDEATHSIG), so a killed `up` leaves no orphans holding ports; a
second `up` finds the first one's lock and says where it runs instead of failing on a busy port.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO

import redis

from ..llm import embedded
from ..process import die_with_parent
from ..settings import Settings
from ..storage import sentinel
from ..storage.store import blocking, redacted, unavailable
from . import redis_server

ROOT = Path(__file__).resolve().parents[2]
Children = list[tuple[str, subprocess.Popen[bytes]]]


class UpError(Exception):
    """Something `up` cannot start; the message says what to do."""


class Unhealthy(UpError):
    """A child runs but says it cannot work, and why."""


def run(port: int, workers: int, api_port: int, ha: bool = False) -> int:
    settings = Settings()
    data = settings.data_dir
    data.mkdir(parents=True, exist_ok=True)
    lock = take_lock(data)
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        env = dict(os.environ)
        where = start_redis(settings, data, children, env, ha)
        for taken, flag in ((port, "--port"), (api_port, "--api-port")):
            if port_open(taken):
                raise UpError(f"port {taken} is taken by another program; pass {flag} to use another")
        model = serve_model(settings, env, children)
        start_services(env, data, children, workers, port, api_port)
        wait_healthy(f"http://127.0.0.1:{port}/_stcore/health", "the dashboard", children, data)
        wait_healthy(f"http://127.0.0.1:{api_port}/api/health", "the HTTP API", children, data)
        llm = model_line(settings, model, children, data)
        print(f"Taskdeck is up: dashboard http://127.0.0.1:{port}\n  HTTP API http://127.0.0.1:{api_port}/api "
              f"(docs /docs; tokens: python -m runner token create --user EMAIL)\n  Redis {where}, "
              f"{workers} worker(s); logs in {data}/\n  {llm}\n  Ctrl-C stops everything.", flush=True)
        lock.write(f"{os.getpid()} http://127.0.0.1:{port}\n")
        lock.flush()
        while not stopping:
            for name, proc in children:
                if proc.poll() is not None:
                    raise UpError(f"{name} exited with code {proc.returncode}; see {data}/ for its log")
            time.sleep(0.2)
        return 0
    except UpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        shutdown(children)


def start_redis(settings: Settings, data: Path, children: Children, env: dict[str, str], ha: bool) -> str:
    """Check the Redis that REDIS_URL or TASKDECK_REDIS_SENTINELS name, else start one here (its port must
    be free): one redis-server, or with `ha` a primary, a replica and three sentinels. Sets what the
    children need in `env` and says where Redis is."""
    if ha and (settings.redis_url or settings.redis_sentinels):
        raise UpError("--ha starts its own Redis primary, replica and sentinels; unset REDIS_URL and "
                      "TASKDECK_REDIS_SENTINELS to use it")
    if settings.redis_sentinels:
        check_redis(settings)
        return sentinel.where(settings)
    if settings.redis_url:
        check_redis(settings)
        return redacted(settings.redis_url)
    port = settings.local_redis_port
    for taken in range(port, port + (5 if ha else 1)):
        if port_open(taken):
            raise UpError(f"port {taken} is taken by another program; stop it or set TASKDECK_LOCAL_REDIS_PORT "
                          "(or REDIS_URL to use a Redis you run)")
    if not ha:
        children.append(("redis", redis_server.start(data / "redis", port)))
        env["REDIS_URL"] = settings.url
        return redacted(settings.url)
    started = redis_server.start_ha(data / "ha", port, settings.redis_sentinel_master)
    children.extend([("redis primary", started.primary), ("redis replica", started.replicas[0]),
                     *((f"sentinel {n + 1}", proc) for n, proc in enumerate(started.sentinels))])
    env["TASKDECK_REDIS_SENTINELS"] = started.setting
    return (f"primary :{port}, replica :{port + 1}, sentinels {started.setting} "
            f"(master {settings.redis_sentinel_master})")


def start_services(env: dict[str, str], data: Path, children: Children, workers: int, port: int,
                   api_port: int) -> None:
    """The workers, the dashboard and the HTTP API, each logging to its own file in `data`."""
    for n in range(workers):
        children.append((f"worker {n + 1}", spawn([sys.executable, "-m", "arq", "runner.worker.WorkerSettings"],
                                                  env, data / f"worker-{n + 1}.log")))
    children.append(("dashboard", spawn([sys.executable, "-m", "streamlit", "run", "dashboard.py",
                                         "--server.port", str(port), "--server.address", "127.0.0.1",
                                         "--server.headless", "true"], env, data / "dashboard.log")))
    children.append(("api", spawn([sys.executable, "-m", "runner", "api", "--host", "127.0.0.1",
                                   "--port", str(api_port)], env, data / "api.log")))


def serve_model(settings: Settings, env: dict[str, str], children: list[tuple[str, subprocess.Popen[bytes]]]
                ) -> str | None:
    """With no endpoint set, serve the embedded demo model once for every worker (and the dashboard and API,
    which show it): its URL goes into their environment. None when it is not needed, already served
    (TASKDECK_LLM_EMBEDDED_URL) or not installed (the generative types are then refused at submit, saying
    how to fix it)."""
    options = embedded.EmbeddedOptions()
    if not embedded.active(settings) or options.url or embedded.not_installed(options):
        return None
    child = embedded.start(settings.data_dir / "llm.log")
    children.append(("the embedded model", child.proc))
    env["TASKDECK_LLM_EMBEDDED_URL"] = child.url
    return child.url


def model_line(settings: Settings, model: str | None, children: list[tuple[str, subprocess.Popen[bytes]]],
               data: Path) -> str:
    """The line of the banner that says which model answers the generative types (once it does)."""
    if model:
        try:
            wait_healthy(model.removesuffix("/v1") + "/health", "the embedded model", children, data,
                         failed=embedded_failure)
        except Unhealthy as e:  # it stays up, failing each generative job at once with the reason
            return f"LLM: {e}; DEMO, SCRAPE_WEBSITE and SYNC_RSS work regardless"
        return (f"LLM: {embedded.MODEL}, the embedded demo model, at {model}; for real output set "
                "TASKDECK_LLM_BASE_URL and TASKDECK_LLM_MODEL (README)")
    if settings.llm_base_url:
        return f"LLM: {settings.llm_model or '(TASKDECK_LLM_MODEL is not set)'} at {redacted(settings.llm_base_url)}"
    if settings.llm_embedded and (served := embedded.EmbeddedOptions().url):
        return f"LLM: the embedded demo model at {served} (TASKDECK_LLM_EMBEDDED_URL)"
    if settings.llm_embedded:
        return f"LLM: none, the generative types are refused: {embedded.problem()}"
    return "LLM: none (TASKDECK_LLM_EMBEDDED=0): the generative types are refused until TASKDECK_LLM_BASE_URL is set"


def embedded_failure(status: int, body: bytes) -> str | None:
    """The embedded model answers 424 with the reason when it cannot load."""
    if status != 424:
        return None
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace")


def take_lock(data: Path) -> IO[str]:
    lock = open(data / "up.lock", "a+")  # noqa: SIM115  (held open by `up`: the flock lasts as long as the file)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "starting"
        print(f"error: Taskdeck is already running from this folder ({holder}); stop it with Ctrl-C "
              "where it runs before starting another", file=sys.stderr)
        sys.exit(1)
    lock.truncate(0)
    return lock


def check_redis(settings: Settings) -> None:
    try:
        with blocking(settings) as client:
            client.ping()
    except (redis.RedisError, OSError) as e:
        named = "TASKDECK_REDIS_SENTINELS" if settings.redis_sentinels else "REDIS_URL"
        raise UpError(f"{named} is set but Redis does not answer ({unavailable(settings, e, 'nothing was started')}); "
                      f"start it or unset {named} to let `up` run a local one") from None


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=die_with_parent)


def wait_healthy(url: str, what: str, children: list[tuple[str, subprocess.Popen[bytes]]], data: Path,
                 timeout: float = 60, failed: Callable[[int, bytes], str | None] | None = None) -> None:
    """Wait for `url` to answer 200; UpError if a child exits first, or if `failed` finds a reason in a reply."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in children:
            if proc.poll() is not None:
                raise UpError(f"{name} exited with code {proc.returncode} while starting; see {data}/ for its log")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except urllib.error.HTTPError as e:
            if failed and (reason := failed(e.code, e.read())):
                raise Unhealthy(reason) from None
            time.sleep(0.2)
        except OSError:
            time.sleep(0.2)
    raise UpError(f"{what} did not come up within {timeout:g} s; see its log in {data}/")


def shutdown(children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    """Dashboard first, then workers (they hand running jobs back), Redis last."""
    for _, proc in reversed(children):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=Settings().shutdown_grace_s + 10)
            except subprocess.TimeoutExpired:
                proc.kill()
