"""Alembic's entry for the archive: runs the migrations on the connection `migrate.upgrade` passes in
(`config.attributes["connection"]`), or on `sqlalchemy.url` when run another way, or renders them as SQL
(offline mode, for a DBA to review). On Postgres the run holds an advisory lock, so that workers
starting together migrate one after the other: the second finds the schema current and does nothing.
"""
from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from runner.archive.engine import make_engine
from runner.archive.schema import metadata

VERSION_TABLE = "archive_version"
LOCK_KEY = 0x7461736B61726368  # "taskarch": the advisory lock migrations hold on Postgres


def run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        context.run_migrations()


def online() -> None:
    given = context.config.attributes.get("connection")
    if isinstance(given, Connection):
        run(given)
        return
    engine = make_engine(context.config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        run(connection)
    engine.dispose()


def offline() -> None:
    context.configure(url=context.config.get_main_option("sqlalchemy.url"), target_metadata=metadata,
                      version_table=VERSION_TABLE, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    offline()
else:
    online()
