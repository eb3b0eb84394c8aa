"""No-op throughput: N jobs pre-enqueued, then ONE worker process drains them.

    .venv/bin/python bench/throughput.py [--n 5000] [--max-jobs M] [--poll-delay S] [--rounds 3] [--quick]
                                         [--archive] [--queues]

Systems, alternating rounds on one private Redis (flushed between runs):
  taskdeck     `arq runner.worker.WorkerSettings`, BENCH_NOOP; max_jobs/poll_delay = Taskdeck's defaults
               unless --max-jobs/--poll-delay are given (TASKDECK_MAX_JOBS, TASKDECK_POLL_DELAY_S)
  arq-same     bench/bare_arq.py `noop`, the SAME max_jobs and poll_delay      (target: taskdeck ≥ 0.9×)
  arq-default  bare ARQ at its defaults, max_jobs 10, poll_delay 0.5 s         (target: taskdeck ≥ 5×)
(when Taskdeck's settings equal ARQ's defaults the last two are one system, "arq-same=default").
`taskdeck` serves one queue (TASKDECK_QUEUES="default=<max_jobs>"). With --queues, also:
  taskdeck+3queues  the same worker serving `default`, `generation` and `scraping` (the jobs are all in
                    `default`; a poll claims from three queues)          (target: jobs/s ≥ 0.9× taskdeck's)
With --archive, also (every other system runs with TASKDECK_ARCHIVE=false):
  taskdeck+archive  the same worker feeding the archive: SQLite in a temporary folder, or Postgres when
                    TASKDECK_ARCHIVE_URL is set              (target: jobs/s ≥ 0.95× taskdeck's)

Method: the worker starts on an empty queue and is SIGSTOPped once ready; the N jobs are enqueued
(Taskdeck: AsyncClient.submit; ARQ: enqueue_job; 100 at a time); counters are read; SIGCONT; the
harness polls ZCOUNT of the queue every 10 ms until it is empty. Reported per run:
  jobs/s       N / (first job start → last job finish), from the job records (Taskdeck) or ARQ results
  wall jobs/s  N / (SIGCONT → queue empty)
  cpu µs/job   worker process CPU (user+sys) over the drain / N
  cmds/job     Redis commands over the drain / N (INFO commandstats; commands run inside Lua scripts
               count too; the harness's own INFO/ZCOUNT are taken off)
  writes/job   of those, commands Redis flags 'write' (+ PUBLISH)
  evalsha/job  Lua script calls (Taskdeck transitions)
  redis µs/job Redis server CPU (used_cpu_user+sys) over the drain / N
  kernel %     share of the worker's CPU spent in the kernel (socket syscalls: one per round trip)
  archived jobs/s   (taskdeck+archive) N / (SIGCONT → every job's final event archived and acked)
  archive lag s     (taskdeck+archive) from the queue empty to the archive complete
  cpu µs/job to archived  (taskdeck+archive) worker CPU from SIGCONT to the archive complete / N: the
                    whole cost of running and archiving a job
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from _harness import (
    Counters,
    System,
    alternate,
    archive_env,
    bare_finished,
    bare_pool,
    bench_env,
    common_args,
    comparison,
    enqueue_many,
    footer,
    header,
    log_dir,
    name_of,
    private_redis,
    ratio,
    span_bare,
    span_taskdeck,
    submit_many,
    table,
    taskdeck_finished,
    taskdeck_settings,
    wait_archived,
    wait_queue_empty,
    worker,
)

METRICS = [("jobs_s", "jobs/s"), ("wall_jobs_s", "wall jobs/s"), ("cpu_us", "cpu µs/job"),
           ("cmds", "cmds/job"), ("writes", "writes/job"), ("evalsha", "evalsha/job"),
           ("redis_us", "redis µs/job"), ("worker_cpu_pct", "worker CPU %"), ("sys_share_pct", "kernel % of CPU")]
ARCHIVE_METRICS = [("archived_jobs_s", "archived jobs/s"), ("archive_lag_s", "archive lag s"),
                   ("archive_cpu_us", "cpu µs/job to archived")]


async def enqueue(system, url: str, n: int, type_: str, payload: dict, function: str, kwargs: dict) -> None:
    if system.taskdeck:
        from runner import AsyncClient
        async with AsyncClient() as ac:
            await submit_many(ac, type_, payload, n)
    else:
        pool = await bare_pool(url)
        await enqueue_many(pool, function, kwargs, n)
        await pool.aclose()


async def spans(system, url: str, n: int) -> tuple[float, float]:
    if system.taskdeck:
        from runner import AsyncClient
        async with AsyncClient() as ac:
            return span_taskdeck(await taskdeck_finished(ac, n))
    pool = await bare_pool(url)
    try:
        return span_bare(await bare_finished(pool, n))
    finally:
        await pool.aclose()


def drain_run(system, i, *, url, counters, logs, n, timeout, type_, payload, function, kwargs, top):
    """The shared method of throughput.py and io.py: SIGSTOPped worker, enqueue, SIGCONT, drain."""
    counters.flush()
    with worker(system, counters.r, logs, f"r{i}") as w:
        w.pause()
        asyncio.run(enqueue(system, url, n, type_, payload, function, kwargs))
        a, c0, s0, t0 = counters.snapshot(), w.cpu(), w.ps.cpu_times().system, time.time()
        w.resume()
        t_end = wait_queue_empty(counters, system.queue, [w], timeout)
        b, c1, s1 = counters.snapshot(), w.cpu(), w.ps.cpu_times().system
        t_archived = wait_archived(counters.r, timeout) if system.archives else None
        c2 = w.cpu()
    d = counters.delta(a, b)
    first, last = asyncio.run(spans(system, url, n))
    top[system.name] = (f"calls/job: {d.top(n)}\n      redis µs/job: {d.top(n, by='usec')}")
    return {
        "n": n, "jobs_s": n / (last - first), "drain_s": last - first, "wall_s": t_end - t0,
        "wall_jobs_s": n / (t_end - t0), "cpu_us": (c1 - c0) / n * 1e6, "cmds": d.total() / n,
        "writes": d.write_calls() / n, "evalsha": d.calls.get("evalsha", 0) / n, "redis_us": d.cpu / n * 1e6,
        "worker_cpu_pct": (c1 - c0) / (t_end - t0) * 100, "sys_share_pct": (s1 - s0) / max(c1 - c0, 1e-9) * 100,
        "start_lag_s": first - t0,
        **({"archived_jobs_s": n / (t_archived - t0), "archive_lag_s": t_archived - t_end,
            "archive_cpu_us": (c2 - c0) / n * 1e6} if t_archived else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--max-jobs", type=int, help="both sides (default: Taskdeck's setting)")
    parser.add_argument("--poll-delay", type=float, help="both sides, seconds (default: Taskdeck's setting)")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--queues", action="store_true",
                        help="also run taskdeck+3queues, the worker serving three named queues, against one")
    parser.add_argument("--archive", action="store_true",
                        help="also run taskdeck+archive, the worker feeding the archive, to measure its cost")
    common_args(parser)
    args = parser.parse_args()
    if args.quick:
        args.n, args.rounds = min(args.n, 500), min(args.rounds, 1)
    bench_env()
    single = {"TASKDECK_QUEUES": f"default={args.max_jobs or taskdeck_settings().max_jobs}"}
    systems = comparison(args.max_jobs, args.poll_delay, taskdeck_extra=single)
    if args.queues:  # the same worker also serving two more (empty) queues: what a poll of three costs
        base = systems[0]
        served = {"TASKDECK_QUEUES": f"{single['TASKDECK_QUEUES']},generation=10,scraping=30"}
        systems.insert(1, System("taskdeck+3queues", "taskdeck", base.max_jobs, base.poll_delay,
                                 tuple(sorted(served.items()))))
    archive_dir = tempfile.TemporaryDirectory(prefix="taskdeck-bench-archive-") if args.archive else nullcontext()
    with private_redis() as url, log_dir(args.keep_logs) as logs, archive_dir as data:
        if data:
            base = systems[0]
            env = tuple(sorted(archive_env(Path(data)).items()))
            systems.insert(1, System("taskdeck+archive", "taskdeck", base.max_jobs, base.poll_delay, env))
        counters = Counters(url)
        header("throughput: no-op jobs, 1 worker process", systems, n=args.n, rounds=args.rounds)
        top: dict[str, str] = {}

        def run_one(system, i):
            return drain_run(system, i, url=url, counters=counters, logs=logs, n=args.n, timeout=args.timeout,
                             type_="BENCH_NOOP", payload={}, function="noop", kwargs={}, top=top)

        results = alternate(systems, args.rounds, run_one, args.out, "throughput")
    table(results, METRICS + (ARCHIVE_METRICS if args.archive else []))
    print("\nRedis commands per job by command (last round):")
    for name, line in top.items():
        print(f"  {name}: {line}")
    print()
    same, default = name_of(systems, "arq-same"), name_of(systems, "arq-default")
    ratio(results, "jobs_s", "taskdeck", same, "≥ 0.9", lambda x: x >= 0.9, "jobs/s")
    ratio(results, "jobs_s", "taskdeck", default, "≥ 5", lambda x: x >= 5, "jobs/s")
    ratio(results, "wall_jobs_s", "taskdeck", same, label="wall jobs/s")
    ratio(results, "cpu_us", "taskdeck", same, label="worker CPU µs/job")
    ratio(results, "cmds", "taskdeck", same, label="Redis cmds/job")
    ratio(results, "redis_us", "taskdeck", same, label="Redis CPU µs/job")
    if args.queues:
        ratio(results, "jobs_s", "taskdeck+3queues", "taskdeck", "≥ 0.9", lambda x: x >= 0.9, "jobs/s")
        ratio(results, "redis_us", "taskdeck+3queues", "taskdeck", label="Redis CPU µs/job")
    if args.archive:
        ratio(results, "jobs_s", "taskdeck+archive", "taskdeck", "≥ 0.95", lambda x: x >= 0.95, "jobs/s")
        ratio(results, "cpu_us", "taskdeck+archive", "taskdeck", label="worker CPU µs/job")
        ratio(results, "cmds", "taskdeck+archive", "taskdeck", label="Redis cmds/job")
    footer()


if __name__ == "__main__":
    main()
