"""The one query engine over the job indexes: AsyncClient.list (select), history pages (search), counts,
CSV export and bulk actions (matching); paging.py builds its cursors on the same plan and scan.

Every index (`idx:status:*`, `idx:type:*`, `idx:user:*`, `idx:all`) scores a job by its first
submission time, so a date range is a score range on any of them. A query reads the smallest of its
indexes in that range, in chunks, and checks each id's membership in the others with ZMSCORE: the
cost follows the smallest matching index, never the number of jobs in Redis, and no KEYS or SCAN.
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, Field

from ..models import Job, JobStatus
from ..storage.keys import Keys
from ..storage.store import Store

FINISHED = (JobStatus.completed, JobStatus.failed, JobStatus.cancelled)
CHUNK = 500
Entry = tuple[str, float]  # (job id, index score), as Redis gives them
SCAN_LIMIT = 10_000
FIELD_OF_EACH = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HGET', key, ARGV[1]) end
return out
"""  # KEYS: hashes; ARGV[1]: a field. Its value in each (nil where absent), in order.
FIELDS_OF_EACH = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HMGET', key, unpack(ARGV)) end
return out
"""  # KEYS: hashes; ARGV: fields. The values of those fields in each hash, in order.
TEXT_FIELDS = ("payload", "result", "last_error", "steps")
WORD = re.compile(r"\w+")
MAX_WORDS = 16
SUFFIXES = ("ations", "ation", "ings", "ing", "ions", "ion", "ed", "es", "s")
CSV_COLUMNS = (
    "id", "type", "status", "priority", "user_id", "org_id", "queued_at", "started_at", "completed_at", "duration_s",
    "attempts", "max_attempts", "progress", "current_step", "last_error", "retried_from", "retried_by", "retried_at",
    "cancel_requested_by", "cancel_requested_at", "tokens_in", "tokens_out", "cost_usd",
)


class HistoryQuery(BaseModel):
    status: list[JobStatus] = Field(default_factory=lambda: list(FINISHED), description="Empty: any status.")
    type: str | None = None
    user: str | None = None
    since: datetime | None = Field(None, description="Submitted at or after.")
    until: datetime | None = Field(None, description="Submitted before.")
    id_prefix: str = ""
    error: str = Field("", description="Case-insensitive text in the last error.")
    q: str = Field("", description="Words, every one of which the payload, result, last error or step names "
                   "hold (full-text search; in the archive, stemmed).")

    @property
    def searching(self) -> bool:
        return bool(self.id_prefix or self.error or self.q.strip())


class HistoryPage(BaseModel):
    jobs: list[Job]
    total: int = Field(description="Jobs matching; a lower bound when `exact` is false.")
    exact: bool = True
    scanned: int = Field(0, description="Index entries read to answer.")
    archived: list[str] = Field(default_factory=list, description="The ids among `jobs` read from the archive "
                                "(Redis no longer holds them): read-only.")
    archived_total: int = Field(0, description="Of `total`, the jobs only the archive holds.")


@dataclass
class Plan:
    """Which index drives a query (read in order) and which ones each id must also be in."""

    driver: list[str]
    size: int | None  # the driver's entries in range; None when not counted
    lo: float | str
    hi: float | str
    any_of: list[list[str]] = field(default_factory=list)

    def answers(self, q: HistoryQuery) -> bool:
        """True when the driver's ids are the matches: no other index to check, no text to search."""
        return not self.any_of and not q.searching


async def plan(store: Store, q: HistoryQuery, sized: bool = True) -> Plan:
    """Drive by the smallest of the query's indexes in its date range (the status indexes count as one).
    Their counts cost a round trip: without a filter to choose against, and when the caller needs no
    total (`sized` false), they are not read."""
    lo = q.since.timestamp() if q.since else "-inf"
    hi = f"({q.until.timestamp()}" if q.until else "+inf"
    statuses = status_keys(store.keys, q)
    filters = [*([store.keys.type(q.type)] if q.type else []), *([store.keys.user(q.user)] if q.user else [])]
    if not filters and not sized:
        return Plan(statuses, None, lo, hi)
    async with store.redis.pipeline(transaction=False) as pipe:
        for key in [*statuses, *filters]:
            pipe.zcount(key, lo, hi)
        counts: list[int] = await pipe.execute()
    groups = [(sum(counts[: len(statuses)]), statuses)]
    groups += [(n, [key]) for n, key in zip(counts[len(statuses):], filters, strict=True)]
    size, driver = min(groups, key=lambda group: group[0])
    others = [members for _, members in groups if members is not driver and members != [store.keys.all]]
    return Plan(driver, size, lo, hi, others)


def status_keys(keys: Keys, q: HistoryQuery) -> list[str]:
    """The status indexes `q` reads, merged (all jobs' index when it names none)."""
    wanted = list(dict.fromkeys(q.status)) or ([s for s in JobStatus] if q.error else [])
    if q.error:  # a completed job has no last_error (transitions.complete clears it)
        wanted = [s for s in wanted if s is not JobStatus.completed] or [JobStatus.completed]
    return [keys.status(s) for s in wanted] or [keys.all]


class Reader:
    """The driver's sorted sets, each read `size` rows at a time as the merge uses them up; the sets
    emptied by one step are read again together, in one round trip."""

    def __init__(self, store: Store, p: Plan, newest_first: bool, size: int, start: int) -> None:
        self.store, self.plan, self.newest_first, self.size = store, p, newest_first, size
        self.offsets = dict.fromkeys(p.driver, start)
        self.buffers: dict[str, list[Entry]] = {key: [] for key in p.driver}
        self.exhausted: set[str] = set()

    async def heads(self) -> list[str]:
        """The sets with rows left, in driver order."""
        empty = [key for key in self.plan.driver if not self.buffers[key] and key not in self.exhausted]
        if empty:
            await self.read(empty)
        return [key for key in self.plan.driver if self.buffers[key]]

    async def read(self, keys: list[str]) -> None:
        p = self.plan
        async with self.store.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                if self.newest_first:
                    pipe.zrevrangebyscore(key, p.hi, p.lo, start=self.offsets[key], num=self.size, withscores=True)
                else:
                    pipe.zrangebyscore(key, p.lo, p.hi, start=self.offsets[key], num=self.size, withscores=True)
            chunks: list[list[Entry]] = await pipe.execute()
        for key, rows in zip(keys, chunks, strict=True):
            self.offsets[key] += len(rows)
            self.buffers[key] = rows[::-1]
            if len(rows) < self.size:
                self.exhausted.add(key)

    def pop(self, live: list[str]) -> str:
        """The next id in score order (on equal scores, the first set's)."""
        pick = (max if self.newest_first else min)(live, key=lambda key: self.buffers[key][-1][1])
        return self.buffers[pick].pop()[0]


async def merged(store: Store, p: Plan, newest_first: bool = True, skip: int = 0,
                 size: int = CHUNK) -> AsyncIterator[str]:
    """The driver's ids in score order, merging its sorted sets, read `size` at a time; one set skips
    in Redis, several skip while merging."""
    single = len(p.driver) == 1
    reader = Reader(store, p, newest_first, size, skip if single else 0)
    skip = 0 if single else skip
    while live := await reader.heads():
        job_id = reader.pop(live)
        if skip:
            skip -= 1
            continue
        yield job_id


async def leading(store: Store, p: Plan, limit: int, offset: int) -> list[str]:
    """The driver's ids `offset` to `offset + limit`, read in chunks that end them in one read where they
    can: one set skips in Redis, so reads `limit`; merged sets skip while merging, so read up to both."""
    size = limit if len(p.driver) == 1 else min(offset + limit, max(limit, CHUNK))
    return [job_id async for job_id in take(merged(store, p, skip=offset, size=max(1, size)), limit)]


class Scan:
    """Matching ids in batches. Text search (id prefix, error) has no index, so it reads the driver
    index and filters: bounded by `limit` entries when a caller needs an answer now (then
    `truncated` is set), unbounded for export and bulk actions."""

    def __init__(self, store: Store, p: Plan, q: HistoryQuery, limit: int | None = None,
                 newest_first: bool = True) -> None:
        self.store, self.plan, self.query, self.limit, self.newest_first = store, p, q, limit, newest_first
        self.scanned = 0
        self.truncated = False

    async def batches(self) -> AsyncIterator[list[str]]:
        batch: list[str] = []
        async for job_id in merged(self.store, self.plan, self.newest_first):
            if self.limit is not None and self.scanned >= self.limit:
                self.truncated = True
                break
            self.scanned += 1
            batch.append(job_id)
            if len(batch) == CHUNK:
                yield await self.keep(batch)
                batch = []
        if batch:
            yield await self.keep(batch)

    async def keep(self, ids: list[str]) -> list[str]:
        prefix = self.query.id_prefix.strip().lower()
        ids = [job_id for job_id in ids if job_id.startswith(prefix)]
        if ids and self.plan.any_of:
            ids = await self.in_each(ids)
        if ids and self.query.error:
            ids = await self.with_error(ids, self.query.error.lower())
        if ids and self.query.q.strip():
            ids = await self.with_words(ids, words(self.query.q))
        return ids

    async def in_each(self, ids: list[str]) -> list[str]:
        """The ids found in at least one index of every `any_of` group (ZMSCORE, one round trip)."""
        async with self.store.redis.pipeline(transaction=False) as pipe:
            for group in self.plan.any_of:
                for key in group:
                    pipe.zmscore(key, ids)
            scores = iter(await pipe.execute())
        inside = [[any(s is not None for s in column) for column in zip(*(next(scores) for _ in group), strict=True)]
                  for group in self.plan.any_of]
        return [job_id for job_id, *found in zip(ids, *inside, strict=True) if all(found)]

    async def with_error(self, ids: list[str], text: str) -> list[str]:
        """The ids whose last error contains `text`: their last_error read in one script call per batch (a
        pipeline of one HGET per id costs the client ten times more than Redis)."""
        read = self.store.redis.register_script(FIELD_OF_EACH)
        errors = await read(keys=[self.store.keys.job(job_id) for job_id in ids], args=["last_error"])
        return [job_id for job_id, raw in zip(ids, errors, strict=True)
                if raw and text in str(orjson.loads(raw) or "").lower()]


    async def with_words(self, ids: list[str], wanted: list[str]) -> list[str]:
        """The ids whose payload, result, last error or step names hold every word of `wanted` (see
        `holds`): those fields of each read in one script call per batch."""
        if not wanted:
            return []
        read = self.store.redis.register_script(FIELDS_OF_EACH)
        rows = await read(keys=[self.store.keys.job(job_id) for job_id in ids], args=list(TEXT_FIELDS))
        return [job_id for job_id, row in zip(ids, rows, strict=True) if holds(text_words(row), wanted)]


def words(text: str) -> list[str]:
    """A text search's words, as the archive reads them (runner.archive.store.terms)."""
    return WORD.findall(text.lower())[:MAX_WORDS]


def root(word: str) -> str:
    """`word` without a common English ending ("kits" -> "kit", "generating" -> "generat")."""
    for suffix in SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def holds(found: set[str], wanted: list[str]) -> bool:
    """Every wanted word begins one of the words found, once stripped of its ending: close to the archive's
    stemmed search (Redis has no text index; its working set is read, the archive's index is not)."""
    return all(any(word.startswith(root(want)) for word in found) for want in wanted)


def text_words(row: Sequence[str | None]) -> set[str]:
    """The words of a record's searchable fields (TEXT_FIELDS, as Redis keeps them: JSON)."""
    payload, result, error, steps = (orjson.loads(raw) if raw else None for raw in row)
    names = [step.get("name", "") for step in steps or [] if isinstance(step, dict)]
    return set(WORD.findall(" ".join([*strings(payload), *strings(result), str(error or ""), *names]).lower()))


def strings(value: Any) -> Iterator[str]:
    """Every string and number in a JSON value."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        yield str(value)


async def ranked(store: Store, q: HistoryQuery, n: int, scan_limit: int = SCAN_LIMIT) -> tuple[list[str], HistoryPage]:
    """The first `n` ids matching `q`, newest first, and the page's total, exact and scanned as search()
    gives them (no jobs read): what a reader merging other rows in needs."""
    p = await plan(store, q)
    if p.size is not None and p.answers(q):
        ids = await leading(store, p, n, 0)
        return ids, HistoryPage(jobs=[], total=p.size, exact=True, scanned=len(ids))
    scan, matched, found = Scan(store, p, q, scan_limit), 0, list[str]()
    async for ids in scan.batches():
        found += ids[: max(0, n - len(found))]
        matched += len(ids)
    return found, HistoryPage(jobs=[], total=matched, exact=not scan.truncated, scanned=scan.scanned)


async def search(store: Store, q: HistoryQuery, limit: int = 50, offset: int = 0,
                 scan_limit: int = SCAN_LIMIT) -> HistoryPage:
    """One page, newest first. Without text search or cross-index filters the total is exact from
    ZCOUNT; otherwise it is counted over at most `scan_limit` index entries of the smallest index
    (a bounded scan: then `exact` is false when it stopped early)."""
    p = await plan(store, q)
    if p.size is not None and p.answers(q):
        ids = await leading(store, p, limit, offset)
        return HistoryPage(jobs=await store.load_many(ids), total=p.size, exact=True, scanned=len(ids))
    scan, matched, page = Scan(store, p, q, scan_limit), 0, []
    async for ids in scan.batches():
        page += ids[max(0, offset - matched): max(0, offset + limit - matched)]
        matched += len(ids)
    return HistoryPage(jobs=await store.load_many(page), total=matched, exact=not scan.truncated,
                       scanned=scan.scanned)


async def select(store: Store, q: HistoryQuery, limit: int = 50, offset: int = 0) -> list[str]:
    """The ids `offset` to `offset + limit` of the jobs matching `q`, newest first, without a total
    (AsyncClient.list): no count is read unless filters need one to choose the driver, and reading
    stops once the page is full."""
    p = await plan(store, q, sized=False)
    if p.answers(q):
        return await leading(store, p, limit, offset)
    found: list[str] = []
    async for ids in Scan(store, p, q).batches():
        found += ids
        if len(found) >= offset + limit:
            break
    return found[offset:offset + limit]


async def take(ids: AsyncIterator[str], n: int) -> AsyncIterator[str]:
    if n <= 0:
        return
    async for job_id in ids:
        yield job_id
        n -= 1
        if n == 0:
            return


async def count(store: Store, q: HistoryQuery) -> int:
    """Exact count of the jobs matching `q` (reads the smallest index when filters cross)."""
    p = await plan(store, q)
    if p.size is not None and p.answers(q):
        return p.size
    scan = Scan(store, p, q)
    return sum([len(ids) async for ids in scan.batches()])


async def matching(store: Store, q: HistoryQuery, newest_first: bool = True,
                   limit: int | None = None) -> AsyncIterator[list[str]]:
    """Every id matching `q`, in batches of at most CHUNK (for export and bulk actions)."""
    left = limit
    async for ids in Scan(store, await plan(store, q, sized=False), q, newest_first=newest_first).batches():
        if left is not None:
            ids, left = ids[:left], left - len(ids[:left])
        if ids:
            yield ids
        if left == 0:
            return


async def csv_chunks(store: Store, q: HistoryQuery) -> AsyncIterator[str]:
    """The matching jobs as CSV, one chunk per batch: never the whole set in memory."""
    yield csv_text([CSV_COLUMNS])
    async for ids in matching(store, q):
        yield csv_text([csv_row(job) for job in await store.load_many(ids)])


def csv_text(rows: Sequence[Sequence[Any]]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


def csv_row(job: Job) -> list[Any]:
    values = job.model_dump(mode="json")
    ended = job.completed_at if job.status.terminal else None
    values["duration_s"] = round((ended - job.started_at).total_seconds(), 3) if ended and job.started_at else ""
    return [defused(values.get(name)) for name in CSV_COLUMNS]


def defused(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula is quoted (CSV injection)."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
