"""Progress coalescing: a task calling ctx.progress() 1,000 times a second; Redis writes it causes.

    .venv/bin/python bench/progress.py [--rate 1000] [--window 5] [--interval S] [--rounds 3] [--quick]

Systems, alternating rounds (fresh worker each run, Taskdeck's default settings unless --interval,
which sets TASKDECK_PROGRESS_INTERVAL_S):
  taskdeck-chatty  BENCH_CHATTY: ctx.progress() on a fixed schedule of --rate calls/s
  taskdeck-quiet   the same job and loop with rate 0: what a running job and an idle worker cost anyway
  arq-chatty       bare ARQ running the same loop (ARQ has no progress API; reference only)
Each job runs --window + 1.5 s; counters are read from 0.5 s after it started for --window s.
  writes/s       Redis commands flagged 'write' (+ PUBLISH), including those inside Lua scripts
  cmds/s         all Redis commands;  evalsha/s  Lua calls (= round trips for a Taskdeck progress write)
  reports/s      ctx.progress() calls the task actually made per second
Verdict: (taskdeck-chatty − taskdeck-quiet) writes/s, same round, median ≤ 10.
"""
from __future__ import annotations

import argparse
import asyncio

from _harness import (
    Counters,
    System,
    alternate,
    bare_pool,
    bench_env,
    common_args,
    footer,
    header,
    log_dir,
    med,
    private_redis,
    table,
    taskdeck_settings,
    verdict,
    worker,
)

METRICS = [("writes_s", "writes/s"), ("cmds_s", "cmds/s"), ("evalsha_s", "evalsha/s"), ("xadd_s", "xadd/s"),
           ("reports_s", "reports/s")]


async def run_job(system: System, url: str, counters: Counters, rate: float, window: float) -> dict[str, float]:
    seconds = window + 1.5
    if system.taskdeck:
        from runner import AsyncClient, JobStatus
        async with AsyncClient() as ac:
            job = await ac.submit("BENCH_CHATTY", {"seconds": seconds, "rate": rate})
            while (await ac.get(job.id)).status is not JobStatus.processing:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.5)
            a = counters.snapshot()
            await asyncio.sleep(window)
            b = counters.snapshot()
            done = await ac.wait_terminal(job.id, seconds + 30)
            result = done.result
    else:
        pool = await bare_pool(url)
        job = await pool.enqueue_job("chatty", seconds=seconds, rate=rate)
        while not await pool.exists(f"arq:in-progress:{job.job_id}"):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)
        a = counters.snapshot()
        await asyncio.sleep(window)
        b = counters.snapshot()
        result = await job.result(timeout=seconds + 30)
        await pool.aclose()
    d = counters.delta(a, b)
    return {"writes_s": d.write_calls() / d.seconds, "cmds_s": d.total() / d.seconds,
            "evalsha_s": d.calls.get("evalsha", 0) / d.seconds, "xadd_s": d.calls.get("xadd", 0) / d.seconds,
            "reports_s": result["reports"] / result["seconds"], "top": d.top(d.seconds, 10)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--interval", type=float, help="TASKDECK_PROGRESS_INTERVAL_S (default: Taskdeck's)")
    common_args(parser)
    args = parser.parse_args()
    if args.quick:
        args.window, args.rounds = min(args.window, 2.0), min(args.rounds, 1)
    bench_env()
    extra = (("TASKDECK_PROGRESS_INTERVAL_S", str(args.interval)),) if args.interval else ()
    settings = taskdeck_settings(**dict(extra))
    mj, pd = settings.max_jobs, settings.poll_delay_s
    systems = [System("taskdeck-chatty", "taskdeck", mj, pd, extra),
               System("taskdeck-quiet", "taskdeck", mj, pd, extra), System("arq-chatty", "arq", mj, pd)]
    with private_redis() as url, log_dir(args.keep_logs) as logs:
        counters = Counters(url)
        header("progress: ctx.progress() at a high rate → Redis writes", systems, rate=args.rate,
               window_s=args.window, progress_interval_s=settings.progress_interval_s, rounds=args.rounds)

        def run_one(system, i):
            counters.flush()
            rate = 0.0 if system.name == "taskdeck-quiet" else args.rate
            with worker(system, counters.r, logs, f"r{i}"):
                return asyncio.run(run_job(system, url, counters, rate, args.window))

        results = alternate(systems, args.rounds, run_one, args.out, "progress")
    table(results, METRICS)
    print("\nRedis commands per second by command (last round):")
    for name, rows in results.items():
        print(f"  {name}: {rows[-1]['top']}")
    print()
    rounds = list(zip(results["taskdeck-chatty"], results["taskdeck-quiet"], strict=True))
    caused = [a["writes_s"] - b["writes_s"] for a, b in rounds]
    trips = [a["evalsha_s"] - b["evalsha_s"] for a, b in rounds]
    print(f"writes/s caused by progress (chatty − quiet, per round): {' '.join(f'{x:.1f}' for x in caused)}")
    print(f"progress round trips/s (evalsha, chatty − quiet, per round): {' '.join(f'{x:.1f}' for x in trips)}")
    verdict("progress writes/s (median of rounds)", med(caused), "≤ 10", med(caused) <= 10)
    footer()


if __name__ == "__main__":
    main()
