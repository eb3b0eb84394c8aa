"""High availability: what waiting for a replica costs a submit, and how long losing the primary stops work.

    .venv/bin/python bench/failover.py [--n 1000] [--rounds 3] [--down-after-ms 1000] [--quick]

A local primary, two replicas and three sentinels (runner.ops.redis_server.start_ha, as `up --ha`
starts them, with the second replica so that the promoted one still has a replica to confirm writes).

1. Submit latency, per round: --n sequential AsyncClient.submit calls through the sentinels with
   TASKDECK_REDIS_MIN_REPLICAS=0 and =1 (WAIT 1 in the same round trip), alternating one of each;
   bare ARQ enqueue_job on the same primary beside them. p50 / p99 and the ratio of the p50s.
2. Failover, once per round (a fresh set of servers each time): one worker runs BENCH_NOOP jobs that a
   submitter keeps sending (TASKDECK_REDIS_FAILOVER_WAIT_S=10, so submits wait out the switch); the
   primary is SIGKILLed; reported: seconds from the kill to the sentinels' promotion, to the first
   submit acknowledged by the new primary, and to the first job that completed after the kill; and how
   many submits were refused with NotReplicated meanwhile (made on the new primary before the other
   replica follows it).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import tempfile
import time
from pathlib import Path

import redis
from _harness import bare_pool, bench_env, footer, header, med, pct, start_worker, stop

from runner import AsyncClient, Settings
from runner.errors import NotReplicated
from runner.ops import redis_server

MASTER = "mymaster"


def bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_block(count: int) -> int:
    for first in range(21000, 32000, 10):  # below the ephemeral range, which outgoing connections use
        if all(bindable(port) for port in range(first, first + count)):
            return first
    raise RuntimeError("no free block of ports")


def servers(data: Path, down_after_ms: int) -> tuple[redis_server.HighAvailability, int]:
    port = free_block(6)
    return redis_server.start_ha(data, port, MASTER, down_after_ms=down_after_ms, replicas=2), port


def shutdown(ha: redis_server.HighAvailability) -> None:
    for proc in [ha.primary, *ha.replicas, *ha.sentinels]:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(10)


async def latency(ha: redis_server.HighAvailability, port: int, n: int) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {"min_replicas=0": [], "min_replicas=1": [], "arq enqueue_job": []}
    pool = await bare_pool(f"redis://127.0.0.1:{port}/0")
    async with AsyncClient(Settings(redis_sentinels=ha.setting)) as loose, \
            AsyncClient(Settings(redis_sentinels=ha.setting, redis_min_replicas=1)) as safe:
        for _ in range(50):
            await loose.submit("BENCH_NOOP", {})
            await safe.submit("BENCH_NOOP", {})
        for _ in range(n):
            for name, call in (("min_replicas=0", lambda: loose.submit("BENCH_NOOP", {})),
                               ("min_replicas=1", lambda: safe.submit("BENCH_NOOP", {})),
                               ("arq enqueue_job", lambda: pool.enqueue_job("noop"))):
                began = time.perf_counter()
                await call()
                found[name].append(time.perf_counter() - began)
    await pool.aclose()
    return found


def promoted(ha: redis_server.HighAvailability, port: int) -> bool:
    with redis.Redis(port=ha.sentinel_ports[0], decode_responses=True) as sentinel:
        return int(sentinel.sentinel_get_master_addr_by_name(MASTER)[1]) != port


async def failover(ha: redis_server.HighAvailability, port: int, logs: Path) -> dict[str, float]:
    settings = Settings(redis_sentinels=ha.setting, redis_min_replicas=1, redis_failover_wait_s=10)
    proc = start_worker(logs / "worker.log", TASKDECK_REDIS_SENTINELS=ha.setting, TASKDECK_REDIS_MIN_REPLICAS="1")
    times: dict[str, float] = {}
    try:
        async with AsyncClient(settings) as client:
            warm = await client.submit("BENCH_NOOP", {})
            while not (await client.get(warm.id)).status.terminal:
                await asyncio.sleep(0.01)
            ha.primary.kill()
            killed = time.monotonic()
            after: list[str] = []
            unconfirmed = 0
            while "first job done" not in times and time.monotonic() - killed < 60:
                try:
                    after.append((await client.submit("BENCH_NOOP", {})).id)
                except NotReplicated:  # promoted before the other replica follows it: told, not acknowledged
                    unconfirmed += 1
                    continue
                times.setdefault("first submit acknowledged", time.monotonic() - killed)
                if "promotion" not in times and promoted(ha, port):
                    times["promotion"] = time.monotonic() - killed
                if (await client.get(after[0])).status.terminal:
                    times["first job done"] = time.monotonic() - killed
                await asyncio.sleep(0.01)
            times.setdefault("promotion", time.monotonic() - killed)
            times["submits not confirmed"] = unconfirmed
    finally:
        stop(proc)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--down-after-ms", type=int, default=1000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.n, args.rounds = 100, 1
    bench_env()
    header("failover", n=args.n, rounds=args.rounds, down_after_ms=args.down_after_ms)
    lat: dict[str, list[float]] = {}
    outages: list[dict[str, float]] = []
    for round_no in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="taskdeck-ha-") as tmp:
            ha, port = servers(Path(tmp), args.down_after_ms)
            try:
                for name, values in asyncio.run(latency(ha, port, args.n)).items():
                    lat.setdefault(name, []).extend(values)
                outage = asyncio.run(failover(ha, port, Path(tmp)))
            finally:
                shutdown(ha)
        outages.append(outage)
        print(f"  round {round_no + 1}: " + ", ".join(f"{k} {v:g}" for k, v in outage.items()), flush=True)
    print("\nsubmit latency (ms)      |   p50 |   p99")
    for name, values in lat.items():
        print(f"{name:<25}| {med(values) * 1000:5.2f} | {pct(values, 99) * 1000:5.2f}")
    ratio = med(lat["min_replicas=1"]) / med(lat["min_replicas=0"])
    print(f"submit p50 with WAIT 1 / without: {ratio:.2f}")
    print("\nprimary SIGKILLed → (median of rounds, s): " + ", ".join(
        f"{key} {med([o[key] for o in outages if key in o]):.2f}" for key in outages[0]))
    footer()


if __name__ == "__main__":
    os.environ.setdefault("TASKDECK_ARCHIVE", "false")
    main()
