"""Core figures: submit latency (vs bare ARQ enqueue_job, same run), enqueue → start on an idle
worker, cancel of a running job, and SIGKILL recovery with the default 30 s lease.

    .venv/bin/python bench/core.py [--n 1000] [--skip-kill]
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import tempfile
import time
from pathlib import Path

from _harness import ms, private_redis, start_worker, stop
from arq import create_pool
from arq.connections import RedisSettings

from runner import AsyncClient, JobStatus


async def wait(ac: AsyncClient, job_id: str, check, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = await ac.get(job_id)
        if check(job):
            return job
        await asyncio.sleep(0.005)
    raise TimeoutError(job_id)


async def submit_latency(url: str, n: int) -> None:
    arq = await create_pool(RedisSettings.from_dsn(url))
    async with AsyncClient() as ac:
        ours, bare = [], []
        for i in range(n):
            t = time.perf_counter()
            await ac.submit("DEMO", {"duration_s": 0})
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            await arq.enqueue_job("noop", i, _queue_name="bench:bare")
            bare.append(time.perf_counter() - t)
    await arq.aclose()
    print(f"submit          {ms(ours)}")
    print(f"bare enqueue    {ms(bare)}")
    print(f"submit p99 / bare enqueue_job p99 = {sorted(ours)[int(n * .99)] / sorted(bare)[int(n * .99)]:.2f}")


async def pickup_and_cancel(n: int) -> None:
    async with AsyncClient() as ac:
        waits = []
        for _ in range(n):
            job = await ac.submit("DEMO", {"duration_s": 0})
            done = await wait(ac, job.id, lambda j: j.status is JobStatus.completed)
            waits.append((done.started_at - done.queued_at).total_seconds())
            await asyncio.sleep(0.05)
        print(f"enqueue → start {ms(waits)}  (idle worker, poll_delay {ac.settings.poll_delay_s} s)")
        cancels = []
        for _ in range(10):
            job = await ac.submit("DEMO", {"duration_s": 60})
            await wait(ac, job.id, lambda j: j.status is JobStatus.processing)
            t = time.perf_counter()
            done = await ac.cancel(job.id)
            assert done.status is JobStatus.cancelled
            cancels.append(time.perf_counter() - t)
        print(f"cancel running  {ms(cancels)}  (call → record says cancelled)")


async def kill_recovery(log: Path) -> None:
    async with AsyncClient() as ac:
        victim = start_worker(log)
        job = await ac.submit("DEMO", {"duration_s": 600})
        await wait(ac, job.id, lambda j: j.status is JobStatus.processing)
        victim.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        survivor = start_worker(log)
        await wait(ac, job.id, lambda j: j.attempts == 2 and j.status is JobStatus.processing)
        print(f"SIGKILL → running again on another worker: {time.monotonic() - killed:.1f} s "
              f"(lease {ac.settings.lease_s:g} s, job timeout 3700 s)")
        await ac.cancel(job.id)
        stop(survivor)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--skip-kill", action="store_true")
    args = parser.parse_args()
    with private_redis() as url, tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "worker.log"
        asyncio.run(submit_latency(url, args.n))
        worker = start_worker(log)
        try:
            asyncio.run(pickup_and_cancel(min(args.n, 200)))
        finally:
            stop(worker)
        if not args.skip_kill:
            asyncio.run(kill_recovery(log))


if __name__ == "__main__":
    main()
