"""The archive's tables (SQLAlchemy Core), one schema for SQLite and Postgres.

`jobs` holds one row per job, its newest final state: the columns History filters and orders by and
the analytics read (type, status, user, org, times, tokens, cost), the payload and result, and the
rest of the record as JSON in two parts: `record` (what a list row needs: steps, priority, retry
fields...) and `detail` (attempt log with tracebacks, partial output, LLM usage per step and call),
so that a page of rows never reads the tracebacks. `audit` keeps the audit stream's entries, job
ones and the others (settings, schedules), and `jobs.audit` each job's own trail.

Full-text search reads `search`, the payload's and result's text, the error and the step names. On
SQLite it is that text, indexed by the FTS5 table `jobs_fts` that triggers keep in step with `jobs`
(its rowid is kept in `jobs.fts_doc`: a table whose key is not an INTEGER PRIMARY KEY may have its
rowids renumbered by VACUUM). On Postgres it is the text's tsvector, computed as it is written
(`to_tsvector('english', ...)`, SearchVector) under a GIN index: stored, because a search that matches
many jobs filters the newest ones by it, and recomputing tsvectors row by row costs more than the
space (the text itself is not kept twice).

Every index on time ends with job_id: History's order is (created_at, job_id) descending, the one
Redis's sorted sets give (score, then member), and the cursor of a page is that pair.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    DDL,
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    event,
    func,
    literal_column,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.types import TypeDecorator, TypeEngine

SEARCH_CONFIG = "english"  # Postgres text search configuration; SQLite's FTS5 uses the porter stemmer to match


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out: SQLite keeps no offset, so times are stored there as naive UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class SearchVector(TSVECTOR):
    """Postgres: the searchable text bound as its tsvector."""

    cache_ok = True

    def bind_expression(self, bindvalue: BindParameter[Any]) -> ColumnElement[Any]:
        return func.to_tsvector(literal_column(f"'{SEARCH_CONFIG}'"), type_coerce(bindvalue, Text()))


def json_type() -> TypeEngine[Any]:
    return JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


metadata = MetaData()

jobs = Table(
    "jobs", metadata,
    Column("job_id", String, primary_key=True),
    Column("type", String, nullable=False),
    Column("status", String, nullable=False),
    Column("user_id", String, nullable=False),
    Column("org_id", String, nullable=False, server_default=""),
    Column("priority", String, nullable=False),
    Column("created_at", UTCDateTime, nullable=False, comment="first submission (queued_at): History's order"),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime, nullable=False, comment="completed_at, else the last change"),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("duration_s", Float),
    Column("attempts", Integer, nullable=False),
    Column("tokens_in", BigInteger, nullable=False, server_default="0"),
    Column("tokens_out", BigInteger, nullable=False, server_default="0"),
    Column("tokens", BigInteger, nullable=False, server_default="0"),
    Column("cost_usd", Float, nullable=False, server_default="0"),
    Column("payload", json_type(), nullable=False),
    Column("result", json_type()),
    Column("error", Text),
    Column("record", json_type(), nullable=False),
    Column("detail", json_type(), nullable=False),
    Column("audit", json_type(), nullable=False),
    Column("search", Text().with_variant(SearchVector(), "postgresql"), nullable=False, server_default=""),
    Column("fts_doc", BigInteger, comment="SQLite: this row's rowid in jobs_fts"),
    Column("archived_at", UTCDateTime, nullable=False),
)

Index("ix_jobs_created", jobs.c.created_at, jobs.c.job_id)
Index("ix_jobs_status_created", jobs.c.status, jobs.c.created_at, jobs.c.job_id)
Index("ix_jobs_type_created", jobs.c.type, jobs.c.created_at, jobs.c.job_id)
Index("ix_jobs_user_created", jobs.c.user_id, jobs.c.created_at, jobs.c.job_id)
Index("ix_jobs_org_created", jobs.c.org_id, jobs.c.created_at, jobs.c.job_id)
Index("ix_jobs_finished", jobs.c.finished_at)
Index("ix_jobs_fts_doc", jobs.c.fts_doc, unique=True).ddl_if(dialect="sqlite")
Index("ix_jobs_search", jobs.c.search, postgresql_using="gin").ddl_if(dialect="postgresql")

audit = Table(
    "audit", metadata,
    Column("entry_ms", BigInteger, primary_key=True, comment="the stream entry id's milliseconds"),
    Column("entry_seq", BigInteger, primary_key=True, comment="and its sequence number"),
    Column("at", UTCDateTime, nullable=False),
    Column("job_id", String, nullable=False, server_default="", comment='"" for an entry of no job'),
    Column("type", String, nullable=False, server_default=""),
    Column("owner", String, nullable=False, server_default=""),
    Column("action", Text, nullable=False),
    Column("actor", String, nullable=False, comment="the entry's `by`"),
)

Index("ix_audit_job", audit.c.job_id, audit.c.entry_ms, audit.c.entry_seq)
Index("ix_audit_at", audit.c.at)

# SQLite's full-text index and the triggers that keep it in step with `jobs` (migration 0001 has its own copy).
SQLITE_FTS = (
    "CREATE VIRTUAL TABLE jobs_fts USING fts5(body, tokenize='porter unicode61 remove_diacritics 2')",
    """CREATE TRIGGER jobs_fts_insert AFTER INSERT ON jobs BEGIN
  INSERT INTO jobs_fts(body) VALUES (new.search);
  UPDATE jobs SET fts_doc = last_insert_rowid() WHERE job_id = new.job_id;
END""",
    """CREATE TRIGGER jobs_fts_update AFTER UPDATE OF search ON jobs BEGIN
  UPDATE jobs_fts SET body = new.search WHERE rowid = new.fts_doc;
END""",
    """CREATE TRIGGER jobs_fts_delete AFTER DELETE ON jobs BEGIN
  DELETE FROM jobs_fts WHERE rowid = old.fts_doc;
END""",
)
for statement in SQLITE_FTS:
    event.listen(jobs, "after_create", DDL(statement).execute_if(dialect="sqlite"))  # type: ignore[no-untyped-call]
