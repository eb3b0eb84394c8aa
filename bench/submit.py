"""Submit cost: AsyncClient.submit vs bare ARQ enqueue_job, and 100 concurrent submitters.

    .venv/bin/python bench/submit.py [--n 2000] [--concurrency 100] [--seconds 60] [--worker] [--rounds 3] [--quick]

No worker runs unless --worker (then one worker of the matching system drains during each
concurrent block). Job types: BENCH_NOOP with payload {} vs ARQ `noop()` on the bare queue.

1. Sequential latency, per round: --n calls alternating one submit / one enqueue_job (after 50 warm-up
   calls each); p50/p99 per system and the same-round ratio of p99 (target: submit p99 ≤ 2× enqueue p99).
   Also client CPU µs per call (this process, psutil).
2. Concurrency, per round: --concurrency asyncio tasks share one client and submit in a loop for
   --seconds/rounds s (Taskdeck; --seconds 60 = 60 s in total), then the same for bare ARQ for the
   same block length (capped at --bare-seconds). Counts calls/s, p50/p99 and errors (target: 0 errors
   for Taskdeck). Redis is flushed before each block.
"""
from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter

from _harness import (
    Counters,
    System,
    bare_pool,
    bench_env,
    fmt,
    footer,
    header,
    log_dir,
    med,
    pct,
    private_redis,
    taskdeck_settings,
    worker,
)


def cpu() -> float:
    return time.process_time()  # this process, all threads; finer-grained than psutil's ticks


async def sequential(url: str, n: int) -> dict[str, float]:
    from runner import AsyncClient
    pool = await bare_pool(url)
    async with AsyncClient() as ac:
        for _ in range(50):
            await ac.submit("BENCH_NOOP", {})
            await pool.enqueue_job("noop")
        ours, bare, cpu_ours, cpu_bare = [], [], 0.0, 0.0
        for _ in range(n):
            c, t = cpu(), time.perf_counter()
            await ac.submit("BENCH_NOOP", {})
            ours.append(time.perf_counter() - t)
            cpu_ours += cpu() - c
            c, t = cpu(), time.perf_counter()
            await pool.enqueue_job("noop")
            bare.append(time.perf_counter() - t)
            cpu_bare += cpu() - c
    await pool.aclose()
    return {"submit_p50_ms": pct(ours, 50) * 1e3, "submit_p99_ms": pct(ours, 99) * 1e3,
            "enqueue_p50_ms": pct(bare, 50) * 1e3, "enqueue_p99_ms": pct(bare, 99) * 1e3,
            "submit_cpu_us": cpu_ours / n * 1e6, "enqueue_cpu_us": cpu_bare / n * 1e6}


async def hammer(taskdeck: bool, url: str, concurrency: int, seconds: float) -> dict[str, object]:
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    if taskdeck:
        from runner import AsyncClient
        client = AsyncClient()

        async def call() -> None:
            await client.submit("BENCH_NOOP", {})
    else:
        client = await bare_pool(url)

        async def call() -> None:
            if await client.enqueue_job("noop") is None:
                raise RuntimeError("enqueue_job returned None")

    end = time.monotonic() + seconds

    async def lane() -> None:
        while time.monotonic() < end:
            t = time.perf_counter()
            try:
                await call()
            except Exception as e:  # counted, never fatal: the point is how many
                errors[f"{type(e).__name__}: {str(e)[:120]}"] += 1
            else:
                latencies.append(time.perf_counter() - t)

    c, t0 = cpu(), time.monotonic()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    elapsed, used = time.monotonic() - t0, cpu() - c
    await (client.close() if taskdeck else client.aclose())
    ok = len(latencies)
    return {"calls_s": ok / elapsed, "ok": ok, "errors": sum(errors.values()), "kinds": dict(errors),
            "p50_ms": pct(latencies, 50) * 1e3 if ok else float("nan"),
            "p99_ms": pct(latencies, 99) * 1e3 if ok else float("nan"), "cpu_us": used / max(ok, 1) * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="sequential calls per system per round")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0, help="total Taskdeck time under concurrency")
    parser.add_argument("--bare-seconds", type=float, default=20.0, help="cap on each bare-ARQ block")
    parser.add_argument("--worker", action="store_true", help="a worker drains during the concurrent blocks")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.n, args.seconds, args.rounds = min(args.n, 300), min(args.seconds, 6.0), min(args.rounds, 2)
    bench_env()
    block = args.seconds / args.rounds
    bare_block = min(block, args.bare_seconds)
    settings = taskdeck_settings()
    with private_redis() as url, log_dir(args.keep_logs) as logs:
        counters = Counters(url)
        header("submit: AsyncClient.submit vs ARQ enqueue_job", n=args.n, concurrency=args.concurrency,
               seconds=args.seconds, block_s=block, bare_block_s=bare_block, worker=args.worker, rounds=args.rounds)
        print("\n-- 1. sequential latency (no worker), calls alternate submit / enqueue_job --")
        seq = []
        for i in range(args.rounds):
            counters.flush()
            row = asyncio.run(sequential(url, args.n))
            seq.append(row)
            print(f"  round {i + 1}: submit p50 {row['submit_p50_ms']:.3f} p99 {row['submit_p99_ms']:.3f} ms "
                  f"({row['submit_cpu_us']:.0f} µs CPU) | enqueue_job p50 {row['enqueue_p50_ms']:.3f} "
                  f"p99 {row['enqueue_p99_ms']:.3f} ms ({row['enqueue_cpu_us']:.0f} µs CPU) | "
                  f"p99 ratio {row['submit_p99_ms'] / row['enqueue_p99_ms']:.2f}", flush=True)
        for key in ("submit_p50_ms", "submit_p99_ms", "enqueue_p50_ms", "enqueue_p99_ms", "submit_cpu_us",
                    "enqueue_cpu_us"):
            values = [r[key] for r in seq]
            print(f"  {key:16s} median {fmt(med(values))} ({fmt(min(values))}–{fmt(max(values))})")
        p50r = [r["submit_p50_ms"] / r["enqueue_p50_ms"] for r in seq]
        p99r = [r["submit_p99_ms"] / r["enqueue_p99_ms"] for r in seq]
        cpur = [r["submit_cpu_us"] / r["enqueue_cpu_us"] for r in seq]
        print(f"submit/enqueue_job p50 ratio: median {med(p50r):.2f} (rounds {' '.join(f'{x:.2f}' for x in p50r)})")
        print(f"submit/enqueue_job p99 ratio: median {med(p99r):.2f} (rounds {' '.join(f'{x:.2f}' for x in p99r)})"
              f"   target ≤ 2   {'PASS' if med(p99r) <= 2 else 'FAIL'}")
        print(f"submit/enqueue_job client CPU ratio: median {med(cpur):.2f}")

        print(f"\n-- 2. {args.concurrency} concurrent submitters --")
        conc: dict[str, list[dict]] = {"taskdeck": [], "arq": []}
        kinds: Counter[str] = Counter()
        for i in range(args.rounds):
            for name, seconds in (("taskdeck", block), ("arq", bare_block)):
                counters.flush()
                system = System(name, "taskdeck" if name == "taskdeck" else "arq", settings.max_jobs,
                                settings.poll_delay_s)
                if args.worker:
                    with worker(system, counters.r, logs, f"c{i}"):
                        row = asyncio.run(hammer(name == "taskdeck", url, args.concurrency, seconds))
                else:
                    row = asyncio.run(hammer(name == "taskdeck", url, args.concurrency, seconds))
                conc[name].append(row)
                if name == "taskdeck":
                    kinds.update(row["kinds"])
                print(f"  round {i + 1} {name:8s} {seconds:.0f} s: {row['calls_s']:.0f} calls/s, ok {row['ok']}, "
                      f"errors {row['errors']}, p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, "
                      f"client CPU {row['cpu_us']:.0f} µs/call", flush=True)
        for key in ("calls_s", "p50_ms", "p99_ms", "cpu_us"):
            r = [a[key] / b[key] for a, b in zip(conc["taskdeck"], conc["arq"], strict=True)]
            print(f"  {key:8s} taskdeck median {fmt(med([x[key] for x in conc['taskdeck']]))}, arq median "
                  f"{fmt(med([x[key] for x in conc['arq']]))}; same-round ratio median {med(r):.2f} "
                  f"(rounds {' '.join(f'{x:.2f}' for x in r)})")
        total_ok = sum(r["ok"] for r in conc["taskdeck"])
        total_err = sum(r["errors"] for r in conc["taskdeck"])
        print(f"taskdeck concurrent submits: {total_ok} ok, {total_err} errors in {args.seconds:g} s "
              f"  target 0 errors   {'PASS' if total_err == 0 else 'FAIL'}")
        for kind, count in kinds.most_common(5):
            print(f"    {count} × {kind}")
        bare_err = sum(r["errors"] for r in conc["arq"])
        print(f"bare ARQ concurrent enqueues: {sum(r['ok'] for r in conc['arq'])} ok, {bare_err} errors")
    footer()


if __name__ == "__main__":
    main()
