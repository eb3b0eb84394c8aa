"""This process's one Archive per URL, shared by the client's reads (runner.client.archived) and the
archive's operations (status, health, backfill, prune: operations.py).

It is opened on first use, without migrating: a reader that needs the schema asks for it (`ready(schema=
True)`: ensure_schema, once per Archive), while reading the status never changes it. When a lazy reader
(`ready`) cannot open or reach it, that is logged once per streak and lazy readers read Redis alone for
RETRY_OPEN_S; an operator's request (`opened`: status, health, backfill, prune) always tries, and sees
the error itself.

Clients hold the handle while they read it (`hold`, `release`): when the last one closes, the engine's
connections are closed; whatever is still open is closed at process end.

This module imports neither SQLAlchemy nor the rest of the archive until a handle is opened: importing
runner stays as light as without the archive.
"""
from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import time
from typing import TYPE_CHECKING

from ..errors import Unavailable
from ..settings import Settings

if TYPE_CHECKING:
    from .store import Archive

logger = logging.getLogger("taskdeck.archive")
RETRY_OPEN_S = 30.0

_handles: dict[str, Handle] = {}
_lock = threading.Lock()
_at_exit = False


def safe_url(url: str) -> str:
    """`url` with its password hidden; a placeholder when it is not a URL at all."""
    from .engine import redacted

    try:
        return redacted(url)
    except Exception:
        return "<TASKDECK_ARCHIVE_URL, not a URL>"


class Handle:
    """The archive at one URL in this process: its Archive once opened, its last failure, its holders.
    Thread-safe; `ready` is for async code (it opens in a thread), the rest blocks."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.archive: Archive | None = None
        self.retry_at = 0.0
        self.problem: str | None = None
        self.holders = 0
        self.lock = threading.RLock()

    def open(self) -> Archive:
        """The Archive, opened now if need be (not migrated by this); ArchiveUnavailable when its URL cannot
        be used (unknown scheme, missing driver, unwritable folder)."""
        with self.lock:
            if self.archive is None:
                from .store import Archive, ArchiveUnavailable, first_line

                try:
                    self.archive = Archive.at(self.url, migrate_now=False)
                except Exception as e:
                    raise ArchiveUnavailable(f"the archive at {safe_url(self.url)} cannot be opened: "
                                             f"{first_line(e)}") from e
                closed_at_exit()
            return self.archive

    def resting(self) -> bool:
        """Within RETRY_OPEN_S of a failure: lazy readers leave the archive alone."""
        return time.monotonic() < self.retry_at

    async def ready(self, schema: bool = True) -> Archive | None:
        """The Archive for a lazy reader, opened (in a thread) and, with `schema`, migrated; None within
        RETRY_OPEN_S of a failure, and when it cannot be opened or migrated now (noted as a failure)."""
        if self.resting():
            return None
        archive = self.archive
        if archive is not None and (archive.migrated or not schema):
            return archive
        return await asyncio.to_thread(self.prepared, schema)

    def prepared(self, schema: bool) -> Archive | None:
        with self.lock:  # one opener (and migration) at a time; the others find it done, or resting
            if self.resting():
                return None
            try:
                archive = self.open()
                if schema:
                    archive.ensure_schema()
            except Exception as e:  # whatever stops it (a refused connection, a failed migration): Redis alone
                self.failed(e)
                return None
            self.problem = None
            return archive

    def failed(self, error: BaseException) -> None:
        """Lazy readers read Redis alone for RETRY_OPEN_S; the first failure of a streak is logged."""
        problem = (str(error).strip().splitlines() or [type(error).__name__])[0]
        with self.lock:
            if problem != self.problem:
                logger.warning("archive: not read (%s); lists show what Redis holds, trying again in %g s",
                               problem, RETRY_OPEN_S)
            self.problem, self.retry_at = problem, time.monotonic() + RETRY_OPEN_S

    def hold(self) -> None:
        with self.lock:
            self.holders += 1

    def release(self) -> None:
        """One holder fewer; the last one's release closes the engine's connections (the Archive stays,
        and opens new ones when used again)."""
        with self.lock:
            self.holders = max(0, self.holders - 1)
            if self.holders == 0 and self.archive is not None:
                self.archive.close()

    def close(self) -> None:
        with self.lock:
            if self.archive is not None:
                self.archive.close()
                self.archive = None


def of(settings: Settings) -> Handle:
    """The handle on `settings`' archive (opened by none of this). Unavailable when the archive is off."""
    if not settings.archive:
        raise Unavailable("the archive is off (TASKDECK_ARCHIVE=false); set TASKDECK_ARCHIVE=true for the workers, "
                          "the dashboard and this command")
    from .engine import url_of

    url = url_of(settings)
    with _lock:
        found = _handles.get(url)
        if found is None:
            found = _handles[url] = Handle(url)
    return found


def opened(settings: Settings) -> Archive:
    """This process's Archive for `settings`' URL, opened now if need be (not migrated by this; blocking).
    Unavailable when the archive is off; ArchiveUnavailable when its URL cannot be used."""
    return of(settings).open()


def closed_at_exit() -> None:
    global _at_exit
    with _lock:
        if not _at_exit:
            atexit.register(close_all)
            _at_exit = True


def close_all() -> None:
    """Dispose of every engine opened here and forget every handle (tests; process end)."""
    with _lock:
        handles = list(_handles.values())
        _handles.clear()
    for handle in handles:
        handle.close()
