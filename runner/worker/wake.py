"""Wake idle workers the moment there is work, instead of at their next poll.

Every enqueue (submit, retry, a lost job queued again) and every cancel request publishes on
`{prefix}wake`. Each Taskdeck worker subscribes to that channel with a `Wake` of its own, created
in its on_startup and kept in its ARQ ctx; a job finishing in that worker wakes it too, so a freed
slot is filled at once.

The wait lives in Taskdeck's claim path (claim.poll_iteration), not in ARQ's poll timer: a Taskdeck
worker runs ARQ's loop with `poll_delay = 0` (ARQ's `poll` then only yields to the event loop) and
`Wake.next_poll` waits up to Taskdeck's own poll delay, or until woken. Nothing in ARQ's module is
replaced, so a plain ARQ worker in the same process keeps ARQ's timer, and the state here is per
worker, so per event loop: several Taskdeck workers in one process wake and clear independently.
tests/worker/test_wake.py and tests/worker/test_arq_citizen.py fail if this stops working.
"""
from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from contextvars import ContextVar
from typing import Any

from redis.asyncio import Redis

logger = logging.getLogger("taskdeck.worker")
CTX_KEY = "taskdeck_wake"


class Wake:
    """One Taskdeck worker's wake-ups: a poll at most `delay_s` after the previous one, sooner when set."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.event = asyncio.Event()  # binds to an event loop at its first wait: the worker's own
        self.last_poll: float | None = None

    def set(self) -> None:
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()

    async def next_poll(self) -> None:
        """Return when this worker should poll: at once the first time, then `delay_s` after the previous
        poll began (the same period as ARQ's timer) or as soon as a wake-up arrives."""
        loop = asyncio.get_running_loop()
        if self.last_poll is not None:
            remaining = self.delay_s - (loop.time() - self.last_poll)
            if remaining > 0 and not self.event.is_set():
                with suppress(TimeoutError):
                    await asyncio.wait_for(self.event.wait(), remaining)
        self.event.clear()
        self.last_poll = loop.time()


current: ContextVar[Wake | None] = ContextVar("taskdeck_wake", default=None)


def nudge() -> None:
    """Wake the Taskdeck worker whose task calls this (its jobs run in tasks started from its own
    context, where `attach` set `current`), e.g. when a job ends and frees a slot; outside any
    Taskdeck worker, nothing."""
    wake = current.get()
    if wake is not None:
        wake.set()


def attach(ctx: dict[str, Any], delay_s: float) -> Wake:
    """Give the worker owning `ctx` its own Wake; call from its on_startup (its main task's context)."""
    wake = Wake(delay_s)
    ctx[CTX_KEY] = wake
    current.set(wake)
    return wake


def of(ctx: dict[str, Any], delay_s: float) -> Wake:
    """The worker's Wake; one is made if its startup did not attach one (then only its timer wakes it)."""
    wake = ctx.get(CTX_KEY)
    if not isinstance(wake, Wake):
        wake = ctx[CTX_KEY] = Wake(delay_s)
    return wake


async def listen(redis: Redis, channel: str, wake: Wake) -> None:
    """Set `wake` for every message on `channel`; reconnects through the client's retry policy."""
    while True:
        try:
            async with redis.pubsub() as pubsub:
                await pubsub.subscribe(channel)
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            logger.warning("wake-up channel lost (%s); polling only until it is back", e)
            await asyncio.sleep(1)
