"""The client's handle on the archive (runner.archive), for reading it where Redis no longer holds a job.

With TASKDECK_ARCHIVE on, the first read that needs the archive opens it (Archive.open: migrating it, in a
thread); when it is off, or cannot be reached, reads come from Redis alone, as without an archive, and
no error is raised: a failure is logged once, and the archive is tried again RETRY_OPEN_S later.

Who sees what is the same as in Redis: a role that reads everyone's jobs reads every archived one, any
other role its user's own, and another user's archived job answers exactly like a missing one. The
merged reads themselves (History, pages, counts, CSV) are in seamless.py, imported with the archive.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, Field, ValidationError

from ..models import Job
from ..policy.access import Principal
from ..reads.llm_status import JobUsage
from ..settings import Settings
from ..storage.store import Store

if TYPE_CHECKING:
    from ..archive.store import Archive, Archived
    from .seamless import Reads

logger = logging.getLogger("taskdeck.client")
RETRY_OPEN_S = 30.0
T = TypeVar("T")
Pos = tuple[int, str]  # (submission time in µs since the epoch, job id): every list is in this order, descending


class Found(BaseModel):
    """One job as get() reads it, saying where from: an archived one is read-only (Redis no longer holds
    it, so nothing can act on it), and comes with its audit trail and LLM usage as archived."""

    job: Job
    archived: bool = Field(False, description="Read from the archive: Redis no longer holds the job.")
    archived_at: datetime | None = None
    audit: list[dict[str, Any]] = Field(default_factory=list, description="The archived audit entries, oldest first.")
    usage: JobUsage | None = Field(None, description="The archived LLM usage (None: read it from Redis).")


class ArchiveReader:
    """The archive as one client reads it: opened at its first use, shared by the clients `acting` for
    others, closed with the client."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.archive: Archive | None = None
        self.opening = asyncio.Lock()
        self.retry_at = 0.0
        self.problem: str | None = None

    async def handle(self) -> Archive | None:
        """The open archive; None when TASKDECK_ARCHIVE is off or it could not be opened lately."""
        if not self.settings.archive or time.monotonic() < self.retry_at:
            return None
        if self.archive is None:
            async with self.opening:
                if self.archive is None and time.monotonic() >= self.retry_at:
                    await self.open()
        return self.archive

    async def open(self) -> None:
        from ..archive.store import Archive

        try:
            self.archive = await asyncio.to_thread(Archive.open, self.settings)
        except Exception as e:  # whatever stops it (a refused connection, a failed migration): Redis alone
            self.failed(e)
        else:
            self.problem = None

    def failed(self, error: BaseException) -> None:
        """Read Redis alone for RETRY_OPEN_S; the first failure of a streak is logged."""
        problem = (str(error).strip().splitlines() or [type(error).__name__])[0]
        if problem != self.problem:
            logger.warning("archive: not read (%s); lists show what Redis holds, trying again in %g s",
                           problem, RETRY_OPEN_S)
        self.problem, self.retry_at = problem, time.monotonic() + RETRY_OPEN_S

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()
            self.archive = None

    async def reads(self, store: Store, principal: Principal) -> Reads | None:
        """The merged reads of `principal` over Redis and the archive; None when the archive is not read."""
        archive = await self.handle()
        if archive is None:
            return None
        from .seamless import Reads

        return Reads(archive, store, principal)

    async def either(self, store: Store, principal: Principal, merged: Callable[[Reads], Awaitable[T]],
                     alone: Callable[[], Awaitable[T]]) -> T:
        """`merged` over Redis and the archive; `alone` (Redis's) when the archive is off or fails."""
        reads = await self.reads(store, principal)
        if reads is None:
            return await alone()
        from ..archive.store import ArchiveUnavailable

        try:
            return await merged(reads)
        except ArchiveUnavailable as e:
            self.failed(e)
            return await alone()

    async def find(self, job_id: str, principal: Principal) -> Found | None:
        """The archived job `job_id` if `principal` may see it, else None (as for a job never archived)."""
        archive = await self.handle()
        if archive is None:
            return None
        from ..archive.store import ArchiveUnavailable
        from .seamless import visible_to

        try:
            got = await asyncio.to_thread(archive.get, job_id, visible_to(principal))
        except ArchiveUnavailable as e:
            self.failed(e)
            return None
        return None if got is None else found(got)


def found(got: Archived) -> Found:
    return Found(job=got.job, archived=True, archived_at=got.archived_at, audit=got.audit, usage=usage_of(got.usage))


def usage_of(raw: dict[str, Any]) -> JobUsage:
    """The archived usage (runner.archive.feeder.usage: the per-step hash as Redis had it, the parsed calls)."""
    from ..llm.usage import Call, step_usage

    calls = []
    for call in raw.get("calls") or []:
        try:
            calls.append(Call.model_validate(call))
        except ValidationError:
            continue
    try:
        steps = step_usage(raw.get("steps") or {})
    except (ValueError, TypeError):
        steps = []
    return JobUsage(steps=steps, calls=calls)
