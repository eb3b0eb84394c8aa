"""Where a Taskdeck job's time goes: an in-process worker drains no-op jobs, measured three ways.

    .venv/bin/python bench/hotspots.py [--n 3000] [--max-jobs M] [--poll-delay S] [--rounds 3] [--top 30] [--quick]

The worker is ARQ's own `Worker` built from the real `runner.worker.WorkerSettings` (burst mode, no
signal handlers), in this process, on a private Redis; logging goes to a file as in a real worker
(ARQ's INFO lines and Taskdeck's transition lines). N BENCH_NOOP jobs are submitted first, then drained.

1. Round trips per job: every request the worker's Redis connections send (one pipeline/MULTI = one
   round trip), attributed to the runner/ or arq function that sent it, with the commands it carried.
   The Redis commands run inside each Lua call are listed from INFO commandstats.
2. CPU per job, unprofiled: process CPU time over the drain / N, Taskdeck and bare ARQ
   (bench/bare_arq.py, same max_jobs/poll_delay, in the same process) in alternating rounds.
3. cProfile of one Taskdeck drain: µs per job by function (own time and cumulative time), and a
   phase summary. cProfile inflates Python-heavy code; compare its total with part 2's.
0. A price list: CPU µs per call of the building blocks a job is made of (a Redis round trip with
   and without Taskdeck's client options, a MULTI pipeline, store.load, decode, a transition's
   EVALSHA, spec building, one log line), so round-trip counts can be turned into µs.
4. py-spy (if installed: `.venv/bin/pip install py-spy`; not a project requirement): a REAL worker
   process (`arq runner.worker.WorkerSettings`) sampled at 1 kHz while it drains --spy-n jobs; the
   share of its active samples per phase and per leaf area (redis-py, asyncio, logging, pydantic...),
   turned into µs/job with the worker's measured CPU µs/job. No profiler overhead inside the worker.
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import inspect
import io
import logging
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

from _harness import (
    BARE_QUEUE,
    ROOT,
    Counters,
    System,
    bench_env,
    code_state,
    fmt,
    footer,
    log_dir,
    med,
    private_redis,
    submit_many,
    taskdeck_settings,
    wait_queue_empty,
    worker,
)

RUNNER_DIR = str(ROOT / "runner") + os.sep
BENCH_DIR = str(ROOT / "bench") + os.sep


# ---------------------------------------------------------------------------------------------
# 1. Round-trip accounting


class Trips:
    def __init__(self) -> None:
        self.trips: Counter[str] = Counter()
        self.commands: Counter[str] = Counter()
        self.names: dict[str, Counter[str]] = defaultdict(Counter)
        self.on = False

    def install(self) -> None:
        from redis.asyncio.connection import AbstractConnection

        trips = self
        orig_send = AbstractConnection.send_packed_command
        orig_pack = AbstractConnection.pack_command
        orig_packs = AbstractConnection.pack_commands

        def pack_command(self, *args):
            self._bench_names = [str(args[0] if isinstance(args[0], str) else args[0].decode()).upper()]
            return orig_pack(self, *args)

        def pack_commands(self, commands):
            commands = list(commands)
            self._bench_names = [str(c[0] if isinstance(c[0], str) else c[0].decode()).upper() for c in commands]
            return orig_packs(self, commands)

        async def send_packed_command(self, command, check_health=True):
            names = getattr(self, "_bench_names", None) or ["?"]
            self._bench_names = None
            if trips.on:
                trips.count(where(sys._getframe(1)), names)
            return await orig_send(self, command, check_health)

        AbstractConnection.pack_command = pack_command
        AbstractConnection.pack_commands = pack_commands
        AbstractConnection.send_packed_command = send_packed_command
        self._restore = (orig_send, orig_pack, orig_packs)

    def uninstall(self) -> None:
        from redis.asyncio.connection import AbstractConnection

        (AbstractConnection.send_packed_command, AbstractConnection.pack_command,
         AbstractConnection.pack_commands) = self._restore

    def count(self, label: str, names: list[str]) -> None:
        self.trips[label] += 1
        names = [n for n in names if n not in ("MULTI", "EXEC")] or names
        self.commands[label] += len(names)
        self.names[label].update(names)

    def report(self, n: int) -> None:
        total = sum(self.trips.values())
        print(f"{'round trips/job':>15} {'cmds/job':>8}  sent by (innermost runner/arq frame ← its caller): commands")
        for label, k in self.trips.most_common():
            names = " ".join(f"{name}×{c / k:.3g}" if c != k else name
                             for name, c in self.names[label].most_common(6))
            print(f"{k / n:15.3f} {self.commands[label] / n:8.2f}  {label}: {names}")
        print(f"{total / n:15.3f} {sum(self.commands.values()) / n:8.2f}  TOTAL per job")


def where(frame) -> str:
    """The innermost frame in runner/ or arq/ (skipping runner/storage/store.py plumbing), and its caller."""
    found: list[str] = []
    while frame is not None and len(found) < 2:
        name = frame.f_code.co_filename
        if name.startswith(RUNNER_DIR) or "/arq/" in name or name.startswith(BENCH_DIR):
            if "/arq/" in name:
                module = "arq." + Path(name).stem
            else:
                module = Path(name).relative_to(ROOT).with_suffix("").as_posix().replace("/", ".")
            label = f"{module}.{frame.f_code.co_name}"
            if not found or found[-1] != label:
                found.append(label)
        frame = frame.f_back
    return " ← ".join(found) if found else "?"


# ---------------------------------------------------------------------------------------------
# In-process workers


def quiet_logging(log: Path) -> None:
    """ARQ's INFO lines and Taskdeck's transition lines to a file, as the real worker's go to its log."""
    handler = logging.FileHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s: %(message)s", "%H:%M:%S"))
    for name in ("arq", "taskdeck"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False


async def drain(kind: str, settings_cls, max_jobs: int, poll_delay: float) -> None:
    from arq.worker import Worker, get_kwargs

    # Taskdeck's hooks touch only its own workers (runner/worker/wake.py, claim.py), so the bare worker is
    # plain ARQ; a Taskdeck worker keeps its settings' poll_delay of 0 (its wait is in the claim hook)
    kwargs = {**get_kwargs(settings_cls), "burst": True, "handle_signals": False, "max_jobs": max_jobs}
    if kind == "arq":
        kwargs |= {"queue_name": BARE_QUEUE, "poll_delay": poll_delay}
    w = Worker(**kwargs)
    await w.main()
    await w.close()


async def fill(kind: str, url: str, n: int) -> None:
    if kind == "taskdeck":
        from runner import AsyncClient
        async with AsyncClient() as ac:
            await submit_many(ac, "BENCH_NOOP", {}, n)
    else:
        from _harness import bare_pool, enqueue_many
        pool = await bare_pool(url)
        await enqueue_many(pool, "noop", {}, n)
        await pool.aclose()


def run(kind: str, url: str, counters: Counters, n: int, max_jobs: int, poll_delay: float,
        trips: Trips | None = None, profiler: cProfile.Profile | None = None) -> dict[str, float]:
    import bench.bare_arq
    import runner.worker

    settings_cls = runner.worker.WorkerSettings if kind == "taskdeck" else bench.bare_arq.WorkerSettings
    counters.flush()
    asyncio.run(fill(kind, url, n))
    a = counters.snapshot()
    c0, t0 = time.process_time(), time.perf_counter()
    if trips:
        trips.on = True
    if profiler:
        profiler.enable()
    try:
        asyncio.run(drain(kind, settings_cls, max_jobs, poll_delay))
    finally:
        if profiler:
            profiler.disable()
        if trips:
            trips.on = False
    c1, t1 = time.process_time(), time.perf_counter()
    d = counters.delta(a, counters.snapshot())
    return {"cpu_us": (c1 - c0) / n * 1e6, "wall_s": t1 - t0, "jobs_s": n / (t1 - t0), "cmds": d.total() / n,
            "redis_us": d.cpu / n * 1e6, "delta": d}


# ---------------------------------------------------------------------------------------------
# 0. Price list


async def prices(url: str, reps: int) -> None:
    from datetime import datetime

    from redis.asyncio import Redis

    from runner import AsyncClient
    from runner.settings import Settings
    from runner.storage import transitions
    from runner.storage.store import Store, decode
    from runner.worker import logs

    settings = Settings()
    plain = Redis.from_url(url, decode_responses=True)
    worker_redis = worker_connection(settings)
    store = Store(worker_redis, settings)
    async with AsyncClient() as ac:
        jobs = await ac.list(status="completed", limit=1)
    job = await store.load(jobs[0].id)
    raw = await worker_redis.hgetall(store.keys.job(job.id))
    log_job = logging.getLogger("arq.worker")

    async def ping_plain() -> None:
        await plain.ping()

    async def ping_worker() -> None:
        await worker_redis.ping()

    async def multi3() -> None:
        async with plain.pipeline(transaction=True) as pipe:
            pipe.get("x").incr("y").expire("y", 100)
            await pipe.execute()

    async def load() -> None:
        await store.load(job.id)

    async def apply_refused() -> None:
        await store.apply(job.id, transitions.progress(job.attempts, {"progress": 1.0, "current_step": None}))

    def start_spec() -> None:
        transitions.start(*start_args(job, datetime.now(UTC)))

    def copy() -> None:
        job.model_copy(update={"attempts": 2, "started_at": datetime.now(UTC), "worker": "w"})

    items = [
        ("Redis round trip: PING, plain redis.asyncio client (as ARQ's pool)", ping_plain),
        ("Redis round trip: PING, Taskdeck's worker client (socket_timeout, retry)", ping_worker),
        ("MULTI GET INCR EXPIRE EXEC pipeline, plain client (ARQ run_job's shape)", multi3),
        ("store.load: HGETALL of a finished record + decode", load),
        ("store.apply of a progress spec (refused by the guard: client side + Lua)", apply_refused),
        ("store.decode(raw record) only", lambda: decode(raw)),
        ("transitions.start(...) spec only", start_spec),
        ("Job.model_copy(update=...) (execution.begin)", copy),
        ("logs.log_transition (one line to a file)", lambda: logs.log_transition(job, "started", "attempt 1 of 1")),
        ("ARQ job log line (logger arq.worker, to a file)",
         lambda: log_job.info("%6.2fs → %s(%s)%s", 0.01, "abc:taskdeck", "", "")),
    ]
    print(f"\n-- 0. price list: CPU µs per call (process time, {reps} calls each, median of 3 batches) --")
    for label, fn in items:
        try:
            print(f"  {await price(fn, reps):7.1f} µs  {label}")
        except Exception as e:  # the runner's internals move; a price that cannot be taken is shown as such
            print(f"      n/a  {label} ({type(e).__name__}: {e})")
    await plain.aclose()
    await worker_redis.aclose()


def worker_connection(settings: Any) -> Any:
    """The Redis client a worker uses (`resilient` where this version of the runner has it)."""
    from runner.storage.store import connect
    try:
        return connect(settings, resilient=True)
    except TypeError:
        return connect(settings)


def start_args(job: Any, now: Any) -> list[Any]:
    """transitions.start's arguments, for this version of the runner (`limits` where it has them)."""
    from runner.storage import transitions
    args = [job, "w", ("a",), now, "arq:in-progress:x", 30000, None]
    if "limits" in inspect.signature(transitions.start).parameters:
        args.append({"user": None, "org": None, "type": None, "global": None})
    return args


async def price(fn: Callable[[], Any], reps: int) -> float:
    """CPU µs per call of `fn` (awaited when it returns a coroutine): the median of 3 batches of `reps` calls."""
    batches = []
    for _ in range(3):
        c = time.process_time()
        for _ in range(reps):
            result = fn()
            if asyncio.iscoroutine(result):
                await result
        batches.append((time.process_time() - c) / reps * 1e6)
    return med(batches)


# ---------------------------------------------------------------------------------------------
# 3. cProfile summaries

PHASES = [
    ("arq/worker.py", "_poll_iteration", "ARQ poll iteration (bare ARQ: incl. start_jobs)"),
    ("runner/worker/claim.py", "poll_iteration", "Taskdeck poll iteration (one claim script)"),
    ("runner/worker/wake.py", "listen", "Taskdeck wake listener"),
    ("runner/worker/heartbeat.py", "run", "Taskdeck heartbeat loop"),
    ("arq/worker.py", "start_jobs", "ARQ start_jobs (WATCH/EXISTS/ZSCORE + MULTI PSETEX)"),
    ("arq/worker.py", "run_job", "ARQ run_job (incl. finish_job)"),
    ("arq/worker.py", "finish_job", "ARQ finish_job"),
    ("runner/worker/execution.py", "execute", "Taskdeck execute (all of the job below)"),
    ("runner/storage/store.py", "many", "  store.Batched.many (one pipeline of transitions)"),
    ("runner/storage/store.py", "decode", "    store.decode (JSON + pydantic Job)"),
    ("runner/worker/execution.py", "begin", "  begin (start transition)"),
    ("runner/storage/transitions.py", "start", "    transitions.start (spec)"),
    ("runner/worker/execution.py", "attempt", "  attempt (context, task, completed)"),
    ("runner/context.py", "__init__", "    TaskContext.__init__"),
    ("runner/worker/execution.py", "completed", "    completed (complete transition)"),
    ("runner/worker/execution.py", "record", "      execution.record (Attempt)"),
    ("runner/storage/transitions.py", "complete", "      transitions.complete (spec)"),
    ("runner/worker/execution.py", "finish", "      execution.finish (apply)"),
    ("runner/storage/store.py", "apply", "  store.apply (all transitions: spec JSON + EVALSHA)"),
    ("runner/storage/store.py", "encode", "  store.encode (field JSON)"),
    ("runner/worker/logs.py", "log_transition", "  logs.log_transition"),
    ("logging/__init__.py", "_log", "all logging (_log: ARQ + Taskdeck lines)"),
    ("redis/commands/core.py", "__call__", "redis Script.__call__ (EVALSHA)"),
    ("redis/asyncio/client.py", "execute_command", "redis execute_command (single commands)"),
    ("redis/asyncio/client.py", "execute", "redis pipeline execute"),
    ("redis/asyncio/connection.py", "send_packed_command", "redis send_packed_command"),
    ("redis/asyncio/connection.py", "read_response", "redis read_response"),
    ("asyncio/tasks.py", "wait_for", "asyncio.wait_for (redis-py socket_timeout on sends)"),
    ("asyncio/base_events.py", "_run_once", "event loop _run_once (everything)"),
]


def cprofile_report(profiler: cProfile.Profile, n: int, top: int, total_us: float) -> None:
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = stats.stats  # (file, line, func) -> (cc, nc, tt, ct, callers)
    print(f"\n-- 3a. cProfile phases, µs per job (cumulative: incl. callees; "
          f"profiled total {total_us:.0f} µs/job) --")
    for path, func, label in PHASES:
        matches = [(k, v) for k, v in rows.items() if k[0].endswith(path) and k[2] == func]
        if not matches:
            continue
        calls = sum(v[1] for _, v in matches)
        cum = sum(v[3] for _, v in matches)
        print(f"  {cum / n * 1e6:8.0f} µs  {calls / n:6.2f} calls/job  {label}")
    print(f"\n-- 3b. top {top} functions by own time, µs per job --")
    ranked = sorted(rows.items(), key=lambda kv: -kv[1][2])[:top]
    for (path, line, func), (_cc, nc, tt, ct, _) in ranked:
        short = path.replace(str(ROOT) + "/", "").split("site-packages/")[-1]
        print(f"  {tt / n * 1e6:8.1f} own {ct / n * 1e6:8.1f} cum {nc / n:7.2f} calls/job  {short}:{line} {func}")


# ---------------------------------------------------------------------------------------------
# 4. py-spy on a real worker process

AREAS = [("/asyncio/selector_events.py", "asyncio transport (socket send/recv syscalls)"),
         ("/selectors.py", "epoll (event loop waiting/polling)"),
         ("/redis/", "redis-py"), ("/hiredis", "redis-py"), ("/asyncio/", "asyncio event loop"),
         ("/logging/", "logging"), ("/pydantic", "pydantic"), ("/runner/", "runner (Taskdeck's own code)"),
         ("/arq/", "arq"), ("/json/", "json"), ("/datetime.py", "datetime"), ("/enum.py", "enum"),
         ("/uuid.py", "uuid")]


WAITING_LEAVES = {("_SelectorSocketTransport.write", "asyncio/selector_events.py"),
                  ("EpollSelector.select", "selectors.py")}


def pyspy(url: str, counters: Counters, n: int, system: System, top: int) -> None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not os.access(exe, os.X_OK):
        print("\n-- 4. py-spy not installed (.venv/bin/pip install py-spy): skipped --")
        return
    with log_dir(False) as logs, tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "raw.txt"
        counters.flush()
        with worker(system, counters.r, logs, "pyspy") as w:
            w.pause()
            asyncio.run(fill("taskdeck", url, n))
            c0, t0 = w.ps.cpu_times(), time.time()
            w.resume()
            spy = subprocess.Popen([exe, "record", "--pid", str(w.proc.pid), "--rate", "1000", "--format", "raw",
                                    "--output", str(out), "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            t_end = wait_queue_empty(counters, system.queue, [w], 600)
            c1 = w.ps.cpu_times()
            spy.send_signal(signal.SIGINT)
            _, err = spy.communicate(timeout=60)
        if not out.exists():
            print(f"\n-- 4. py-spy failed: {err.decode(errors='replace')[-500:]} --")
            return
        stacks = parse_raw(out.read_text())
    user_us, sys_us = (c1.user - c0.user) / n * 1e6, (c1.system - c0.system) / n * 1e6
    print(f"\n-- 4. py-spy, real worker process: {n} jobs in {t_end - t0:.1f} s, worker CPU {user_us:.0f} µs/job user "
          f"+ {sys_us:.0f} µs/job kernel --")
    spy_report(stacks, n, user_us, top)


def parse_raw(text: str) -> list[tuple[list[tuple[str, str]], int]]:
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = []
        for frame in stack.split(";"):
            func, _, rest = frame.partition(" (")
            frames.append((func, rest.rsplit(":", 1)[0]))
        stacks.append((frames, int(count)))
    return stacks


def spy_report(stacks, n: int, user_us: float, top: int) -> None:
    """Shares of samples; µs/job = share × user CPU µs/job, over the samples not parked in a socket send
    or epoll (py-spy counts a thread preempted inside send() — Redis runs on the same 2 cores — as active)."""
    total = sum(c for _, c in stacks)
    waiting = sum(c for frames, c in stacks if frames[-1] in WAITING_LEAVES)
    busy = [(frames, c) for frames, c in stacks if frames[-1] not in WAITING_LEAVES]
    btotal = max(1, total - waiting)
    print(f"  {total} samples at 1 kHz; {waiting / total * 100:.0f}% have a socket send or epoll as innermost frame "
          f"(mostly waiting: kernel CPU is measured separately above) and are left out below; the other "
          f"{btotal} are scaled to the user CPU.")
    print("  phase (inclusive)                                          share   µs/job (user CPU)")
    for path, func, label in PHASES:
        hits = sum(c for frames, c in busy if any((f == func or f.endswith("." + func))
                                                  and ("/" + p).endswith("/" + path) for f, p in frames))
        if hits:
            print(f"  {label:58s} {hits / btotal * 100:5.1f}%  {hits / btotal * user_us:6.0f}")
    leaf_area: Counter[str] = Counter()
    leaf_func: Counter[str] = Counter()
    for frames, c in busy:
        func, path = frames[-1]
        area = next((name for marker, name in AREAS if marker in "/" + path), f"other: {path}")
        leaf_area[area] += c
        leaf_func[f"{func} ({path.split('site-packages/')[-1].split('python3.11/')[-1]})"] += c
    print("  own time by area of the innermost Python frame (C code such as orjson counts to its caller):")
    for area, c in leaf_area.most_common(12):
        print(f"    {c / btotal * 100:5.1f}%  {c / btotal * user_us:6.0f} µs/job  {area}")
    print(f"  top {top} innermost functions:")
    for name, c in leaf_func.most_common(top):
        print(f"    {c / btotal * 100:5.1f}%  {c / btotal * user_us:6.0f} µs/job  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--max-jobs", type=int)
    parser.add_argument("--poll-delay", type=float)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pstats", type=Path, help="also write the raw cProfile stats here")
    parser.add_argument("--spy-n", type=int, default=5000, help="jobs drained under py-spy (0 skips part 4)")
    args = parser.parse_args()
    if args.quick:
        args.n, args.rounds, args.spy_n = min(args.n, 500), 1, min(args.spy_n, 1000)
    bench_env()
    defaults = taskdeck_settings()
    max_jobs = args.max_jobs or defaults.max_jobs
    poll_delay = args.poll_delay or defaults.poll_delay_s
    with private_redis() as url, tempfile.TemporaryDirectory() as tmp:
        os.environ["TASKDECK_MAX_JOBS"] = str(max_jobs)
        os.environ["TASKDECK_POLL_DELAY_S"] = str(poll_delay)
        quiet_logging(Path(tmp) / "worker.log")
        counters = Counters(url)
        print(f"== profile: in-process worker, no-op jobs ==  ({time.strftime('%Y-%m-%d %H:%M:%S')}, "
              f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
        print(f"code: {code_state()}")
        print(f"params: n={args.n}, max_jobs={max_jobs}, poll_delay={poll_delay:g}s, rounds={args.rounds}")
        trips = Trips()
        trips.install()
        run("taskdeck", url, counters, min(args.n, 300), max_jobs, poll_delay)  # warm-up: imports, scripts
        run("arq", url, counters, min(args.n, 300), max_jobs, poll_delay)
        run("taskdeck", url, counters, 50, max_jobs, poll_delay)
        asyncio.run(prices(url, 300 if args.quick else 2000))

        print("\n-- 1. Redis round trips per job, Taskdeck worker --")
        r = run("taskdeck", url, counters, args.n, max_jobs, poll_delay, trips=trips)
        trips.report(args.n)
        d = r["delta"]
        print(f"Redis commands/job incl. those inside Lua: {d.total() / args.n:.1f}; "
              f"evalsha {d.calls.get('evalsha', 0) / args.n:.2f}/job")
        print(f"  by command: {d.top(args.n, 30)}")
        print(f"  Redis CPU by command, µs/job: {d.top(args.n, 10, by='usec')}")
        print(f"  Redis CPU total {d.cpu / args.n * 1e6:.0f} µs/job")
        trips.trips.clear(), trips.commands.clear(), trips.names.clear()
        rb = run("arq", url, counters, args.n, max_jobs, poll_delay, trips=trips)
        print("\n   bare ARQ, same settings, for reference:")
        trips.report(args.n)
        print(f"Redis commands/job: {rb['delta'].total() / args.n:.1f}; Redis CPU {rb['redis_us']:.0f} µs/job")
        trips.uninstall()

        print("\n-- 2. worker CPU per job, unprofiled, alternating rounds (in-process) --")
        rows: dict[str, list[dict]] = {"taskdeck": [], "arq": []}
        for i in range(args.rounds):
            for kind in ("taskdeck", "arq"):
                row = run(kind, url, counters, args.n, max_jobs, poll_delay)
                rows[kind].append(row)
                print(f"  round {i + 1} {kind:8s} cpu {row['cpu_us']:6.0f} µs/job   {row['jobs_s']:6.0f} jobs/s   "
                      f"redis {row['redis_us']:4.0f} µs/job   {row['cmds']:.1f} cmds/job", flush=True)
        for key, label in (("cpu_us", "worker CPU µs/job"), ("jobs_s", "jobs/s"), ("redis_us", "Redis CPU µs/job")):
            t = [x[key] for x in rows["taskdeck"]]
            b = [x[key] for x in rows["arq"]]
            rs = [x / y for x, y in zip(t, b, strict=True)]
            print(f"  {label:18s} taskdeck {fmt(med(t))}  arq {fmt(med(b))}  same-round ratio {med(rs):.2f} "
                  f"(rounds {' '.join(f'{x:.2f}' for x in rs)})")

        profiler = cProfile.Profile()
        rp = run("taskdeck", url, counters, args.n, max_jobs, poll_delay, profiler=profiler)
        cprofile_report(profiler, args.n, args.top, rp["cpu_us"])
        if args.pstats:
            profiler.dump_stats(args.pstats)
        if args.spy_n:
            pyspy(url, counters, args.spy_n, System("taskdeck", "taskdeck", max_jobs, poll_delay), args.top)
    footer()


if __name__ == "__main__":
    main()
