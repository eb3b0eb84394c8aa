"""Feeding the archive from the event stream, through the Redis consumer group `archive`.

Every transition appends an entry to `{prefix}events`; an entry whose status is final (completed,
failed, cancelled) means a job to archive. A feeder reads the group's new entries (XREADGROUP), acks
the others at once (one script), reads the finished jobs' records in one script call, writes them with the audit
entries added since the last write, and only then acks their entries. So the writes are at least once
(a feeder killed between the write and the ack leaves entries that are written again) and idempotent
(Archive.upsert keeps one row per job, its newest version).

A killed feeder's entries stay pending in the group; any feeder claims those idle for longer than
`claim_idle_s` (XAUTOCLAIM) and writes them. A feeder whose write failed (archive down) does not read
new entries until its own pending ones are written: the backlog waits in the stream, not in memory.

The audit trail is read from `{prefix}audit` forward from the newest entry already archived, by every
feeder for itself (a duplicate write is a no-op): a group would hand a job's entries to a feeder other
than the one that writes the job.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from pydantic import BaseModel, Field, ValidationError
from redis.exceptions import ResponseError
from sqlalchemy.exc import DataError, IntegrityError

from ..models import Attempt, Job
from ..reads.events import TERMINAL_NAMES
from ..storage.store import ATTEMPT_FIELD, Store
from .store import Archive, ArchiveUnavailable, AuditEntry, Record

log = logging.getLogger("runner.archive")

GROUP = "archive"
FINISHED_INDEXES = ("completed", "failed", "cancelled")
AUDIT_CHUNK = 1000
READ_FACTOR = 5  # events read per job written: a job leaves ~5 entries (submitted, started, progress, final)

Entry = tuple[str, dict[str, str] | None]
Batch = tuple[int, list[tuple[str, str]]]  # entries read; the final ones' (entry id, job id), the others acked
TERMINAL_ORDER = sorted(TERMINAL_NAMES)

# A batch's records, usage hashes and call lists in one call (KEYS: per job, its record, usage and calls):
# a pipeline of three commands per job costs the worker a reply to parse, and a task's wake-up, per command.
READ_RECORDS = """
local out = {}
for i = 1, #KEYS, 3 do
  out[#out + 1] = redis.call('HGETALL', KEYS[i])
  out[#out + 1] = redis.call('HGETALL', KEYS[i + 1])
  out[#out + 1] = redis.call('LRANGE', KEYS[i + 2], 0, -1)
end
return out
"""

# XREADGROUP, acking at once the entries of unfinished states (and those trimmed away): what comes back
# is the number of entries read and, flat, the id and job of each final one. ARGV: group, consumer,
# position (">" or "0"), count, then the final status names.
READ_FINAL = """
local final = {}
for i = 5, #ARGV do final[ARGV[i]] = true end
local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[4], 'STREAMS', KEYS[1], ARGV[3])
local entries = reply and reply[1] and reply[1][2] or {}
local out, others = {}, {}
for _, entry in ipairs(entries) do
  local fields, status, job = entry[2], nil, ''
  if fields then
    for j = 1, #fields, 2 do
      if fields[j] == 'status' then status = fields[j + 1] elseif fields[j] == 'job' then job = fields[j + 1] end
    end
  end
  if status and final[status] then
    out[#out + 1] = entry[1]
    out[#out + 1] = job
  else
    others[#others + 1] = entry[1]
  end
end
for i = 1, #others, 1000 do
  redis.call('XACK', KEYS[1], ARGV[1], unpack(others, i, math.min(i + 999, #others)))
end
return {#entries, out}
"""



def default_consumer() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Backlog(BaseModel):
    lag: int | None = Field(description="Entries not yet read by the group; None when Redis cannot tell.")
    pending: int = Field(description="Entries read but not yet acknowledged (being written, or a feeder died).")
    consumers: int = 0
    last_delivered: str = "0-0"


async def ensure_group(store: Store) -> None:
    """The group, reading the stream from its start the first time (MKSTREAM: it may not exist yet)."""
    try:
        await store.redis.xgroup_create(store.keys.events, GROUP, id="0", mkstream=True)
    except ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


async def backlog(store: Store) -> Backlog:
    """What the group has still to archive: lag (unread) and pending (read, unacknowledged)."""
    try:
        groups = await store.redis.xinfo_groups(store.keys.events)
    except ResponseError:  # no stream yet
        return Backlog(lag=0, pending=0)
    group = next((g for g in groups if g.get("name") == GROUP), None)
    if group is None:
        return Backlog(lag=await store.redis.xlen(store.keys.events), pending=0)
    lag = group.get("lag")
    return Backlog(lag=None if lag is None else int(lag), pending=int(group["pending"]),
                   consumers=int(group["consumers"]), last_delivered=str(group["last-delivered-id"]))


async def read_records(store: Store, job_ids: Sequence[str]) -> list[Record]:
    """The finished ones among `job_ids`, with their usage, in one script call. A job that is gone, was
    re-run since its event (its next final event will bring it), or no longer parses is left out."""
    if not job_ids:
        return []
    keys = store.keys
    names = [key for job_id in job_ids for key in (keys.job(job_id), keys.llm_usage(job_id), keys.llm_calls(job_id))]
    replies = await store.redis.register_script(READ_RECORDS)(names)
    records = []
    for job_id, (raw, steps, calls) in zip(job_ids, batched(replies, 3), strict=True):
        job = parsed(job_id, pairs(raw))
        if job is not None and job.status.terminal:
            records.append(Record(job, usage(pairs(steps), calls)))
    return records


def pairs(flat: list[str]) -> dict[str, str]:
    """A hash as HGETALL answers inside a script: field, value, field, value..."""
    return dict(zip(flat[::2], flat[1::2], strict=True)) if flat else {}


def usage(steps: dict[str, str], calls: list[str]) -> dict[str, Any]:
    """A job's LLM usage as the archive keeps it: the per-step totals hash as Redis has it ("step\tname" ->
    number), the call log parsed (each call's model, tokens, cost: what per-model analytics read)."""
    if not (steps or calls):
        return {}
    parsed_calls = []
    for call in calls:
        try:
            parsed_calls.append(orjson.loads(call))
        except orjson.JSONDecodeError:
            continue
    return {"steps": steps, "calls": parsed_calls}


def batched(items: list[Any], n: int) -> list[tuple[Any, ...]]:
    return [tuple(items[i:i + n]) for i in range(0, len(items), n)]


def parsed(job_id: str, raw: dict[str, str]) -> Job | None:
    if not raw:
        return None
    try:
        return decoded(raw)
    except (ValidationError, ValueError) as e:
        log.warning("archive: job %s has an unreadable record, not archived: %s", job_id, str(e)[:200])
        return None


def decoded(raw: dict[str, str]) -> Job:
    """runner.storage.store.decode in one pass over the fields (the feeder decodes every finished job)."""
    values: dict[str, Any] = {}
    attempts = []
    for name, value in raw.items():
        if name.startswith(ATTEMPT_FIELD):
            attempts.append(Attempt.model_validate_json(value))
        else:
            values[name] = orjson.loads(value)
    values["attempt_log"] = sorted(attempts, key=lambda a: a.number)
    return Job.model_validate(values)


async def read_audit(store: Store, archive: Archive) -> list[AuditEntry]:
    """The audit entries after the newest one archived."""
    position = await asyncio.to_thread(archive.audit_cursor)
    entries: list[AuditEntry] = []
    while True:
        start = "-" if position == "0-0" else f"({position}"
        rows = await store.redis.xrange(store.keys.audit, start, "+", count=AUDIT_CHUNK)
        entries += [AuditEntry.of(entry_id, fields) for entry_id, fields in rows]
        if len(rows) < AUDIT_CHUNK:
            return entries
        position = rows[-1][0]


async def write(archive: Archive, records: list[Record], audit: list[AuditEntry]) -> int:
    """Upsert in a thread. A batch the database refuses for its data (not for being down) is written
    job by job, so that one bad record cannot hold the others back; the bad one is logged and skipped
    (its event acked: `backfill` can try it again once fixed)."""
    if not archive.migrated:
        await asyncio.to_thread(archive.ensure_schema)
    try:
        return await asyncio.to_thread(archive.upsert, records, audit)
    except (DataError, IntegrityError):
        written = await asyncio.to_thread(archive.upsert, [], audit)
        for record in records:
            try:
                written += await asyncio.to_thread(archive.upsert, [record])
            except (DataError, IntegrityError) as e:
                log.error("archive: job %s refused by the archive, skipped: %s", record.job.id, str(e)[:300])
        return written


class Feeder:
    """One consumer of the group. `run_once` is what a worker's duty calls every second or so."""

    def __init__(self, store: Store, archive: Archive, consumer: str | None = None, *, claim_idle_s: float = 30.0,
                 batch: int | None = None, budget_s: float = 0.8) -> None:
        self.store, self.archive = store, archive
        self.consumer = consumer or default_consumer()
        self.claim_idle_ms = int(claim_idle_s * 1000)
        self.batch = batch or store.settings.archive_batch
        self.budget_s = budget_s
        self.grouped = False
        self.behind = True  # own pending entries may exist (a restart under the same name, a failed write)
        self.next_stale = 0.0  # when to look for a dead feeder's entries next (monotonic)
        self.failing: str | None = None  # the last write failure, logged once until a write succeeds

    async def run_once(self) -> int:
        """Archive what the stream holds, for up to `budget_s`: own pending entries first (after a
        failed write), then others' stale ones (looked for every claim_idle_s / 2), then new ones.
        Idle, that is one XREADGROUP. Returns the jobs written; 0 when the archive is down (logged
        once per outage; the entries stay pending, nothing is lost)."""
        now = time.monotonic()
        deadline = now + self.budget_s
        written = 0
        sources: list[Callable[[], Awaitable[Batch]]] = [self.fresh]
        if now >= self.next_stale:
            sources.insert(0, self.stale)
            self.next_stale = now + self.claim_idle_ms / 2000
        if self.behind:
            sources.insert(0, self.own)
        try:
            for source in sources:
                written += await self.drain(source, deadline)
        except ArchiveUnavailable as e:
            self.behind = True
            if str(e) != self.failing:
                log.warning("archive: write failed, will retry: %s", e)
            self.failing = str(e)
            return written
        if self.failing and written:
            log.warning("archive: writing again (%d jobs written) after: %s", written, self.failing)
            self.failing = None
        return written

    async def drain(self, source: Callable[[], Awaitable[Batch]], deadline: float) -> int:
        written = 0
        while True:
            read, finals = await self.grouped_call(source)
            if finals:
                written += await self.feed(finals)
            if read < self.read_count or time.monotonic() >= deadline:
                return written

    @property
    def read_count(self) -> int:
        return min(10_000, self.batch * READ_FACTOR)

    async def grouped_call(self, source: Callable[[], Awaitable[Batch]]) -> Batch:
        """`source()`, creating the group first when it does not exist (first run, or Redis was flushed)."""
        if not self.grouped:
            await ensure_group(self.store)
            self.grouped = True
        try:
            return await source()
        except ResponseError as e:
            if "NOGROUP" not in str(e):
                raise
            await ensure_group(self.store)
            return await source()

    async def own(self) -> Batch:
        """This consumer's pending entries (read before, not acknowledged)."""
        batch = await self.read_group("0")
        if not batch[0]:
            self.behind = False
        return batch

    async def fresh(self) -> Batch:
        return await self.read_group(">")

    async def read_group(self, position: str) -> Batch:
        """XREADGROUP from `position`, in one script that acks the entries of unfinished states at once:
        the number of entries read, and the final ones' (entry id, job id)."""
        script = self.store.redis.register_script(READ_FINAL)
        read, flat = await script([self.store.keys.events],
                                  [GROUP, self.consumer, position, self.read_count, *TERMINAL_ORDER])
        return int(read), list(zip(flat[::2], flat[1::2], strict=True))

    async def stale(self) -> Batch:
        """Entries pending for longer than claim_idle_s, claimed for this consumer: a dead feeder's."""
        reply = await self.store.redis.xautoclaim(self.store.keys.events, GROUP, self.consumer,
                                                  self.claim_idle_ms, "0-0", count=self.read_count)
        if len(reply) > 2 and reply[2]:
            log.warning("archive: %d pending events were trimmed from the stream before they were archived; "
                        "run a backfill", len(reply[2]))
        entries: list[Entry] = list(reply[1])
        return len(entries), await self.split(entries)

    async def split(self, entries: list[Entry]) -> list[tuple[str, str]]:
        """Ack the entries of unfinished states at once; the final ones' (entry id, job id)."""
        finals, others = [], []
        for entry_id, fields in entries:
            if fields and fields.get("status") in TERMINAL_NAMES:
                finals.append((entry_id, fields.get("job", "")))
            else:
                others.append(entry_id)
        if others:
            await self.store.redis.xack(self.store.keys.events, GROUP, *others)
        return finals

    async def feed(self, finals: list[tuple[str, str]]) -> int:
        """Write the finished jobs the final entries name, at most `batch` per write, acking each write's
        entries after it."""
        final: dict[str, list[str]] = {}  # job id -> its final entries
        for entry_id, job_id in finals:
            final.setdefault(job_id, []).append(entry_id)
        job_ids, written = list(final), 0
        for start in range(0, len(job_ids), self.batch):
            chunk = job_ids[start:start + self.batch]
            records = await read_records(self.store, [job_id for job_id in chunk if job_id])
            written += await write(self.archive, records, await read_audit(self.store, self.archive))
            await self.store.redis.xack(self.store.keys.events, GROUP, *[e for job in chunk for e in final[job]])
        return written


async def run_once(store: Store, archive: Archive, consumer: str | None = None) -> int:
    """One pass of a fresh Feeder (see Feeder.run_once); a worker's duty should keep one Feeder instead."""
    return await Feeder(store, archive, consumer).run_once()


async def backfill(store: Store, archive: Archive, batch: int | None = None) -> int:
    """Archive every finished job still in Redis (idx:status:completed/failed/cancelled), e.g. those
    finished before the archive was on or whose events the stream's cap dropped. Idempotent; returns
    the jobs written."""
    size = batch or store.settings.archive_batch
    written = 0
    for status in FINISHED_INDEXES:
        ids: list[str] = []
        async for job_id, _score in store.redis.zscan_iter(store.keys.status(status), count=size):
            ids.append(job_id)
            if len(ids) >= size:
                written += await backfill_batch(store, archive, ids)
                ids = []
        if ids:
            written += await backfill_batch(store, archive, ids)
    return written


async def backfill_batch(store: Store, archive: Archive, ids: list[str]) -> int:
    records = await read_records(store, ids)
    return await write(archive, records, await read_audit(store, archive))
