"""Redis memory per finished job, and retention keeping the total bounded.

    .venv/bin/python bench/memory.py [--n 10000] [--payload-bytes 0] [--retention-n 20000] [--rounds 3] [--quick]

1. Per finished job, alternating rounds on one Redis (flushed between runs): N jobs (BENCH_NOOP /
   ARQ `noop`, payload {"data": "x" * --payload-bytes}, result None) are submitted while one worker
   (max_jobs --max-jobs, both sides) drains them; then
     bytes/job        Δ(used_memory − client buffers) / N, before the first submit → after the last finish
     payload+result   JSON bytes of payload and result of one job (what the user asked to store)
     overhead/job     bytes/job − payload+result
     record, indexes, events, other: MEMORY USAGE (SAMPLES 0) of every key, grouped, / N
     rec+idx overhead (record + index entries) / N − payload+result       (target ≤ 2 KB)
   Bare ARQ keeps its default keep_result (3600 s), so its finished job is the result key, which
   repeats the job's arguments.
2. Retention: a worker with TASKDECK_RETENTION_DAYS = --retention-s seconds runs --retention-n jobs fed
   in batches (queue kept ≤ 2,000) while this process calls runner.worker.heartbeat.prune (as the heartbeat
   does, but every 0.5 s) with its own WorkerState; used_memory is sampled every second. Bounded =
   used_memory stops growing once the event stream reaches its cap (TASKDECK_EVENTS_MAXLEN).
"""
from __future__ import annotations

import argparse
import asyncio
import time
from collections import defaultdict

import orjson
from _harness import (
    Counters,
    System,
    alternate,
    bare_pool,
    bench_env,
    common_args,
    enqueue_many,
    fmt,
    footer,
    header,
    log_dir,
    med,
    private_redis,
    ratio,
    submit_many,
    table,
    taskdeck_finished,
    taskdeck_settings,
    verdict,
    wait_queue_empty,
    worker,
)

METRICS = [("bytes_job", "bytes/job"), ("payload_result", "payload+result"), ("overhead", "overhead/job"),
           ("record", "record"), ("indexes", "indexes"), ("events", "events"), ("other", "other"),
           ("rec_idx_overhead", "rec+idx overhead")]


def groups(counters: Counters, prefix: str) -> dict[str, int]:
    """MEMORY USAGE of every key, summed by kind."""
    r = counters.r
    keys = list(r.scan_iter(count=1000))
    sizes: list[int] = []
    for i in range(0, len(keys), 1000):
        pipe = r.pipeline(transaction=False)
        for key in keys[i:i + 1000]:
            pipe.memory_usage(key, samples=0)
        sizes += pipe.execute()
    out: dict[str, int] = defaultdict(int)
    for key, size in zip(keys, sizes, strict=True):
        if key.startswith(prefix + "job:"):
            kind = "record"
        elif key.startswith(prefix + "idx:"):
            kind = "indexes"
        elif key == prefix + "events":
            kind = "events"
        elif key.startswith("arq:result:"):
            kind = "arq result"
        else:
            kind = "other"
        out[kind] += size or 0
    return dict(out)


async def feed(system: System, url: str, n: int, payload: dict) -> None:
    if system.taskdeck:
        from runner import AsyncClient
        async with AsyncClient() as ac:
            await submit_many(ac, "BENCH_NOOP", payload, n, concurrency=50)
    else:
        pool = await bare_pool(url)
        await enqueue_many(pool, "noop", payload, n, concurrency=50)
        await pool.aclose()


async def one_record(system: System, n: int) -> tuple[int, str]:
    from runner import AsyncClient
    async with AsyncClient() as ac:
        jobs = await taskdeck_finished(ac, n)
        job = await ac.get(jobs[0].id)
        size = len(orjson.dumps(job.payload)) + len(orjson.dumps(job.result))
        encoding = await ac.store.redis.object("encoding", ac.store.keys.job(job.id))
        fields = await ac.store.redis.hlen(ac.store.keys.job(job.id))
        r = ac.store.redis
        raw = await r.hgetall(ac.store.keys.job(job.id))
        longest = max(len(v) for v in raw.values())
        actual = await r.memory_usage(ac.store.keys.job(job.id), samples=0)
        # what-ifs on a copy of this record: listpack encoding, and one JSON string
        old = (await r.config_get("hash-max-listpack-value"))["hash-max-listpack-value"]
        await r.config_set("hash-max-listpack-value", max(1024, longest))
        await r.hset("bench:whatif:listpack", mapping=raw)
        await r.config_set("hash-max-listpack-value", old)
        listpack = await r.memory_usage("bench:whatif:listpack", samples=0)
        await r.set("bench:whatif:string", orjson.dumps(raw))
        string = await r.memory_usage("bench:whatif:string", samples=0)
        await r.delete("bench:whatif:listpack", "bench:whatif:string")
        return size, (f"{encoding}, {fields} fields, longest value {longest} B, MEMORY USAGE {actual} B; "
                      f"the same fields as a listpack hash (hash-max-listpack-value ≥ {longest}) {listpack} B, "
                      f"as one JSON string {string} B")


def retention(url: str, counters: Counters, logs, args, system: System) -> None:
    days = args.retention_s / 86400
    env = {"TASKDECK_RETENTION_DAYS": repr(days)}
    counters.flush()
    samples: list[tuple] = []
    with worker(system, counters.r, logs, "retention", env=env):
        asyncio.run(retention_run(args, days, samples))
    retention_report(samples, args, days)
    return samples


async def retention_run(args, days: float, samples: list[tuple]) -> None:
    """Submit args.retention_n jobs while pruning in-process and sampling memory, until all are pruned."""
    from runner import AsyncClient
    from runner.settings import Settings
    from runner.storage.store import Store, connect
    from runner.worker.execution import WorkerState

    settings = Settings(retention_days=days)
    state = WorkerState(Store(connect(settings), settings), "bench-pruner")
    r, keys = state.store.redis, state.store.keys
    box: dict[str, int] = {"submitted": 0, "pruned": 0}
    done = asyncio.Event()
    t0 = time.monotonic()
    async with AsyncClient() as ac:
        tasks = [asyncio.create_task(prune_until(state, box, done)),
                 asyncio.create_task(sample_until(r, keys, t0, box, samples, done))]
        await produce(ac, r, keys, box, args.retention_n)
        await wait_drained(r, keys, t0, args.timeout)
        await asyncio.sleep(1.5)
        done.set()
        await asyncio.gather(*tasks)
        samples.append(await memory_row(r, keys, t0, box))
    await r.aclose()


async def produce(ac, r, keys, box: dict[str, int], n: int) -> None:
    while box["submitted"] < n:
        if await r.zcard(keys.queue) > 2000:
            await asyncio.sleep(0.05)
            continue
        k = min(200, n - box["submitted"])
        await submit_many(ac, "BENCH_NOOP", {}, k, concurrency=50)
        box["submitted"] += k


async def prune_until(state, box: dict[str, int], done: asyncio.Event) -> None:
    from runner.worker import heartbeat
    while not done.is_set():
        got = await heartbeat.prune(state)
        box["pruned"] += got
        if got < heartbeat.PRUNE_BATCH:
            await asyncio.sleep(0.5)


async def sample_until(r, keys, t0: float, box: dict[str, int], samples: list[tuple], done: asyncio.Event) -> None:
    while not done.is_set():
        samples.append(await memory_row(r, keys, t0, box))
        await asyncio.sleep(1.0)


async def memory_row(r, keys, t0: float, box: dict[str, int]) -> tuple:
    """Seconds, submitted, pruned, records, events, keys, used memory (without client buffers)."""
    mem = await r.info("memory")
    return (time.monotonic() - t0, box["submitted"], box["pruned"], await r.zcard(keys.all),
            await r.xlen(keys.events), await r.dbsize(), mem["used_memory"] - mem.get("mem_clients_normal", 0))


async def wait_drained(r, keys, t0: float, timeout: float) -> None:
    while await r.zcard(keys.queue) or await r.zcard(keys.all) > 0:
        if time.monotonic() - t0 > timeout:
            break
        await asyncio.sleep(0.2)


def retention_report(samples: list[tuple], args, days: float) -> None:
    print(f"\n-- 2. retention: {args.retention_n} jobs, TASKDECK_RETENTION_DAYS={days:.3g} ({args.retention_s:g} s), "
          f"prune every 0.5 s in-process --")
    print(f"{'t s':>6} {'submitted':>9} {'pruned':>8} {'records':>8} {'events':>7} {'keys':>6} {'used MB':>8}")
    step = max(1, len(samples) // 20)
    for row in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
        t, sub, pruned, records, events, dbsize, used = row
        print(f"{t:6.0f} {sub:9d} {pruned:8d} {records:8d} {events:7d} {dbsize:6d} {used / 2**20:8.2f}")
    used = [s[-1] for s in samples]
    half = [s[-1] for s in samples if s[1] >= args.retention_n / 2]
    print(f"used_memory: peak {max(used) / 2**20:.2f} MB, at the end {used[-1] / 2**20:.2f} MB; "
          f"second half of the run {min(half) / 2**20:.2f}–{max(half) / 2**20:.2f} MB" if half else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--payload-bytes", type=int, default=0)
    parser.add_argument("--max-jobs", type=int, default=50)
    parser.add_argument("--retention-n", type=int, default=20_000, help="0 skips part 2; full scale 100000")
    parser.add_argument("--retention-s", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=900)
    common_args(parser)
    args = parser.parse_args()
    if args.quick:
        args.n, args.rounds, args.retention_n = min(args.n, 1000), min(args.rounds, 1), min(args.retention_n, 3000)
    bench_env()
    settings = taskdeck_settings()
    systems = [System("taskdeck", "taskdeck", args.max_jobs, settings.poll_delay_s),
               System("arq-same", "arq", args.max_jobs, settings.poll_delay_s)]
    payload = {"data": "x" * args.payload_bytes}
    with private_redis() as url, log_dir(args.keep_logs) as logs:
        counters = Counters(url)
        header("memory: Redis bytes per finished job; retention", systems, n=args.n,
               payload_bytes=args.payload_bytes, rounds=args.rounds, retention_n=args.retention_n,
               events_maxlen=settings.events_maxlen)
        print("-- 1. per finished job --")
        notes: dict[str, str] = {}

        def run_one(system, i):
            counters.flush()
            with worker(system, counters.r, logs, f"r{i}") as w:
                time.sleep(0.5)
                m0 = counters.memory()
                asyncio.run(feed(system, url, args.n, payload))
                wait_queue_empty(counters, system.queue, [w], args.timeout)
                time.sleep(1.0)
                m1 = counters.memory()
                g = groups(counters, settings.prefix)
            if system.taskdeck:
                stored, notes["record encoding"] = asyncio.run(one_record(system, args.n))
            else:
                # ARQ's result key holds the arguments and the result (JSON here)
                stored = len(orjson.dumps(payload)) + len(orjson.dumps(None))
            n = args.n
            record = g.get("record", 0) + g.get("arq result", 0)
            row = {"bytes_job": (m1 - m0) / n, "payload_result": stored, "record": record / n,
                   "indexes": g.get("indexes", 0) / n, "events": g.get("events", 0) / n,
                   "other": g.get("other", 0) / n}
            row["overhead"] = row["bytes_job"] - stored
            row["rec_idx_overhead"] = row["record"] + row["indexes"] - stored
            return row

        results = alternate(systems, args.rounds, run_one, args.out, "memory")
        table(results, METRICS)
        for k, v in notes.items():
            print(f"  taskdeck {k}: {v}")
        print()
        value = med([r["rec_idx_overhead"] for r in results["taskdeck"]])
        verdict("taskdeck record + index bytes per finished job beyond payload+result", value, "≤ 2048",
                value <= 2048)
        value = med([r["overhead"] for r in results["taskdeck"]])
        print(f"taskdeck used_memory bytes per finished job beyond payload+result (incl. events): {fmt(value)}")
        ratio(results, "bytes_job", "taskdeck", "arq-same", label="bytes/finished job")
        if args.retention_n:
            retention(url, counters, logs, args, systems[0])
    footer()


if __name__ == "__main__":
    main()
