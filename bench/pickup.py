"""Pickup latency on an idle worker (submit → first line of the task body), and idle worker cost.

    .venv/bin/python bench/pickup.py [--probes 150] [--gap 0.1] [--idle 10] [--poll-delay S] [--rounds 3] [--quick]

Systems, alternating rounds (a fresh worker per run, started and idle before the first probe):
  taskdeck     BENCH_STAMP, Taskdeck's default settings (or --max-jobs / --poll-delay)
  arq-same     bench/bare_arq.py `stamp`, the same max_jobs and poll_delay
  arq-default  bare ARQ defaults (max_jobs 10, poll_delay 0.5 s; merged with arq-same when equal)
Probes arrive one at a time at Poisson times (mean gap --gap s, the same seeded sequence for every
system in a round), independent of the poll phase. Reported per run:
  p50/p95/p99/max ms  time.time() just before the submit/enqueue call → time.time() at the first line
                      of the task (returned as its result): the user-visible pickup
  own p50/p99 ms      the systems' own timestamps: Taskdeck record started_at − queued_at; ARQ
                      result start_time − enqueue_time
  idle cpu %          worker process CPU over --idle seconds with nothing to do (psutil)
  idle cmds/s         Redis commands per second the idle worker causes (writes/s separately)
Targets (Taskdeck, median of the rounds): p50 ≤ 10 ms, p99 ≤ 50 ms.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import time

from _harness import (
    Counters,
    alternate,
    bare_pool,
    bench_env,
    common_args,
    comparison,
    footer,
    header,
    log_dir,
    med,
    name_of,
    pct,
    private_redis,
    ratio,
    table,
    verdict,
    worker,
)

METRICS = [("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"), ("p99_ms", "p99 ms"), ("max_ms", "max ms"),
           ("own_p50_ms", "own p50 ms"), ("own_p99_ms", "own p99 ms"), ("idle_cpu_pct", "idle cpu %"),
           ("idle_cmds_s", "idle cmds/s"), ("idle_writes_s", "idle writes/s"), ("rss_mb", "worker RSS MB")]


async def probe(system, url: str, probes: int, gap: float, seed: int) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    sent: list[tuple[object, float]] = []
    if system.taskdeck:
        from runner import AsyncClient, JobStatus
        async with AsyncClient() as ac:
            for _ in range(probes):
                await asyncio.sleep(rng.expovariate(1 / gap))
                t0 = time.time()
                job = await ac.submit("BENCH_STAMP", {})
                sent.append((job.id, t0))
            deadline = time.monotonic() + 60
            while True:
                jobs = await asyncio.gather(*(ac.get(job_id) for job_id, _ in sent))
                if all(j.status is JobStatus.completed for j in jobs):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError("probes not completed")
                await asyncio.sleep(0.05)
        user = [j.result["t"] - t0 for j, (_, t0) in zip(jobs, sent, strict=True)]
        own = [(j.started_at - j.queued_at).total_seconds() for j in jobs]
        return user, own
    pool = await bare_pool(url)
    try:
        for _ in range(probes):
            await asyncio.sleep(rng.expovariate(1 / gap))
            t0 = time.time()
            job = await pool.enqueue_job("stamp")
            sent.append((job, t0))
        infos = []
        for job, _ in sent:
            await job.result(timeout=60, poll_delay=0.05)
            infos.append(await job.result_info())
    finally:
        await pool.aclose()
    user = [info.result - t0 for info, (_, t0) in zip(infos, sent, strict=True)]
    own = [(info.start_time - info.enqueue_time).total_seconds() for info in infos]
    return user, own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probes", type=int, default=150)
    parser.add_argument("--gap", type=float, default=0.1, help="mean seconds between probes (Poisson)")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measurement per run")
    parser.add_argument("--max-jobs", type=int)
    parser.add_argument("--poll-delay", type=float)
    common_args(parser)
    args = parser.parse_args()
    if args.quick:
        args.probes, args.idle, args.rounds = min(args.probes, 30), min(args.idle, 2.0), min(args.rounds, 1)
    bench_env()
    systems = comparison(args.max_jobs, args.poll_delay)
    with private_redis() as url, log_dir(args.keep_logs) as logs:
        counters = Counters(url)
        header("pickup: submit → task start on an idle worker; idle cost", systems, probes=args.probes,
               gap_s=args.gap, idle_s=args.idle, rounds=args.rounds)

        def run_one(system, i):
            counters.flush()
            with worker(system, counters.r, logs, f"r{i}", settle=0.5) as w:
                user, own = asyncio.run(probe(system, url, args.probes, args.gap, seed=1000 + i))
                time.sleep(1.0)
                a, c0 = counters.snapshot(), w.cpu()
                time.sleep(args.idle)
                b, c1 = counters.snapshot(), w.cpu()
                rss = w.rss()
            d = counters.delta(a, b)
            return {
                "p50_ms": pct(user, 50) * 1e3, "p95_ms": pct(user, 95) * 1e3, "p99_ms": pct(user, 99) * 1e3,
                "max_ms": max(user) * 1e3, "own_p50_ms": pct(own, 50) * 1e3, "own_p99_ms": pct(own, 99) * 1e3,
                "idle_cpu_pct": (c1 - c0) / d.seconds * 100, "idle_cmds_s": d.total() / d.seconds,
                "idle_writes_s": d.write_calls() / d.seconds, "idle_redis_cpu_pct": d.cpu / d.seconds * 100,
                "rss_mb": rss / 2**20, "idle_top": d.top(d.seconds, 6),
            }

        results = alternate(systems, args.rounds, run_one, args.out, "pickup")
    table(results, METRICS)
    print("\nidle Redis commands per second by command (last round):")
    for name, rows in results.items():
        print(f"  {name}: {rows[-1]['idle_top']}")
    print()
    p50 = med([r["p50_ms"] for r in results["taskdeck"]])
    p99 = med([r["p99_ms"] for r in results["taskdeck"]])
    verdict("taskdeck pickup p50 ms (median of rounds)", p50, "≤ 10", p50 <= 10)
    verdict("taskdeck pickup p99 ms (median of rounds)", p99, "≤ 50", p99 <= 50)
    for other in dict.fromkeys(filter(None, [name_of(systems, "arq-same"), name_of(systems, "arq-default")])):
        ratio(results, "p50_ms", "taskdeck", other, label="pickup p50")
        ratio(results, "p99_ms", "taskdeck", other, label="pickup p99")
        ratio(results, "idle_cpu_pct", "taskdeck", other, label="idle worker CPU")
        ratio(results, "idle_cmds_s", "taskdeck", other, label="idle Redis cmds/s")
    footer()


if __name__ == "__main__":
    main()
