"""Shared bench plumbing: a private redis-server, Taskdeck and bare-ARQ worker processes, Redis
counters (INFO commandstats / cpu / memory), alternating rounds, and their medians and ratios.

Every benchmark compares systems *in the same round* on the same Redis: a verdict is a median of
same-round ratios (or of per-round figures), never one absolute time, because this machine is shared.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import redis  # noqa: E402
from arq.constants import health_check_key_suffix  # noqa: E402

from runner.ops import redis_server  # noqa: E402
from runner.process import die_with_parent  # noqa: E402

BARE_QUEUE = "bench:bare"
BENCH_TASK_MODULES = '["runner.tasks", "bench.tasks"]'
ARQ_DEFAULT_MAX_JOBS, ARQ_DEFAULT_POLL_DELAY = 10, 0.5


# ---------------------------------------------------------------------------------------------
# Redis and processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def private_redis() -> Iterator[str]:
    """A throwaway redis-server on a free port; yields its URL and sets REDIS_URL for children, and
    TASKDECK_ARCHIVE=false: benchmarks compare with bare ARQ, so a worker archives only when its
    system asks for it (`archive_env`, throughput.py --archive)."""
    os.environ["TASKDECK_ARCHIVE"] = "false"
    with tempfile.TemporaryDirectory() as data:
        for attempt in range(5):
            port = free_port()
            try:
                proc = redis_server.start(Path(data), port, persistent=False)
                break
            except RuntimeError:
                if attempt == 4:
                    raise
        url = f"redis://127.0.0.1:{port}/0"
        os.environ["REDIS_URL"] = url
        try:
            yield url
        finally:
            proc.terminate()
            proc.wait(10)


def bench_env() -> None:
    """Make the bench task types visible to every Settings() built in this process from now on (and
    keep the archive off, as private_redis does)."""
    os.environ["TASKDECK_TASK_MODULES"] = BENCH_TASK_MODULES
    os.environ["TASKDECK_ARCHIVE"] = "false"


def archive_env(data_dir: Path) -> dict[str, str]:
    """The settings of a worker that feeds the archive: SQLite under `data_dir` (a temporary folder,
    never the repo's .data/), or TASKDECK_ARCHIVE_URL when the caller's environment sets one."""
    return {"TASKDECK_ARCHIVE": "true", "TASKDECK_DATA_DIR": str(data_dir)}


def wait_archived(r: redis.Redis, timeout: float, prefix: str = "taskdeck:", interval: float = 0.01) -> float:
    """Poll the archive feed's consumer group until every event is read and acknowledged; returns the
    time. (XINFO is never sent by workers: it is not counted against them.)"""
    deadline = time.monotonic() + timeout
    while True:
        groups = r.xinfo_groups(f"{prefix}events") if r.exists(f"{prefix}events") else []
        group = next((g for g in groups if g.get("name") == "archive"), None)
        now = time.time()
        if group is not None and group.get("lag") == 0 and int(group["pending"]) == 0:
            return now
        if time.monotonic() > deadline:
            raise TimeoutError(f"the archive feed did not catch up within {timeout:g} s: {group}")
        time.sleep(interval)


def start_worker(log: Path, **settings: str) -> subprocess.Popen[bytes]:
    """A Taskdeck worker process (`arq runner.worker.WorkerSettings`) with extra env settings."""
    return spawn("runner.worker.WorkerSettings", log, settings)


def spawn(settings_path: str, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    full = {**os.environ, **env}
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "arq", settings_path], cwd=ROOT, env=full,
                                stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# ---------------------------------------------------------------------------------------------
# The systems compared: Taskdeck workers and bare ARQ workers (bench/bare_arq.py)


@dataclass(frozen=True)
class System:
    name: str
    kind: str  # "taskdeck" or "arq"
    max_jobs: int
    poll_delay: float
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def taskdeck(self) -> bool:
        return self.kind == "taskdeck"

    @property
    def archives(self) -> bool:
        return self.taskdeck and dict(self.extra).get("TASKDECK_ARCHIVE") == "true"

    @property
    def queue(self) -> str:
        return taskdeck_settings().queue_name if self.taskdeck else BARE_QUEUE

    def env(self) -> dict[str, str]:
        if self.taskdeck:
            env = {"TASKDECK_TASK_MODULES": BENCH_TASK_MODULES, "TASKDECK_MAX_JOBS": str(self.max_jobs),
                   "TASKDECK_POLL_DELAY_S": str(self.poll_delay), "TASKDECK_ARCHIVE": "false"}
        else:
            env = {"BENCH_ARQ_MAX_JOBS": str(self.max_jobs), "BENCH_ARQ_POLL_DELAY": str(self.poll_delay),
                   "BENCH_ARQ_QUEUE": BARE_QUEUE}
        return env | dict(self.extra)

    def settings_path(self) -> str:
        return "runner.worker.WorkerSettings" if self.taskdeck else "bench.bare_arq.WorkerSettings"

    def describe(self) -> str:
        extra = "".join(f", {k}={v}" for k, v in self.extra)
        return f"{self.name}: {self.kind} max_jobs={self.max_jobs} poll_delay={self.poll_delay:g}s{extra}"


def taskdeck_settings(**env: str):
    """Taskdeck's Settings as its workers would see them (current code defaults + bench env + `env`)."""
    from runner.settings import Settings

    saved = dict(os.environ)
    os.environ.update({"TASKDECK_TASK_MODULES": BENCH_TASK_MODULES, **env})
    try:
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def comparison(max_jobs: int | None, poll_delay: float | None, *, with_defaults: bool = True,
               taskdeck_extra: dict[str, str] | None = None, arq_extra: dict[str, str] | None = None) -> list[System]:
    """taskdeck, arq-same (same max_jobs and poll_delay) and arq-default (ARQ's 10 / 0.5 s), duplicates merged."""
    defaults = taskdeck_settings()
    mj = max_jobs if max_jobs is not None else defaults.max_jobs
    pd = poll_delay if poll_delay is not None else defaults.poll_delay_s
    tx = tuple(sorted((taskdeck_extra or {}).items()))
    ax = tuple(sorted((arq_extra or {}).items()))
    systems = [System("taskdeck", "taskdeck", mj, pd, tx), System("arq-same", "arq", mj, pd, ax)]
    if with_defaults:
        if (mj, pd) == (ARQ_DEFAULT_MAX_JOBS, ARQ_DEFAULT_POLL_DELAY):
            systems[1] = System("arq-same=default", "arq", mj, pd, ax)
        else:
            systems.append(System("arq-default", "arq", ARQ_DEFAULT_MAX_JOBS, ARQ_DEFAULT_POLL_DELAY, ax))
    return systems


def name_of(systems: Sequence[System], wanted: str) -> str | None:
    """The name under which `wanted` ran: "arq-default" may have been merged into "arq-same=default"."""
    for s in systems:
        first, *aliases = s.name.split("=")
        if wanted == first or wanted in (f"arq-{a}" for a in aliases):
            return s.name
    return None


class WorkerProcess:
    """One `python -m arq ...` worker of a System, with its CPU time and SIGSTOP/SIGCONT."""

    def __init__(self, system: System, log_dir: Path, tag: str, env: dict[str, str] | None = None) -> None:
        self.system = system
        self.log = log_dir / f"{tag}-{system.name}.log"
        self.proc = spawn(system.settings_path(), self.log, system.env() | (env or {}))
        self.ps = psutil.Process(self.proc.pid)

    def wait_ready(self, r: redis.Redis, timeout: float = 60.0, settle: float = 0.3) -> None:
        """Ready = ARQ wrote its health-check key, i.e. startup hooks ran and the first poll is done."""
        key = self.system.queue + health_check_key_suffix
        deadline = time.monotonic() + timeout
        while not r.exists(key):
            self.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker {self.system.name} not ready after {timeout:g} s; log:\n{self.tail()}")
            time.sleep(0.02)
        time.sleep(settle)

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker {self.system.name} exited ({self.proc.returncode}); log:\n{self.tail()}")

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def rss(self) -> int:
        return self.ps.memory_info().rss

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.resume()
        stop(self.proc)


@contextmanager
def worker(system: System, r: redis.Redis, log_dir: Path, tag: str, env: dict[str, str] | None = None,
           ready: bool = True, settle: float = 0.3) -> Iterator[WorkerProcess]:
    r.delete(system.queue + health_check_key_suffix)
    w = WorkerProcess(system, log_dir, tag, env)
    try:
        if ready:
            w.wait_ready(r, settle=settle)
        yield w
    finally:
        w.stop()


def wait_queue_empty(counters: Counters, queue: str, workers: Sequence[WorkerProcess], timeout: float,
                     interval: float = 0.01) -> float:
    """Poll ZCOUNT of ARQ's queue (both systems remove a job from it when it finishes); returns the time."""
    deadline = time.monotonic() + timeout
    while True:
        n = counters.own("zcount", queue, "-inf", "+inf")
        now = time.time()
        if n == 0:
            return now
        for w in workers:
            w.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{n} jobs still in {queue} after {timeout:g} s")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# Redis counters


@dataclass
class Snapshot:
    at: float
    calls: dict[str, int]
    usec: dict[str, int]
    cpu: float
    used_memory: int
    clients_memory: int


@dataclass
class Delta:
    seconds: float
    calls: dict[str, int]
    usec: dict[str, int]
    cpu: float
    memory: int  # used_memory - client buffers, after - before
    writes: frozenset[str] = field(default_factory=frozenset)

    def total(self) -> int:
        return sum(self.calls.values())

    def write_calls(self) -> int:
        return sum(n for name, n in self.calls.items() if name in self.writes)

    def top(self, per: float, n: int = 8, by: str = "calls") -> str:
        source = self.calls if by == "calls" else self.usec
        rows = sorted(source.items(), key=lambda kv: -kv[1])[:n]
        unit = "" if by == "calls" else "µs"
        return " ".join(f"{k}={v / per:.3g}{unit}" for k, v in rows if v)


class Counters:
    """INFO commandstats / cpu / memory of the private Redis, minus the harness's own calls."""

    HARNESS = ("info", "command", "memory", "scan", "dbsize", "config", "flushall")  # never sent by workers

    def __init__(self, url: str) -> None:
        self.r = redis.Redis.from_url(url, decode_responses=True)
        self._own: dict[str, int] = {}
        self._writes: dict[str, bool] = {}

    def own(self, command: str, *args: Any) -> Any:
        """Run a command on behalf of the harness, so that it is not counted against the workers."""
        self._own[command] = self._own.get(command, 0) + 1
        return self.r.execute_command(command.upper(), *args)

    def snapshot(self) -> Snapshot:
        stats = self.r.info("commandstats")
        cpu = self.r.info("cpu")
        mem = self.r.info("memory")
        calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}
        usec = {k.removeprefix("cmdstat_"): v["usec"] for k, v in stats.items()}
        for k, n in self._own.items():
            calls[k] = calls.get(k, 0) - n  # harness calls so far: taken off every snapshot alike
        return Snapshot(time.time(), calls, usec, cpu["used_cpu_user"] + cpu["used_cpu_sys"],
                        mem["used_memory"], mem.get("mem_clients_normal", 0))

    def delta(self, a: Snapshot, b: Snapshot) -> Delta:
        names = set(a.calls) | set(b.calls)
        calls = {n: b.calls.get(n, 0) - a.calls.get(n, 0) for n in names if n not in self.HARNESS}
        calls = {n: v for n, v in calls.items() if v}
        usec = {n: b.usec.get(n, 0) - a.usec.get(n, 0) for n in calls}
        return Delta(b.at - a.at, calls, usec, b.cpu - a.cpu,
                     (b.used_memory - b.clients_memory) - (a.used_memory - a.clients_memory),
                     frozenset(n for n in calls if self.is_write(n)))

    def is_write(self, name: str) -> bool:
        """Per Redis's own COMMAND INFO flags ('write'); PUBLISH counts as a write here too."""
        if name not in self._writes:
            base = name.split("|")[0]
            try:
                info = self.r.execute_command("COMMAND", "INFO", base).get(base) or {}
                flags = set(info.get("flags", []))
            except Exception:
                flags = set()
            self._writes[name] = "write" in flags or base == "publish"
        return self._writes[name]

    def flush(self) -> None:
        self.own("flushall")

    def memory(self) -> int:
        mem = self.r.info("memory")
        return mem["used_memory"] - mem.get("mem_clients_normal", 0)


# ---------------------------------------------------------------------------------------------
# Rounds, statistics and printing


def pct(values: Sequence[float], q: float) -> float:
    values = list(values)
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def ms(values: list[float]) -> str:
    return f"p50 {pct(values, 50) * 1000:7.2f} ms   p99 {pct(values, 99) * 1000:7.2f} ms   (n={len(values)})"


def med(values: Sequence[float]) -> float:
    return statistics.median(values)


def fmt(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    a = abs(value)
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 100:
        return f"{value:.0f}"
    if a >= 10:
        return f"{value:.1f}"
    if a >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def spread(values: Sequence[float]) -> str:
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(med(values))} ({fmt(min(values))}–{fmt(max(values))})"


Results = dict[str, list[dict[str, Any]]]


def alternate(systems: Sequence[System], rounds: int, run_one: Callable[[System, int], dict[str, Any]],
              out: Path | None = None, bench: str = "") -> Results:
    """Run every system once per round, in the same order each round (ABAB...)."""
    results: Results = {s.name: [] for s in systems}
    first = runner_digest()
    for i in range(rounds):
        for s in systems:
            t = time.monotonic()
            before = runner_digest()
            row = run_one(s, i)
            after = runner_digest()
            if before != first or after != before:
                print(f"  WARNING: runner/ changed during this benchmark (digest {first} → {before} → {after}); "
                      "rounds measured different code", flush=True)
            row = {"round": i + 1, "system": s.name, **row, "runner_digest": after}
            results[s.name].append(row)
            shown = ", ".join(f"{k}={fmt(v)}" for k, v in row.items() if isinstance(v, (int, float))
                              and k not in ("round",))
            print(f"  round {i + 1} {s.name:18s} {shown}   [{time.monotonic() - t:.0f} s]", flush=True)
            if out:
                with open(out, "a") as f:
                    f.write(json.dumps({"bench": bench, **row, "describe": s.describe()}, default=str) + "\n")
    return results


def table(results: Results, metrics: Sequence[tuple[str, str]]) -> None:
    """Median (min–max) over rounds, one row per system."""
    names = list(results)
    width = max(len(n) for n in names) + 2
    print()
    print(f"{'system':{width}s}" + "".join(f" | {label}" for _, label in metrics))
    for name in names:
        cells = []
        for key, label in metrics:
            values = [row[key] for row in results[name] if row.get(key) is not None]
            cells.append(f"{spread(values):>{len(label)}s}" if values else f"{'-':>{len(label)}s}")
        print(f"{name:{width}s}" + "".join(f" | {c}" for c in cells))


def ratio(results: Results, key: str, num: str, den: str, target: str = "",
          check: Callable[[float], bool] | None = None, label: str = "") -> float | None:
    """Same-round ratios num/den of `key`, their median, and the verdict against `target`."""
    if num not in results or den not in results:
        return None
    rs = [a[key] / b[key] for a, b in zip(results[num], results[den], strict=True) if b.get(key)]
    if not rs:
        return None
    verdict = ""
    if check is not None:
        verdict = "   PASS" if check(med(rs)) else "   FAIL"
    per_round = " ".join(f"{x:.3g}" for x in rs)
    print(f"{label or key} {num}/{den}: median {med(rs):.3g}  (rounds: {per_round})"
          f"{'   target ' + target if target else ''}{verdict}")
    return med(rs)


def verdict(label: str, value: float, target: str, ok: bool) -> None:
    print(f"{label}: {fmt(value)}   target {target}   {'PASS' if ok else 'FAIL'}")


def runner_digest() -> str:
    digest = hashlib.sha1()
    for path in sorted((ROOT / "runner").rglob("*")):
        if path.suffix in (".py", ".lua") and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def code_state() -> str:
    """Which runner/ was measured: HEAD, whether runner/ differs from it, and a digest of its files."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "--no-optional-locks", *args], cwd=ROOT, capture_output=True,
                                  text=True, timeout=10).stdout.rstrip()
        except Exception:
            return "?"
    changed = [line[3:] for line in git("status", "--porcelain", "--", "runner").splitlines()]
    dirty = f"{len(changed)} file(s) differ from HEAD: {' '.join(changed)}" if changed else "clean"
    return f"HEAD {git('rev-parse', '--short', 'HEAD').strip()}, runner/ {dirty}; runner digest {runner_digest()}"


def header(title: str, systems: Sequence[System] = (), **params: Any) -> None:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"== {title} ==  ({time.strftime('%Y-%m-%d %H:%M:%S')}, {os.cpu_count()} CPUs, load {load})")
    print(f"code: {code_state()}")
    if params:
        print("params: " + ", ".join(f"{k}={v}" for k, v in params.items()))
    for s in systems:
        print(f"  {s.describe()}")


def footer() -> None:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"(load average at the end: {load})")


def common_args(parser: Any, rounds: int = 3) -> None:
    parser.add_argument("--rounds", type=int, default=rounds, help="alternating rounds per system")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, 1-2 rounds")
    parser.add_argument("--out", type=Path, help="append one JSON line per (round, system) to this file")
    parser.add_argument("--keep-logs", action="store_true", help="keep worker logs (printed path)")


@contextmanager
def log_dir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="taskdeck-bench-"))
    try:
        yield path
    finally:
        if keep:
            print(f"worker logs kept in {path}")
        else:
            for f in path.iterdir():
                f.unlink()
            path.rmdir()


# ---------------------------------------------------------------------------------------------
# Clients of both systems (async)


async def bare_pool(url: str):
    """ARQ's own client on the bare queue, JSON like the bare worker."""
    import orjson
    from arq import create_pool
    from arq.connections import RedisSettings

    return await create_pool(RedisSettings.from_dsn(url), job_serializer=orjson.dumps,
                             job_deserializer=orjson.loads, default_queue_name=BARE_QUEUE)


async def gather_limited(make: Callable[[int], Any], n: int, concurrency: int = 100) -> list[Any]:
    """Run make(i) for i in range(n), `concurrency` at a time, results in order."""
    import asyncio

    out: list[Any] = [None] * n
    next_i = 0

    async def lane() -> None:
        nonlocal next_i
        while next_i < n:
            i = next_i
            next_i += 1
            out[i] = await make(i)

    await asyncio.gather(*(lane() for _ in range(min(concurrency, n))))
    return out


async def submit_many(ac: Any, type_: str, payload: dict[str, Any], n: int, concurrency: int = 100) -> list[str]:
    async def one(i: int) -> str:
        return (await ac.submit(type_, payload)).id
    return await gather_limited(one, n, concurrency)


async def enqueue_many(pool: Any, function: str, kwargs: dict[str, Any], n: int, concurrency: int = 100) -> list[str]:
    async def one(i: int) -> str:
        job = await pool.enqueue_job(function, **kwargs)
        assert job is not None
        return job.job_id
    return await gather_limited(one, n, concurrency)


async def taskdeck_finished(ac: Any, expected: int) -> list[Any]:
    """Every completed job record (public API, newest first), checked against the expected count."""
    jobs: list[Any] = []
    while True:
        page = await ac.list(status="completed", limit=1000, offset=len(jobs))
        jobs += page
        if len(page) < 1000:
            break
    if len(jobs) != expected:
        stats = await ac.stats()
        raise RuntimeError(f"expected {expected} completed jobs, found {len(jobs)}; by status: {stats.by_status}")
    return jobs


async def bare_finished(pool: Any, expected: int) -> list[Any]:
    results = await pool.all_job_results()
    ok = [r for r in results if r.success]
    if len(ok) != expected:
        raise RuntimeError(f"expected {expected} successful ARQ results, found {len(ok)} of {len(results)}")
    return ok


def span_taskdeck(jobs: Sequence[Any]) -> tuple[float, float]:
    """(first start, last finish) epoch seconds from job records."""
    return (min(j.started_at.timestamp() for j in jobs), max(j.completed_at.timestamp() for j in jobs))


def span_bare(results: Sequence[Any]) -> tuple[float, float]:
    return (min(r.start_time.timestamp() for r in results), max(r.finish_time.timestamp() for r in results))
