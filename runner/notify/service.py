"""A worker's share of notifying, beside its heartbeat (as worker/archiving.py feeds the archive): about
once a second, the job-end hook (job_end.Hook) turns finished jobs into notices and callbacks, and the
due deliveries of the outbox are sent (delivery.run_due). Every worker does both: the consumer group
splits the events between them and the outbox's claim its deliveries, so no duty lock is needed. A
failure (Redis away, a bug) is logged once per kind and tried again; nothing here can stop a job.
"""
from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress

from ..storage.store import Store
from . import delivery
from .job_end import GROUP, Hook, ensure_group

logger = logging.getLogger("taskdeck.notify")
EVERY_S = 1.0
STOP_WAIT_S = 5.0


class Notifying:
    """One worker's notify task: `start` it, and `stop` it at shutdown."""

    def __init__(self, store: Store, consumer: str, every_s: float = EVERY_S) -> None:
        self.store, self.consumer, self.every_s = store, consumer, every_s
        self.hook = Hook(store, consumer)
        self.problem: str | None = None
        self.stopping = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, store: Store, consumer: str) -> Notifying:
        """Start notifying; the consumer group is made first, so that every job this worker runs ends
        after it (the group starts at the stream's end)."""
        notifying = cls(store, consumer)
        try:
            await ensure_group(store)
            notifying.hook.grouped = True
        except Exception as e:  # Redis away at startup: the first pass tries again
            logger.warning("notify: cannot make the consumer group yet: %s", e)
        notifying.task = asyncio.create_task(notifying.run())
        return notifying

    async def run(self) -> None:
        """A pass about every `every_s`; at once again after one that found a full batch of deliveries."""
        while not self.stopping.is_set():
            started = time.monotonic()
            busy = await self.once()
            pause = 0.0 if busy else max(0.0, self.every_s - (time.monotonic() - started))
            with suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), pause)

    async def once(self) -> bool:
        """One pass; True when the outbox had more due than one batch."""
        try:
            await self.hook.run_once()
            sent = await delivery.run_due(self.store)
        except Exception as e:
            problem = f"{type(e).__name__}: {str(e).strip()[:300]}"
            if problem != self.problem:
                logger.warning("notify: a pass failed, trying again every %g s: %s", self.every_s, problem)
            self.problem = problem
            return False
        if self.problem:
            logger.warning("notify: passes work again after: %s", self.problem)
            self.problem = None
        return sent >= delivery.BATCH

    async def stop(self) -> None:
        """End the task (the pass under way may finish, for up to STOP_WAIT_S) and leave the consumer group
        when nothing is pending on this worker's name (worker ids are new at each start)."""
        self.stopping.set()
        if self.task is not None:
            done, _ = await asyncio.wait([self.task], timeout=STOP_WAIT_S)
            if not done:
                self.task.cancel()
                await asyncio.wait([self.task], timeout=1.0)
        with suppress(Exception):
            key = self.store.keys.events
            pending = await self.store.redis.xpending_range(key, GROUP, "-", "+", 1, consumername=self.consumer)
            if not pending:
                await self.store.redis.xgroup_delconsumer(key, GROUP, self.consumer)
