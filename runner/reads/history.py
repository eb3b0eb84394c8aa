"""Queries over the job indexes: filtered, paginated history, counts and CSV export.

Every index (`idx:status:*`, `idx:type:*`, `idx:user:*`, `idx:all`) scores a job by its first
submission time, so a date range is a score range on any of them. A query reads the smallest of its
indexes in that range, in chunks, and checks each id's membership in the others with ZMSCORE: the
cost follows the smallest matching index, never the number of jobs in Redis, and no KEYS or SCAN.
"""
from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, Field

from ..models import Job, JobStatus
from ..storage.store import Store

FINISHED = (JobStatus.completed, JobStatus.failed, JobStatus.cancelled)
CHUNK = 500
SCAN_LIMIT = 10_000
FIELD_OF_EACH = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HGET', key, ARGV[1]) end
return out
"""  # KEYS: hashes; ARGV[1]: a field. Its value in each (nil where absent), in order.
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

    @property
    def searching(self) -> bool:
        return bool(self.id_prefix or self.error)


class HistoryPage(BaseModel):
    jobs: list[Job]
    total: int = Field(description="Jobs matching; a lower bound when `exact` is false.")
    exact: bool = True
    scanned: int = Field(0, description="Index entries read to answer.")


@dataclass
class Plan:
    """Which index drives a query (read in order) and which ones each id must also be in."""

    driver: list[str]
    size: int
    lo: float | str
    hi: float | str
    any_of: list[list[str]] = field(default_factory=list)


async def plan(store: Store, q: HistoryQuery) -> Plan:
    keys = store.keys
    lo = q.since.timestamp() if q.since else "-inf"
    hi = f"({q.until.timestamp()}" if q.until else "+inf"
    wanted = list(dict.fromkeys(q.status)) or ([s for s in JobStatus] if q.error else [])
    if q.error:  # a completed job has no last_error (transitions.complete clears it)
        wanted = [s for s in wanted if s is not JobStatus.completed] or [JobStatus.completed]
    statuses = [keys.status(s) for s in wanted] or [keys.all]
    filters = [*([keys.type(q.type)] if q.type else []), *([keys.user(q.user)] if q.user else [])]
    async with store.redis.pipeline(transaction=False) as pipe:
        for key in [*statuses, *filters]:
            pipe.zcount(key, lo, hi)
        counts = await pipe.execute()
    groups = [(sum(counts[: len(statuses)]), statuses)] + [(n, [k]) for n, k in zip(counts[len(statuses):], filters)]
    size, driver = min(groups, key=lambda group: group[0])
    others = [members for _, members in groups if members is not driver and members != [keys.all]]
    return Plan(driver, size, lo, hi, others)


async def chunk(store: Store, p: Plan, key: str, start: int, newest_first: bool) -> list[tuple[str, float]]:
    if newest_first:
        return await store.redis.zrevrangebyscore(key, p.hi, p.lo, start=start, num=CHUNK, withscores=True)
    return await store.redis.zrangebyscore(key, p.lo, p.hi, start=start, num=CHUNK, withscores=True)


async def merged(store: Store, p: Plan, newest_first: bool = True, skip: int = 0) -> AsyncIterator[str]:
    """The driver's ids in score order, merging its sorted sets, read CHUNK at a time; one set skips
    in Redis, several skip while merging."""
    single = len(p.driver) == 1
    offsets = dict.fromkeys(p.driver, skip if single else 0)
    skip = 0 if single else skip
    buffers: dict[str, list[tuple[str, float]]] = {key: [] for key in p.driver}
    exhausted: set[str] = set()
    while True:
        for key in p.driver:
            if not buffers[key] and key not in exhausted:
                rows = await chunk(store, p, key, offsets[key], newest_first)
                offsets[key] += len(rows)
                buffers[key] = rows[::-1]
                if len(rows) < CHUNK:
                    exhausted.add(key)
        live = [key for key in p.driver if buffers[key]]
        if not live:
            return
        pick = (max if newest_first else min)(live, key=lambda key: buffers[key][-1][1])
        job_id = buffers[pick].pop()[0]
        if skip:
            skip -= 1
            continue
        yield job_id


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
            async with self.store.redis.pipeline(transaction=False) as pipe:
                for group in self.plan.any_of:
                    for key in group:
                        pipe.zmscore(key, ids)
                scores = iter(await pipe.execute())
            inside = [[any(s is not None for s in column) for column in zip(*(next(scores) for _ in group))]
                      for group in self.plan.any_of]
            ids = [job_id for job_id, *found in zip(ids, *inside) if all(found)]
        if ids and self.query.error:
            ids = await self.with_error(ids, self.query.error.lower())
        return ids

    async def with_error(self, ids: list[str], text: str) -> list[str]:
        """The ids whose last error contains `text`: their last_error read in one script call per batch (a
        pipeline of one HGET per id costs the client ten times more than Redis)."""
        read = self.store.redis.register_script(FIELD_OF_EACH)
        errors = await read(keys=[self.store.keys.job(job_id) for job_id in ids], args=["last_error"])
        return [job_id for job_id, raw in zip(ids, errors) if raw and text in str(orjson.loads(raw) or "").lower()]


async def search(store: Store, q: HistoryQuery, limit: int = 50, offset: int = 0,
                 scan_limit: int = SCAN_LIMIT) -> HistoryPage:
    """One page, newest first. Without text search or cross-index filters the total is exact from
    ZCOUNT; otherwise it is counted over at most `scan_limit` index entries of the smallest index
    (a bounded scan: then `exact` is false when it stopped early)."""
    p = await plan(store, q)
    if not p.any_of and not q.searching:
        ids = [job_id async for job_id in take(merged(store, p, skip=offset), limit)]
        return HistoryPage(jobs=await store.load_many(ids), total=p.size, exact=True, scanned=len(ids))
    scan, matched, page = Scan(store, p, q, scan_limit), 0, []
    async for ids in scan.batches():
        page += ids[max(0, offset - matched): max(0, offset + limit - matched)]
        matched += len(ids)
    return HistoryPage(jobs=await store.load_many(page), total=matched, exact=not scan.truncated,
                       scanned=scan.scanned)


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
    if not p.any_of and not q.searching:
        return p.size
    scan = Scan(store, p, q)
    return sum([len(ids) async for ids in scan.batches()])


async def matching(store: Store, q: HistoryQuery, newest_first: bool = True,
                   limit: int | None = None) -> AsyncIterator[list[str]]:
    """Every id matching `q`, in batches of at most CHUNK (for export and bulk actions)."""
    left = limit
    async for ids in Scan(store, await plan(store, q), q, newest_first=newest_first).batches():
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
