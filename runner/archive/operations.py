"""The archive as operators see and run it: its status beside the feed's backlog (AsyncClient.archive_status,
`python -m runner archive status`, the Workers page), its health (GET /api/health), backfill and prune.

They use this process's one Archive per URL (handle.py: an engine and its pool, shared with the client's
reads), opened on first use, in a thread, without migrating: reading the status never changes the schema;
workers migrate at startup, and backfill and prune (which write) do before they start.
"""
from __future__ import annotations

import asyncio
import functools
import time
from datetime import UTC, date, datetime

from pydantic import BaseModel, Field

from ..errors import InvalidPayload
from ..storage.store import Store
from . import feeder, handle, migrate
from .feeder import Backlog
from .handle import opened
from .store import Archive, ArchiveUnavailable, first_line

HEALTH_TIMEOUT_S = 5.0
ROWS_FRESH_S = 30.0  # health counts the rows at most this often (a count walks an index)

_rows: dict[str, tuple[float, int]] = {}  # url -> (monotonic time, rows) of health's last count


class ArchiveReport(BaseModel):
    """The archive's state: what it holds (when it answers) and what the feed has still to write."""

    ok: bool = Field(description="The archive answered.")
    problem: str | None = Field(None, description="Why it did not answer, when it did not.")
    url: str = Field(description="The archive's URL, password hidden.")
    backend: str = Field(description="sqlite or postgresql.")
    revision: str | None = Field(None, description="Schema revision; None when not migrated yet (or down).")
    head: str = Field(description="The newest schema revision this code knows.")
    rows: int | None = Field(None, description="Jobs archived.")
    audit_rows: int | None = None
    oldest_created: datetime | None = None
    newest_finished: datetime | None = None
    size_bytes: int | None = Field(None, description="Space the archive's tables and indexes take.")
    backlog: Backlog = Field(description="Events the feed has not written yet: lag (unread) and pending (in "
                                         "flight, or a dead worker's).")


class ArchiveHealth(BaseModel):
    """The archive in GET /api/health."""

    ok: bool = Field(description="The archive answers.")
    backlog: Backlog | None = Field(description="What the feed has still to write; null when Redis cannot tell.")
    rows: int | None = Field(None, description=f"Jobs archived (counted at most every {ROWS_FRESH_S:g} s); "
                                               "null when the archive is down.")
    problem: str | None = Field(None, description="Why the archive does not answer, when it does not.")


@functools.cache
def head() -> str:
    return migrate.head()


def close_all() -> None:
    """Dispose of every engine this process opened and forget health's counts (tests; a process closes its own
    at exit)."""
    handle.close_all()
    _rows.clear()


async def status(store: Store) -> ArchiveReport:
    """The archive's state with the feed's backlog; `ok` false (and `problem`) when it does not answer."""
    archive = await asyncio.to_thread(opened, store.settings)
    backlog = await feeder.backlog(store)
    try:
        found = await asyncio.to_thread(archive.status)
    except ArchiveUnavailable as e:
        return ArchiveReport(ok=False, problem=str(e), url=archive.engine.url.render_as_string(hide_password=True),
                             backend=archive.backend, head=head(), backlog=backlog)
    return ArchiveReport.model_validate({**found.model_dump(), "ok": True, "head": head(), "backlog": backlog})


async def health(store: Store) -> ArchiveHealth | None:
    """None when the archive is off; else whether it answers (within HEALTH_TIMEOUT_S), its rows and
    the feed's backlog. Never raises: health reports a down archive, it does not fail with it."""
    if not store.settings.archive:
        return None
    try:
        backlog: Backlog | None = await feeder.backlog(store)
    except Exception:
        backlog = None  # Redis is away: health says so itself
    try:
        rows = await asyncio.wait_for(asyncio.to_thread(lambda: counted(opened(store.settings))), HEALTH_TIMEOUT_S)
    except TimeoutError:
        return ArchiveHealth(ok=False, backlog=backlog, problem=f"no answer within {HEALTH_TIMEOUT_S:g} s")
    except Exception as e:
        return ArchiveHealth(ok=False, backlog=backlog, problem=first_line(e))
    return ArchiveHealth(ok=True, backlog=backlog, rows=rows)


def counted(archive: Archive) -> int:
    """The archive's rows, counted again when the last count is over ROWS_FRESH_S old; a probe in between
    (the schema revision) still checks that the archive answers."""
    url = str(archive.engine.url)
    last = _rows.get(url)
    if last is not None and time.monotonic() - last[0] < ROWS_FRESH_S:
        with archive.guard():
            migrate.current(archive.engine)
        return last[1]
    rows = archive.job_count()
    _rows[url] = (time.monotonic(), rows)
    return rows


async def backfill(store: Store) -> int:
    """Archive every finished job still in Redis (feeder.backfill); the jobs written."""
    archive = await asyncio.to_thread(opened, store.settings)
    await asyncio.to_thread(archive.ensure_schema)
    return await feeder.backfill(store, archive)


def cutoff(before: datetime | date | str) -> datetime:
    """`before` as an aware datetime: a date (or "YYYY-MM-DD") is its midnight UTC, a naive datetime is
    UTC. InvalidPayload for text that is no date and for a time in the future (a typo would empty the
    archive)."""
    if isinstance(before, str):
        text = before.strip()
        try:
            before = date.fromisoformat(text)
        except ValueError:
            raise InvalidPayload(f"{text[:40]!r} is not a date; write it as YYYY-MM-DD") from None
    if not isinstance(before, datetime):
        before = datetime(before.year, before.month, before.day, tzinfo=UTC)
    elif before.tzinfo is None:
        before = before.replace(tzinfo=UTC)
    if before > datetime.now(UTC):
        raise InvalidPayload(f"{before:%Y-%m-%d %H:%M} UTC is in the future; prune deletes the jobs finished "
                             "before a date that has passed")
    return before


async def prune(store: Store, before: datetime) -> int:
    """Delete the archived jobs that finished before `before` (Archive.prune); the jobs deleted."""
    archive = await asyncio.to_thread(opened, store.settings)
    await asyncio.to_thread(archive.ensure_schema)
    return await asyncio.to_thread(archive.prune, before)
