"""Writes and reads of the archive: idempotent upserts of finished jobs, History's pages and search.

The archive is a synchronous SQLAlchemy Core engine; async callers (the feeder in a worker, the API)
run its methods in a thread (`asyncio.to_thread`). Why not SQLAlchemy's asyncio layer: it drives the
same sync core through greenlets with a cost per statement, SQLite would still run in a thread
(aiosqlite), Alembic and the dashboard's pages and the CLI are synchronous anyway, and one write per
batch of up to `archive_batch` jobs makes the thread hop negligible.

Visibility: every read takes `visible_to`, the users and orgs whose jobs the caller may see, or None
for a principal who reads everyone's (`Action.read_all`). There is no default: a caller decides. A job
outside it answers exactly like a missing one.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Engine,
    Table,
    Text,
    and_,
    delete,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    table,
    true,
    tuple_,
)
from sqlalchemy import exc as sql_errors
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.expression import column, literal_column

from ..errors import InvalidPayload, TaskdeckError
from ..models import Job, JobStatus
from ..reads.history import HistoryQuery
from ..settings import Settings
from . import migrate
from .engine import make_engine, redacted, url_of, writing
from .schema import SEARCH_CONFIG, UTCDateTime, audit, jobs

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SEARCH_MAX_CHARS = 100_000  # of one job's searchable text; Postgres refuses a tsvector over 1 MB
SEARCH_MAX_TERMS = 16
PAGE_MAX = 1000
PRUNE_CHUNK = 2000
IN_CHUNK = 500
TERM = re.compile(r"\w+")
FTS_FEW = 10_000  # SQLite: a search matching fewer jobs looks them up, one matching more walks the newest
FTS = table("jobs_fts", column("rowid", BigInteger), column("jobs_fts", Text))  # FTS5's hidden column: MATCH
UNREACHABLE = (sql_errors.OperationalError, sql_errors.InterfaceError, sql_errors.TimeoutError)


class ArchiveUnavailable(TaskdeckError):
    """The archive's database could not be reached (or was locked for too long); nothing was written."""

    exit_code = 1


@dataclass(frozen=True)
class Record:
    """A finished job as read from Redis: its record, and its LLM usage (kept beside it, not in it)."""

    job: Job
    usage: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditEntry:
    """One entry of the audit stream `{prefix}audit` (fields job, type, owner, action, by)."""

    id: str
    job: str
    type: str
    owner: str
    action: str
    by: str

    @classmethod
    def of(cls, entry_id: str, fields: dict[str, str]) -> AuditEntry:
        return cls(entry_id, fields.get("job", ""), fields.get("type", ""), fields.get("owner", ""),
                   fields.get("action", ""), fields.get("by", ""))

    def row(self) -> dict[str, Any]:
        ms, seq = stream_id(self.id)
        return {"entry_ms": ms, "entry_seq": seq, "at": EPOCH + timedelta(milliseconds=ms), "job_id": self.job,
                "type": self.type, "owner": self.owner, "action": self.action, "actor": self.by}


@dataclass(frozen=True)
class Visibility:
    """Whose jobs a principal may see: its own user(s), and any orgs it reads as a whole."""

    users: frozenset[str] = frozenset()
    orgs: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Filters:
    """History's filters (runner.reads.history.HistoryQuery) and the archive's own: org, finish time, cost.
    `since`/`until` bound the submission time like History's; empty values filter nothing."""

    statuses: tuple[JobStatus, ...] = ()
    type: str | None = None
    user: str | None = None
    org: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    finished_since: datetime | None = None
    finished_until: datetime | None = None
    cost_min: float | None = None
    cost_max: float | None = None
    id_prefix: str = ""
    error: str = ""

    @classmethod
    def of(cls, q: HistoryQuery, **more: Any) -> Filters:
        return cls(statuses=tuple(q.status), type=q.type, user=q.user, since=q.since, until=q.until,
                   id_prefix=q.id_prefix.strip().lower(), error=q.error, **more)


class Archived(BaseModel):
    """One job read back whole: the record (attempt log and partial output included), usage, audit trail."""

    job: Job
    usage: dict[str, Any] = Field(default_factory=dict, description="LLM usage: steps (per step) and calls.")
    audit: list[dict[str, Any]] = Field(default_factory=list, description="The job's audit entries, oldest first.")
    archived_at: datetime


class ArchivePage(BaseModel):
    jobs: list[Job]
    next: str | None = Field(None, description="Cursor of the page after this one; None on the last page.")


class ArchiveStatus(BaseModel):
    url: str = Field(description="The archive's URL, password hidden.")
    backend: str
    revision: str | None = Field(description="Schema revision; None when not migrated yet.")
    rows: int = Field(description="Jobs archived.")
    audit_rows: int
    oldest_created: datetime | None
    newest_finished: datetime | None
    size_bytes: int = Field(description="Space the archive's tables and indexes take.")


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def cursor_for(created_at: datetime, job_id: str) -> str:
    """The cursor that continues a list after the job submitted at `created_at` with id `job_id`: also
    how a reader that listed Redis's jobs down to one continues in the archive past it."""
    return f"{(created_at.astimezone(UTC) - EPOCH) // timedelta(microseconds=1)}.{job_id}"


def parse_cursor(cursor: str) -> tuple[datetime, str]:
    micros, _, job_id = cursor.partition(".")
    if not (micros.lstrip("-").isdigit() and job_id and len(cursor) <= 300):
        raise InvalidPayload(f"{cursor[:60]!r} is not a page cursor (pass the `next` of the previous page)")
    return EPOCH + timedelta(microseconds=int(micros)), job_id


def texts(value: Any) -> Iterator[str]:
    """Every string and number in a JSON value, depth first."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from texts(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from texts(item)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield str(value)


def search_text(job: Job) -> str:
    """What full-text search reads: payload and result text, the last error and the step names."""
    steps = [step.name for step in job.steps] + [s.name for a in job.attempt_log for s in a.steps]
    parts = [*texts(job.payload), *texts(job.result), job.last_error or "", *dict.fromkeys(steps)]
    joined = "\n".join(part for part in parts if part)[:SEARCH_MAX_CHARS]
    return joined.replace("\x00", " ")  # a Postgres text value holds no NUL


def terms(query: str) -> list[str]:
    return TERM.findall(query.lower())[:SEARCH_MAX_TERMS]


def row_of(record: Record, now: datetime) -> dict[str, Any]:
    job = record.job
    data = job.model_dump(mode="json")
    detail = {"attempt_log": data.pop("attempt_log"), "partial": data.pop("partial"), "usage": record.usage}
    payload, result = data.pop("payload"), data.pop("result")
    ended = job.completed_at
    duration = (ended - job.started_at).total_seconds() if ended and job.started_at else None
    return {
        "job_id": job.id, "type": job.type, "status": job.status.value, "user_id": job.user_id,
        "org_id": job.org_id, "priority": job.priority.value, "created_at": job.queued_at,
        "started_at": job.started_at, "finished_at": ended or job.updated_at, "updated_at": job.updated_at,
        "duration_s": duration, "attempts": job.attempts, "tokens_in": job.tokens_in,
        "tokens_out": job.tokens_out, "tokens": job.tokens_in + job.tokens_out, "cost_usd": job.cost_usd,
        "payload": payload, "result": result, "error": job.last_error, "record": data, "detail": detail,
        "audit": [], "search": search_text(job), "archived_at": now,
    }


def newest(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per job (an upsert may not touch a row twice): its newest version."""
    kept: dict[str, dict[str, Any]] = {}
    for row in rows:
        old = kept.get(row["job_id"])
        if old is None or (row["attempts"], row["updated_at"]) >= (old["attempts"], old["updated_at"]):
            kept[row["job_id"]] = row
    return list(kept.values())


def visibility(visible_to: Visibility | None) -> ColumnElement[bool]:
    if visible_to is None:
        return true()
    orgs = [org for org in visible_to.orgs if org]  # "" is no organisation, not one that holds every org-less job
    clauses = ([jobs.c.user_id.in_(sorted(visible_to.users))] if visible_to.users else []) + (
        [jobs.c.org_id.in_(sorted(orgs))] if orgs else [])
    return or_(*clauses) if clauses else false()


def given(value: Any) -> bool:
    return value is not None and value != "" and value != ()


def conditions(f: Filters) -> list[ColumnElement[bool]]:
    c = jobs.c
    checks: list[tuple[Any, Callable[[], ColumnElement[bool]]]] = [
        (f.statuses, lambda: c.status.in_([JobStatus(s).value for s in f.statuses])),
        (f.type, lambda: c.type == f.type),
        (f.user, lambda: c.user_id == f.user),
        (f.org, lambda: c.org_id == f.org),
        (f.since, lambda: c.created_at >= f.since),
        (f.until, lambda: c.created_at < f.until),
        (f.finished_since, lambda: c.finished_at >= f.finished_since),
        (f.finished_until, lambda: c.finished_at < f.finished_until),
        (f.cost_min, lambda: c.cost_usd >= f.cost_min),
        (f.cost_max, lambda: c.cost_usd <= f.cost_max),
        (f.id_prefix, lambda: c.job_id.startswith(f.id_prefix, autoescape=True)),
        (f.error, lambda: func.lower(c.error).contains(f.error.lower(), autoescape=True)),
    ]
    return [make() for value, make in checks if given(value)]


def after(cursor: str) -> ColumnElement[bool]:
    created, job_id = parse_cursor(cursor)
    return tuple_(jobs.c.created_at, jobs.c.job_id) < tuple_(literal(created, UTCDateTime()), literal(job_id))


def check_limit(limit: int) -> None:
    if not 1 <= limit <= PAGE_MAX:
        raise InvalidPayload(f"limit must be between 1 and {PAGE_MAX}, not {limit}")


def rows(connection: Connection, clauses: list[ColumnElement[bool]], cursor: str | None, limit: int) -> ArchivePage:
    """One page newest first: a row more than asked tells whether another page follows."""
    if cursor:
        clauses.append(after(cursor))
    c = jobs.c
    stmt = (select(c.job_id, c.created_at, c.record, c.payload, c.result).where(*clauses)
            .order_by(c.created_at.desc(), c.job_id.desc()).limit(limit + 1))
    found = connection.execute(stmt).all()
    more, found = len(found) > limit, found[:limit]
    return ArchivePage(jobs=[job_of(r.record, r.payload, r.result) for r in found],
                       next=cursor_for(found[-1].created_at, found[-1].job_id) if more else None)


def job_of(record: dict[str, Any], payload: Any, result: Any, detail: dict[str, Any] | None = None) -> Job:
    extra = {"attempt_log": detail.get("attempt_log", []), "partial": detail.get("partial")} if detail else {}
    return Job.model_validate({**record, "payload": payload, "result": result, **extra})


class Archive:
    """The archive behind one engine. Every method is synchronous and thread-safe; the engine's pool
    holds the connections."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.backend = engine.dialect.name
        self.migrated = False

    @classmethod
    def open(cls, settings: Settings, *, migrate_now: bool = True, lock_timeout_s: float = 5.0) -> Archive:
        """The archive Settings names (archive_url, or SQLite under data_dir). `migrate_now` brings its
        schema up to date at once (ArchiveUnavailable when it cannot be reached); without it, the
        first write does (`ensure_schema`), so a worker may start while the archive is down."""
        return cls.at(url_of(settings), migrate_now=migrate_now, lock_timeout_s=lock_timeout_s)

    @classmethod
    def at(cls, url: str, *, migrate_now: bool = True, lock_timeout_s: float = 5.0,
           connect_timeout_s: float = 3.0) -> Archive:
        archive = cls(make_engine(url, lock_timeout_s, connect_timeout_s))
        if migrate_now:
            archive.ensure_schema()
        return archive

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def guard(self) -> Iterator[None]:
        """A lost, refused or locked database as one ArchiveUnavailable."""
        try:
            yield
        except UNREACHABLE as e:
            raise ArchiveUnavailable(f"archive unavailable at {redacted(str(self.engine.url))}: "
                                     f"{first_line(getattr(e, 'orig', None) or e)}") from e

    def ensure_schema(self) -> None:
        """Migrate to the newest revision, once per Archive (a no-op when the schema is current)."""
        if not self.migrated:
            with self.guard():
                migrate.upgrade(self.engine.url.render_as_string(hide_password=False), engine=self.engine)
            self.migrated = True

    def insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        return postgresql.insert(table) if self.backend == "postgresql" else sqlite.insert(table)

    def upsert(self, records: Iterable[Job | Record], audit_entries: Sequence[AuditEntry] = ()) -> int:
        """Write finished jobs (and new audit entries, which go first: each job's row carries its trail),
        in one transaction. Idempotent by job id: a row is replaced only by the same or a newer version
        of the job (more attempts, or as many and a later change), never by an older read of it."""
        now = datetime.now(UTC)
        rows = newest(row_of(r if isinstance(r, Record) else Record(r), now) for r in records)
        rows.sort(key=lambda row: row["job_id"])  # one lock order for every writer: no deadlock between two
        with self.guard(), writing(self.engine) as connection:
            if audit_entries:
                stmt = self.insert(audit).on_conflict_do_nothing()
                connection.execute(stmt, sorted((entry.row() for entry in audit_entries),
                                                key=lambda row: (row["entry_ms"], row["entry_seq"])))
            trails = self.trails(connection, [row["job_id"] for row in rows])
            for row in rows:
                row["audit"] = trails.get(row["job_id"], [])
            if rows:
                connection.execute(self.upsert_jobs, rows)
        return len(rows)

    @cached_property
    def upsert_jobs(self) -> Insert:
        """The jobs' upsert, built once per Archive (building it costs more than writing a few rows)."""
        stmt = self.insert(jobs)
        new = stmt.excluded
        updates = {c.name: new[c.name] for c in jobs.c if c.name not in ("job_id", "fts_doc")}
        newer = or_(new.attempts > jobs.c.attempts,
                    and_(new.attempts == jobs.c.attempts, new.updated_at >= jobs.c.updated_at))
        return stmt.on_conflict_do_update(index_elements=[jobs.c.job_id], set_=updates, where=newer)

    @staticmethod
    def trails(connection: Connection, job_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for start in range(0, len(job_ids), IN_CHUNK):
            stmt = (select(audit).where(audit.c.job_id.in_(job_ids[start:start + IN_CHUNK]))
                    .order_by(audit.c.entry_ms, audit.c.entry_seq))
            for row in connection.execute(stmt):
                found.setdefault(row.job_id, []).append({
                    "id": f"{row.entry_ms}-{row.entry_seq}", "at": row.at.isoformat(), "action": row.action,
                    "by": row.actor})
        return found

    def audit_cursor(self) -> str:
        """The id of the newest audit entry archived ("0-0" when none): the audit stream is read on from it."""
        stmt = select(audit.c.entry_ms, audit.c.entry_seq).order_by(
            audit.c.entry_ms.desc(), audit.c.entry_seq.desc()).limit(1)
        with self.guard(), self.engine.connect() as connection:
            row = connection.execute(stmt).first()
        return f"{row.entry_ms}-{row.entry_seq}" if row else "0-0"

    def get(self, job_id: str, visible_to: Visibility | None) -> Archived | None:
        """The archived job, or None when it is not archived or not the caller's to see."""
        c = jobs.c
        stmt = (select(c.record, c.payload, c.result, c.detail, c.audit, c.archived_at)
                .where(c.job_id == job_id, visibility(visible_to)))
        with self.guard(), self.engine.connect() as connection:
            row = connection.execute(stmt).first()
        if row is None:
            return None
        return Archived(job=job_of(row.record, row.payload, row.result, row.detail),
                        usage=row.detail.get("usage") or {}, audit=row.audit, archived_at=row.archived_at)

    def page(self, filters: Filters, cursor: str | None = None, limit: int = 50, *,
             visible_to: Visibility | None) -> ArchivePage:
        """Jobs newest first (by submission time, then id, descending) after `cursor`; `next` continues.
        Rows archived while paging never shift a later page: the cursor is a position, not an offset."""
        check_limit(limit)
        with self.guard(), self.engine.connect() as connection:
            return rows(connection, [*conditions(filters), visibility(visible_to)], cursor, limit)

    def search(self, text_query: str, filters: Filters, cursor: str | None = None, limit: int = 50, *,
               visible_to: Visibility | None) -> ArchivePage:
        """page() of the jobs whose payload, result, error or step names hold every word of `text_query`
        (stemmed: "kits" finds "kit"). No word in it: no job."""
        check_limit(limit)
        words = terms(text_query)
        if not words:
            return ArchivePage(jobs=[])
        with self.guard(), self.engine.connect() as connection:
            match = self.matching(connection, words, probe=True)
            return rows(connection, [*conditions(filters), visibility(visible_to), match], cursor, limit)

    def count(self, filters: Filters, text_query: str | None = None, *, visible_to: Visibility | None) -> int:
        """Jobs matching `filters` (and every word of `text_query`, if given)."""
        clauses = [*conditions(filters), visibility(visible_to)]
        words = terms(text_query) if text_query is not None else None
        if words == []:
            return 0
        with self.guard(), self.engine.connect() as connection:
            if words:
                clauses.append(self.matching(connection, words, probe=False))
            return int(connection.execute(select(func.count()).select_from(jobs).where(*clauses)).scalar_one())

    def matching(self, connection: Connection, words: list[str], probe: bool) -> ColumnElement[bool]:
        """The jobs whose text holds every word. On SQLite, two plans: a query matching few jobs looks
        them up (IN), one matching many walks the newest jobs and checks each against the index (EXISTS),
        stopping as soon as a page is full; `probe` (for a page) counts the matches, up to
        FTS_FEW, to choose. A count always looks them up."""
        if self.backend == "postgresql":
            return jobs.c.search.op("@@")(
                func.plainto_tsquery(literal_column(f"'{SEARCH_CONFIG}'"), " ".join(words)))
        hits = FTS.c.jobs_fts.match(" ".join(f'"{word}"' for word in words))
        if probe:
            few = select(FTS.c.rowid).where(hits).limit(FTS_FEW).subquery()
            if connection.execute(select(func.count()).select_from(few)).scalar_one() >= FTS_FEW:
                return exists().where(hits, FTS.c.rowid == jobs.c.fts_doc)
        return jobs.c.fts_doc.in_(select(FTS.c.rowid).where(hits))

    def prune(self, before: datetime) -> int:
        """Delete the jobs that finished before `before`, and the audit entries older than it, in
        chunks (short transactions: feeders keep writing meanwhile). Returns the jobs deleted."""
        deleted = 0
        while True:
            with self.guard(), writing(self.engine) as connection:
                ids = connection.execute(
                    select(jobs.c.job_id).where(jobs.c.finished_at < before).limit(PRUNE_CHUNK)).scalars().all()
                if ids:
                    connection.execute(delete(jobs).where(jobs.c.job_id.in_(ids)))
            deleted += len(ids)
            if len(ids) < PRUNE_CHUNK:
                break
        with self.guard(), writing(self.engine) as connection:
            connection.execute(delete(audit).where(audit.c.at < before))
        return deleted

    def status(self) -> ArchiveStatus:
        """What the archive holds. A database no worker has migrated yet reads as empty (revision None)."""
        c = jobs.c
        url = redacted(str(self.engine.url))
        with self.guard():
            revision = migrate.current(self.engine)
            if revision is None:
                return ArchiveStatus(url=url, backend=self.backend, revision=None, rows=0, audit_rows=0,
                                     oldest_created=None, newest_finished=None, size_bytes=0)
            with self.engine.connect() as connection:
                rows, oldest, newest_finished = connection.execute(
                    select(func.count(), func.min(c.created_at), func.max(c.finished_at))).one()
                audit_rows = connection.execute(select(func.count()).select_from(audit)).scalar_one()
                size = self.size(connection)
        return ArchiveStatus(url=url, backend=self.backend, revision=revision, rows=rows, audit_rows=audit_rows,
                             oldest_created=oldest, newest_finished=newest_finished, size_bytes=size)

    def job_count(self) -> int:
        """Jobs archived (0 before the first migration): what health reports."""
        with self.guard():
            if migrate.current(self.engine) is None:
                return 0
            with self.engine.connect() as connection:
                return int(connection.execute(select(func.count()).select_from(jobs)).scalar_one())

    def size(self, connection: Connection) -> int:
        if self.backend == "postgresql":
            query = "SELECT pg_total_relation_size('jobs') + pg_total_relation_size('audit')"
            return int(connection.exec_driver_sql(query).scalar_one())
        pages = connection.exec_driver_sql("PRAGMA page_count").scalar_one()
        return int(pages) * int(connection.exec_driver_sql("PRAGMA page_size").scalar_one())
