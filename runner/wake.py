"""Wake idle workers the moment there is work, instead of at ARQ's next poll.

Every enqueue (submit, retry, a lost job queued again) and every cancel request publishes on
`{prefix}wake`. Each worker listens on that channel and replaces ARQ 0.28's poll timer
(`arq.worker.poll`, the generator `Worker.main` iterates) with `poll` below, which sleeps until
`poll_delay` passes or a wake-up arrives, whichever is first. A job finishing in this worker wakes
it too, so a freed slot is filled at once. ARQ is pinned exactly; tests/test_wake.py fails if this
hook stops working.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from contextlib import suppress

import arq.worker
from redis.asyncio import Redis

logger = logging.getLogger("taskdeck.worker")
wanted = asyncio.Event()


async def poll(step: float) -> AsyncGenerator[float, None]:
    """Drop-in for arq.utils.poll: yields, then waits `step` seconds or until woken."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        before = loop.time()
        yield before - start
        with suppress(TimeoutError):
            await asyncio.wait_for(wanted.wait(), max(0.0, step - (loop.time() - before)))
        wanted.clear()


async def listen(redis: Redis, channel: str) -> None:
    """Set `wanted` for every message on `channel`; reconnects through the client's retry policy."""
    while True:
        try:
            async with redis.pubsub() as pubsub:
                await pubsub.subscribe(channel)
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        wanted.set()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            logger.warning("wake-up channel lost (%s); polling only until it is back", e)
            await asyncio.sleep(1)


def install() -> None:
    arq.worker.poll = poll
