"""Priorities on ARQ's queue: high jumps a backlog; low waits behind normal only up to the aging time."""
from __future__ import annotations

import asyncio
import time

from runner import AsyncClient, Client, JobStatus, Settings
from tests.polling import wait_until


async def test_high_job_behind_a_thousand_normal_ones_starts_first(redis_url: str, start_worker) -> None:
    async with AsyncClient() as ac:
        backlog = await asyncio.gather(*[ac.submit("DEMO", {"duration_s": 0}) for _ in range(1000)])
        urgent = await ac.submit("DEMO", {"duration_s": 0}, priority="high")
    start_worker(TASKDECK_MAX_JOBS="1")
    with Client() as client:
        wait_until(lambda: client.get(urgent.id).status is JobStatus.completed, 20, "the high job")
        started = [j for j in client.list(status="completed", limit=1000)]
    first = min(started, key=lambda j: j.started_at)
    assert first.id == urgent.id, f"{len(started)} ran; the first was {first.priority}"
    assert len(backlog) == 1000


def test_low_job_is_not_starved_past_the_aging_time(redis_url: str, r) -> None:
    with Client(Settings(priority_aging_s=0.5)) as client:
        low = client.submit("DEMO", {}, priority="low")
        wait_until(lambda: time.time() - client.get(low.id).queued_at.timestamp() > 0.6, 2, "the aging time")
        newer = [client.submit("DEMO", {}).id for _ in range(3)]
        fresh_low = client.submit("DEMO", {}, priority="low")
    order = r.zrange("arq:queue", 0, -1)
    assert order.index(low.id) < min(order.index(i) for i in newer), "an aged low job waits behind newer normal ones"
    assert order.index(fresh_low.id) > max(order.index(i) for i in newer), "a fresh low job waits behind normal ones"
