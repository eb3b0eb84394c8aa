"""pytest plugin for compat/arq_suite.py: ARQ's tests in a process where Taskdeck is loaded and has run.

Loaded with `-p` before ARQ's tests are collected, as an app that uses both would: it imports
Taskdeck's worker module (installing its hooks), then runs one real Taskdeck worker in burst mode over
a few jobs, in an event loop of its own that is closed before ARQ's first test, so that whatever a
Taskdeck worker leaves in the process (a filter on ARQ's logger, state in Taskdeck's modules) is there
while ARQ's tests run. Needs REDIS_URL (the script's redis-server); the database is flushed after.
"""
from __future__ import annotations

import asyncio

import pytest
import redis
from arq.worker import create_worker

import runner.worker
from runner import AsyncClient, JobStatus, Settings


async def run_one_taskdeck_worker(jobs: int = 3) -> None:
    settings = Settings()
    async with AsyncClient(settings) as client:
        ids = [(await client.submit("DEMO", {"duration_s": 0})).id for _ in range(jobs)]
    worker = create_worker(runner.worker.WorkerSettings, burst=True, handle_signals=False)
    try:
        await worker.main()
    finally:
        await worker.close()
    async with AsyncClient(settings) as client:
        done = [(await client.get(job_id)).status for job_id in ids]
    if done != [JobStatus.completed] * jobs:
        raise RuntimeError(f"the Taskdeck worker did not complete its jobs: {done}")


def pytest_configure(config: pytest.Config) -> None:
    asyncio.run(run_one_taskdeck_worker())
    with redis.Redis.from_url(Settings().url) as r:
        r.flushall()
