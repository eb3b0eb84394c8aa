"""The client's handle on the archive (runner.archive), for reading it where Redis no longer holds a job.

With TASKDECK_ARCHIVE on, the first read that needs the archive opens it: this process's one Archive
(runner.archive.handle, shared with the archive's operations and /api/health), opened and migrated in a
thread. When it is off, or cannot be reached, reads come from Redis alone, as without an archive, and no
error is raised: a failure is logged once, and the archive is tried again RETRY_OPEN_S (handle.py)
later. A client holds the process's Archive from its first read to its close.

Who sees what is the same as in Redis: a role that reads everyone's jobs reads every archived one, any
other role its user's own, and another user's archived job answers exactly like a missing one. The
merged reads themselves (History, pages, counts, CSV) are in seamless.py, imported with the archive.
"""
from __future__ import annotations

import asyncio
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
    from ..archive.handle import Handle
    from ..archive.store import Archive, Archived
    from .seamless import Reads

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
    """The archive as one client reads it: this process's Archive (handle.py), held from the client's first
    read that needs it (and by the clients `acting` for others, which share this reader) to its close."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.held: Handle | None = None

    async def handle(self) -> Archive | None:
        """The open archive; None when TASKDECK_ARCHIVE is off or it could not be opened lately."""
        if not self.settings.archive:
            return None
        from ..archive import handle

        shared = handle.of(self.settings)
        archive = await shared.ready(schema=True)
        if archive is not None and self.held is not shared:
            self.release()
            shared.hold()
            self.held = shared
        return archive

    def failed(self, error: BaseException) -> None:
        """Read Redis alone for RETRY_OPEN_S (every reader in this process); the first failure of a streak
        is logged."""
        from ..archive import handle

        handle.of(self.settings).failed(error)

    def release(self) -> None:
        if self.held is not None:
            self.held.release()
            self.held = None

    def close(self) -> None:
        self.release()

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
