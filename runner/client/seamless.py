"""History, pages, counts and CSV over Redis and the archive as one list: the same filters, the same order.

Redis holds the working set and is the truth for every job it holds; the archive adds the jobs Redis no
longer holds. So a list is Redis's matching jobs and the archived matching jobs whose id Redis does not
hold (ZMSCORE on the all-jobs index, a batch at a time), merged in History's one order: submission time,
then id, newest first (the order of Redis's indexes and of the archive's). A job pruned from Redis
while a list is read moves from one side to the other without a gap; one retried after it was archived
shows as Redis has it, once.

A page reads no more of either side than it shows: Redis's first rows as without the archive, the
archive's down to the last of those (where any further row of its would come after the page). A
cursor is a position in that order, (score, id), the same as Redis-only pages have always used, so
old cursors go on working, and a page that crosses from Redis's rows into the archive's needs none
of its own. Counts add the archive's jobs submitted before the oldest that Redis holds (one SQL
count) to its newer jobs that Redis does not hold (checked in batches; History's total stops at
OVERLAP_LIMIT of them and says it is a lower bound, count() checks them all).

Imported when the archive is first read (archived.py): SQLAlchemy and Alembic cost a quarter of a
second to import. The SQL functions are synchronous; Reads runs them in a thread.
"""
from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy import ColumnElement, Connection, select

from ..archive.schema import jobs
from ..archive.store import EPOCH, Archive, Filters, Visibility, after, conditions, job_of, visibility
from ..models import Job
from ..policy.access import Action, Principal
from ..reads import history, paging
from ..reads.history import CSV_COLUMNS, HistoryPage, HistoryQuery, csv_row, csv_text, words
from ..reads.paging import Cursor, JobPage
from ..storage.store import Store
from .archived import Pos

P = ParamSpec("P")
T = TypeVar("T")
CHUNK = 500  # ids per ZMSCORE, rows per CSV chunk
SQL_CHUNK = 2000  # positions per query when counting or streaming
OVERLAP_LIMIT = 20_000  # archived jobs newer than Redis's oldest that History's total checks against Redis


def visible_to(principal: Principal) -> Visibility | None:
    """Whose archived jobs `principal` may read: everyone's (None) for a role that reads everyone's jobs,
    else their own."""
    return None if principal.can(Action.read_all) else Visibility(users=frozenset({principal.email}))


def micros_of(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def time_of(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def position(score: float, job_id: str) -> Pos:
    """A Redis index entry's position (its score is the submission time in seconds)."""
    return round(score * 1_000_000), job_id


@dataclass(frozen=True)
class Spec:
    """One query on the archive: History's filters, the words of its text search (None: no text search)
    and whose jobs the caller may see."""

    filters: Filters
    words: tuple[str, ...] | None
    visible: Visibility | None

    @classmethod
    def of(cls, q: HistoryQuery, principal: Principal) -> Spec:
        return cls(Filters.of(q), tuple(words(q.q)) if q.q.strip() else None, visible_to(principal))

    def at_or_after(self, micros: int) -> Spec:
        """The same query on the jobs submitted at `micros` or later."""
        since = self.filters.since
        moment = time_of(micros) if since is None else max(since, time_of(micros))
        return replace(self, filters=replace(self.filters, since=moment))

    def before(self, micros: int) -> Spec:
        """The same query on the jobs submitted before `micros`."""
        until = self.filters.until
        moment = time_of(micros) if until is None else min(until, time_of(micros))
        return replace(self, filters=replace(self.filters, until=moment))


def clauses(archive: Archive, spec: Spec, connection: Connection, probe: bool) -> list[ColumnElement[bool]] | None:
    """The WHERE of `spec`; None when its text search has no word (then no job matches). `probe`: see
    Archive.matching (true for a page, false to read every match)."""
    found = [*conditions(spec.filters), visibility(spec.visible)]
    if spec.words is not None:
        if not spec.words:
            return None
        found.append(archive.matching(connection, list(spec.words), probe=probe))
    return found


def positions(archive: Archive, spec: Spec, below: Pos | None, limit: int, probe: bool = True) -> list[Pos]:
    """Up to `limit` positions of the archived jobs matching `spec` after `below`, newest first."""
    c = jobs.c
    with archive.guard(), archive.engine.connect() as connection:
        where = clauses(archive, spec, connection, probe)
        if where is None:
            return []
        if below is not None:
            where.append(after(f"{below[0]}.{below[1]}"))
        stmt = (select(c.job_id, c.created_at).where(*where)
                .order_by(c.created_at.desc(), c.job_id.desc()).limit(limit))
        return [(micros_of(row.created_at), row.job_id) for row in connection.execute(stmt)]


def count(archive: Archive, spec: Spec) -> int:
    if spec.words is not None and not spec.words:
        return 0
    text = " ".join(spec.words) if spec.words is not None else None
    return archive.count(spec.filters, text, visible_to=spec.visible)


def records(archive: Archive, ids: Sequence[str], visible: Visibility | None) -> dict[str, Job]:
    """The list records (without attempt log and partial output) of those of `ids` archived and visible."""
    if not ids:
        return {}
    c = jobs.c
    stmt = select(c.job_id, c.record, c.payload, c.result).where(c.job_id.in_(list(ids)), visibility(visible))
    with archive.guard(), archive.engine.connect() as connection:
        return {row.job_id: job_of(row.record, row.payload, row.result) for row in connection.execute(stmt)}


class Reads:
    """One principal's lists over Redis and the archive (the queries given are narrowed to what they may
    see already: AsyncClient.visible)."""

    def __init__(self, archive: Archive, store: Store, principal: Principal) -> None:
        self.archive, self.store, self.principal = archive, store, principal

    async def sql(self, query: Callable[Concatenate[Archive, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await asyncio.to_thread(query, self.archive, *args, **kwargs)

    def spec(self, q: HistoryQuery) -> Spec:
        return Spec.of(q, self.principal)

    async def scores(self, ids: list[str]) -> list[float | None]:
        """Each id's score in Redis's all-jobs index: None for a job Redis does not hold."""
        if not ids:
            return []
        async with self.store.redis.pipeline(transaction=False) as pipe:
            for start in range(0, len(ids), CHUNK):
                pipe.zmscore(self.store.keys.all, ids[start:start + CHUNK])
            replies: list[list[float | None]] = await pipe.execute()
        return [score for reply in replies for score in reply]

    async def in_redis(self, ids: list[str]) -> list[Pos]:
        """The positions of jobs Redis gave (one deleted since has none), newest first."""
        scored = zip(ids, await self.scores(ids), strict=True)
        return sorted((position(score, job_id) for job_id, score in scored if score is not None), reverse=True)

    async def only(self, spec: Spec, below: Pos | None, floor: Pos | None, want: int) -> tuple[list[Pos], Pos | None]:
        """Up to `want` positions after `below` of the archived jobs matching `spec` that Redis does not
        hold, newest first, and where to read on (None: the archive has no more). Reading stops past
        `floor`, below which no row is wanted."""
        kept: list[Pos] = []
        size = min(SQL_CHUNK, max(2 * want, 100))
        while len(kept) < want:
            rows = await self.sql(positions, spec, below, size)
            scores = await self.scores([job_id for _, job_id in rows])
            kept += [row for row, score in zip(rows, scores, strict=True) if score is None]
            below = rows[-1] if rows else below
            if len(rows) < size:
                return kept[:want], kept[want - 1] if len(kept) > want else None
            if floor is not None and rows[-1] < floor:
                break
        return kept[:want], kept[want - 1] if len(kept) > want else below

    async def only_count(self, spec: Spec, limit: int | None) -> tuple[int, bool]:
        """How many archived jobs match `spec` that Redis does not hold, and whether that is exact. Those
        submitted before the oldest job Redis holds are counted in SQL; the newer ones are checked
        against Redis, up to `limit` of them (then the count is a lower bound)."""
        oldest = await self.store.redis.zrange(self.store.keys.all, 0, 0, withscores=True)
        if not oldest:
            return await self.sql(count, spec), True
        boundary = position(oldest[0][1], oldest[0][0])[0]
        total, recent, below, seen = await self.sql(count, spec.before(boundary)), spec.at_or_after(boundary), None, 0
        if not await self.sql(count, recent):
            return total, True
        while True:
            rows = await self.sql(positions, recent, below, SQL_CHUNK, probe=False)
            total += (await self.scores([job_id for _, job_id in rows])).count(None)
            seen += len(rows)
            if len(rows) < SQL_CHUNK:
                return total, True
            if limit is not None and seen >= limit:
                return total, False
            below = rows[-1]

    async def merged(self, spec: Spec, mine: list[Pos], below: Pos | None, want: int) -> tuple[list[Pos], set[str]]:
        """The first `want` rows after `below` of Redis's (`mine`, its first `want` after `below`, newest
        first) and the archive's; and which of them are the archive's."""
        floor = mine[want - 1] if want and len(mine) >= want else None
        theirs, _ = await self.only(spec, below, floor, want)  # a job pruned meanwhile may be in both: once
        return sorted({*mine, *theirs}, reverse=True)[:want], {job_id for _, job_id in theirs}

    async def load(self, shown: list[Pos], archived: set[str], visible: Visibility | None) -> list[Job]:
        """The records of `shown`, in its order: Redis's from Redis, the archive's from the archive."""
        ids = [job_id for _, job_id in shown]
        found = {job.id: job for job in await self.store.load_many([i for i in ids if i not in archived])}
        found |= await self.sql(records, [i for i in ids if i in archived], visible)
        return [found[job_id] for job_id in ids if job_id in found]

    async def history(self, q: HistoryQuery, limit: int, offset: int) -> HistoryPage:
        """history.search over both: the total adds the jobs only the archive holds."""
        spec, want = self.spec(q), offset + limit
        ids, redis_page = await history.ranked(self.store, q, want)
        rows, archived = await self.merged(spec, await self.in_redis(ids), None, want)
        shown = rows[offset:]
        only, exact = await self.only_count(spec, OVERLAP_LIMIT)
        page = await self.load(shown, archived, spec.visible)
        return HistoryPage(jobs=page, total=redis_page.total + only, exact=redis_page.exact and exact,
                           scanned=redis_page.scanned, archived=[job.id for job in page if job.id in archived],
                           archived_total=only)

    async def page(self, q: HistoryQuery, limit: int, cursor: Cursor | None) -> JobPage:
        """paging.page over both."""
        spec = self.spec(q)
        below = position(cursor.score, cursor.id) if cursor else None
        mine = [position(score, job_id) for score, job_id in await paging.window(self.store, q, limit + 1, cursor)]
        rows, archived = await self.merged(spec, mine, below, limit + 1)
        shown = rows[:limit]
        last = shown[-1] if shown else None
        return JobPage(jobs=await self.load(shown, archived, spec.visible),
                       next_cursor=Cursor(score=last[0] / 1_000_000, id=last[1]).encode()
                       if last and len(rows) > limit else None)

    async def listed(self, q: HistoryQuery, limit: int, offset: int) -> list[Job]:
        """history.select over both, the records read."""
        spec, want = self.spec(q), offset + limit
        mine = await self.in_redis(await history.select(self.store, q, want, 0))
        rows, archived = await self.merged(spec, mine, None, want)
        return await self.load(rows[offset:], archived, spec.visible)

    async def count(self, q: HistoryQuery) -> int:
        only, _ = await self.only_count(self.spec(q), None)
        return await history.count(self.store, q) + only

    async def csv_chunks(self, q: HistoryQuery) -> AsyncIterator[str]:
        """history.csv_chunks over both, merged as they are read: never the whole set in memory."""
        spec = self.spec(q)
        yield csv_text([CSV_COLUMNS])
        async for batch in merge(self.redis_stream(q), self.archive_stream(spec), CHUNK):
            archived = {job_id for (_, job_id), theirs in batch if theirs}
            shown = [row for row, _ in batch]
            yield csv_text([csv_row(job) for job in await self.load(shown, archived, spec.visible)])

    async def redis_stream(self, q: HistoryQuery) -> AsyncIterator[list[Pos]]:
        async for ids in history.matching(self.store, q):
            yield await self.in_redis(ids)

    async def archive_stream(self, spec: Spec) -> AsyncIterator[list[Pos]]:
        below: Pos | None = None
        while True:
            rows, below = await self.only(spec, below, None, CHUNK)
            if rows:
                yield rows
            if below is None:
                return


class Head:
    """A stream of position batches, read one batch ahead."""

    def __init__(self, batches: AsyncIterator[list[Pos]]) -> None:
        self.batches, self.rows, self.done = batches, deque[Pos](), False

    async def peek(self) -> Pos | None:
        while not self.rows and not self.done:
            try:
                self.rows.extend(await anext(self.batches))
            except StopAsyncIteration:
                self.done = True
        return self.rows[0] if self.rows else None


async def merge(mine: AsyncIterator[list[Pos]], theirs: AsyncIterator[list[Pos]],
                size: int) -> AsyncIterator[list[tuple[Pos, bool]]]:
    """Two streams, each newest first, as one, in batches of `size`: each row with True when it is `theirs`."""
    left, right, batch, last = Head(mine), Head(theirs), [], None
    while True:
        a, b = await left.peek(), await right.peek()
        if a is None and b is None:
            break
        pick = b is not None and (a is None or b >= a)  # a job pruned meanwhile may be in both: the archive's
        row = (right if pick else left).rows.popleft()
        if row == last:
            continue
        batch.append((row, pick))
        last = row
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
