"""A worker's share of feeding the archive (runner.archive.feeder), beside its heartbeat.

At startup the worker opens the archive (migrating it); one that cannot be opened costs one log line,
and the worker runs its jobs without archiving, trying to open it again every RETRY_OPEN_S. Then one
Feeder runs about once a second. Every worker feeds: the consumer group splits the entries between
them, so no duty lock is needed, and an idle pass is one XREADGROUP. The SQL runs in threads, so the
event loop never waits for the archive. Nothing here can stop a job from running.
"""
from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress

from ..archive.engine import url_of
from ..archive.feeder import GROUP, Feeder
from ..archive.handle import safe_url
from ..archive.store import Archive, ArchiveUnavailable, first_line
from ..storage.store import Store

logger = logging.getLogger("taskdeck.worker")
EVERY_S = 1.0
RETRY_OPEN_S = 30.0
STOP_WAIT_S = 5.0


class Archiving:
    """One worker's feed: `start` opens the archive, `run` feeds it until `stop`."""

    def __init__(self, store: Store, consumer: str) -> None:
        self.store, self.consumer = store, consumer
        self.url = safe_url(url_of(store.settings))
        self.archive: Archive | None = None
        self.feeder: Feeder | None = None
        self.problem: str | None = None  # the last failure of a pass, logged once
        self.stopping = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, store: Store, consumer: str) -> Archiving | None:
        """Open the archive and start feeding it; None when TASKDECK_ARCHIVE is off."""
        if not store.settings.archive:
            return None
        archiving = cls(store, consumer)
        if not await archiving.open():
            logger.error("archive: %s; this worker runs jobs without archiving them, and tries again every %g s",
                         archiving.problem, RETRY_OPEN_S)
        archiving.task = asyncio.create_task(archiving.run())
        return archiving

    async def open(self) -> bool:
        """Open and migrate the archive (in a thread); False, with `problem` set, when it cannot be."""
        try:
            self.archive = await asyncio.to_thread(Archive.open, self.store.settings)
        except ArchiveUnavailable as e:  # its message names the archive
            self.problem = str(e)
            return False
        except Exception as e:  # a URL that cannot be used (unknown scheme, missing driver, unwritable folder)
            self.problem = f"cannot open {self.url}: {first_line(e)}"
            return False
        self.feeder = Feeder(self.store, self.archive, self.consumer)
        self.problem = None
        return True

    async def run(self) -> None:
        """A pass about every EVERY_S; at once again after a pass that used its whole time budget (a
        backlog: the next pass still writes in full batches)."""
        since_open = 0.0
        while not self.stopping.is_set():
            pause = EVERY_S
            if self.feeder is not None:
                started = time.monotonic()
                await self.feed(self.feeder)
                if time.monotonic() - started >= self.feeder.budget_s:
                    pause = 0.0
            elif since_open >= RETRY_OPEN_S:
                since_open = 0.0
                if await self.open():
                    logger.warning("archive: opened %s; this worker archives again", self.url)
            with suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), pause)
            since_open += EVERY_S

    async def feed(self, feeder: Feeder) -> None:
        """One pass of the feeder; a failure (Redis away, say) is logged when it differs from the last."""
        try:
            await feeder.run_once()
        except Exception as e:
            problem = f"{type(e).__name__}: {first_line(e)}"
            if problem != self.problem:
                logger.warning("archive: feeding failed, trying again every %g s: %s", EVERY_S, problem)
            self.problem = problem
        else:
            self.problem = None

    async def stop(self) -> None:
        """End the feed (the pass under way may finish, for up to STOP_WAIT_S), leave the consumer group
        when nothing is pending on this worker's name, and close the archive."""
        self.stopping.set()
        if self.task is not None:
            done, _ = await asyncio.wait([self.task], timeout=STOP_WAIT_S)
            if not done:
                self.task.cancel()
                await asyncio.wait([self.task], timeout=1.0)
        if self.feeder is not None:
            with suppress(Exception):
                await self.leave_group()
        if self.archive is not None:
            await asyncio.to_thread(self.archive.close)

    async def leave_group(self) -> None:
        """Delete this worker's consumer from the group unless entries are pending on it (a failed write):
        those stay for another feeder to claim. Worker ids are new at each start, so consumers would
        pile up otherwise."""
        key = self.store.keys.events
        pending = await self.store.redis.xpending_range(key, GROUP, "-", "+", 1, consumername=self.consumer)
        if not pending:
            await self.store.redis.xgroup_delconsumer(key, GROUP, self.consumer)
