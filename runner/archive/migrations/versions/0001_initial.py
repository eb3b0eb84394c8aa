"""The archive's first schema: jobs (with full-text search), audit.

Revision ID: 0001
Revises:
Create Date: 2026-01-01

A migration keeps its own copy of the DDL: schema.py moves on, what revision 0001 created does not.
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.types import TypeEngine

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

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


UTCDateTime = sa.DateTime(timezone=True)  # schema.UTCDateTime's column type


def json_type() -> TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def create_jobs() -> None:
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.String, primary_key=True),
        sa.Column("type", sa.String, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("user_id", sa.String, nullable=False),
        sa.Column("org_id", sa.String, nullable=False, server_default=""),
        sa.Column("priority", sa.String, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False, comment="first submission (queued_at): History's order"),
        sa.Column("started_at", UTCDateTime),
        sa.Column("finished_at", UTCDateTime, nullable=False, comment="completed_at, else the last change"),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("duration_s", sa.Float),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("tokens_in", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("tokens_out", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"),
        sa.Column("payload", json_type(), nullable=False),
        sa.Column("result", json_type()),
        sa.Column("error", sa.Text),
        sa.Column("record", json_type(), nullable=False),
        sa.Column("detail", json_type(), nullable=False),
        sa.Column("audit", json_type(), nullable=False),
        sa.Column("search", sa.Text().with_variant(TSVECTOR(), "postgresql"), nullable=False, server_default=""),
        sa.Column("fts_doc", sa.BigInteger, comment="SQLite: this row's rowid in jobs_fts"),
        sa.Column("archived_at", UTCDateTime, nullable=False),
    )
    for name, *columns in (
        ("ix_jobs_created", "created_at", "job_id"),
        ("ix_jobs_status_created", "status", "created_at", "job_id"),
        ("ix_jobs_type_created", "type", "created_at", "job_id"),
        ("ix_jobs_user_created", "user_id", "created_at", "job_id"),
        ("ix_jobs_org_created", "org_id", "created_at", "job_id"),
        ("ix_jobs_finished", "finished_at"),
    ):
        op.create_index(name, "jobs", columns)


def create_audit() -> None:
    op.create_table(
        "audit",
        sa.Column("entry_ms", sa.BigInteger, primary_key=True, comment="the stream entry id's milliseconds"),
        sa.Column("entry_seq", sa.BigInteger, primary_key=True, comment="and its sequence number"),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("job_id", sa.String, nullable=False, server_default="", comment='"" for an entry of no job'),
        sa.Column("type", sa.String, nullable=False, server_default=""),
        sa.Column("owner", sa.String, nullable=False, server_default=""),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("actor", sa.String, nullable=False, comment="the entry's `by`"),
    )
    op.create_index("ix_audit_job", "audit", ["job_id", "entry_ms", "entry_seq"])
    op.create_index("ix_audit_at", "audit", ["at"])


def create_search() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.create_index("ix_jobs_fts_doc", "jobs", ["fts_doc"], unique=True)
        for statement in SQLITE_FTS:
            op.execute(statement)
    else:
        op.create_index("ix_jobs_search", "jobs", ["search"], postgresql_using="gin")


def upgrade() -> None:
    create_jobs()
    create_audit()
    create_search()


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("jobs_fts_delete", "jobs_fts_update", "jobs_fts_insert"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS jobs_fts")
    op.drop_table("audit")
    op.drop_table("jobs")
