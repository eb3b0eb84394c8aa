"""I/O-bound concurrency: N jobs that each await `--seconds` (default 2,000 × 1 s), max_jobs 500, one worker.

    .venv/bin/python bench/io.py [--n 2000] [--max-jobs 500] [--seconds 1] [--poll-delay S] [--rounds 3] [--quick]

Systems, alternating rounds: taskdeck (BENCH_SLEEP) and arq-same (bench/bare_arq.py `sleep`), both with
max_jobs 500 and the same poll_delay (Taskdeck's default unless --poll-delay). Same method as
throughput.py (worker SIGSTOPped while the jobs are enqueued, then SIGCONT and drain).
  ideal s       n / max_jobs × seconds (4 s at the defaults)
  drain/ideal   (first job start → last job finish) / ideal, from records / ARQ results  (target ≤ 1.2;
                bare ARQ at poll 0.5 s measured 1.45 in the research baseline)
  wall/ideal    (SIGCONT → queue empty) / ideal: also counts the first pickup
  cpu µs/job, cmds/job, redis µs/job as in throughput.py
"""
from __future__ import annotations

import argparse

from _harness import (
    Counters,
    alternate,
    bench_env,
    common_args,
    comparison,
    footer,
    header,
    log_dir,
    med,
    private_redis,
    ratio,
    table,
    verdict,
)
from throughput import drain_run

METRICS = [("drain_ideal", "drain/ideal"), ("wall_ideal", "wall/ideal"), ("drain_s", "drain s"),
           ("jobs_s", "jobs/s"), ("cpu_us", "cpu µs/job"), ("cmds", "cmds/job"), ("redis_us", "redis µs/job"),
           ("worker_cpu_pct", "worker CPU %")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--max-jobs", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=1.0, help="each job awaits this long")
    parser.add_argument("--poll-delay", type=float, help="both sides (default: Taskdeck's setting)")
    parser.add_argument("--timeout", type=float, default=600)
    common_args(parser)
    args = parser.parse_args()
    if args.quick:
        args.n, args.rounds = min(args.n, 500), min(args.rounds, 1)
    bench_env()
    systems = comparison(args.max_jobs, args.poll_delay, with_defaults=False)
    ideal = args.n / args.max_jobs * args.seconds
    with private_redis() as url, log_dir(args.keep_logs) as logs:
        counters = Counters(url)
        header("io: jobs awaiting asyncio.sleep, 1 worker process", systems, n=args.n, seconds=args.seconds,
               ideal_s=ideal, rounds=args.rounds)
        top: dict[str, str] = {}

        def run_one(system, i):
            row = drain_run(system, i, url=url, counters=counters, logs=logs, n=args.n, timeout=args.timeout,
                            type_="BENCH_SLEEP", payload={"seconds": args.seconds}, function="sleep",
                            kwargs={"seconds": args.seconds}, top=top)
            return row | {"drain_ideal": row["drain_s"] / ideal, "wall_ideal": row["wall_s"] / ideal}

        results = alternate(systems, args.rounds, run_one, args.out, "io")
    table(results, METRICS)
    print()
    value = med([r["drain_ideal"] for r in results["taskdeck"]])
    verdict("taskdeck drain/ideal (median of rounds)", value, "≤ 1.2", value <= 1.2)
    ratio(results, "drain_ideal", "taskdeck", "arq-same", label="drain/ideal")
    ratio(results, "wall_ideal", "taskdeck", "arq-same", label="wall/ideal")
    ratio(results, "cpu_us", "taskdeck", "arq-same", label="worker CPU µs/job")
    footer()


if __name__ == "__main__":
    main()
