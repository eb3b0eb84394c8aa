"""The archive: every finished job kept in SQL (SQLite by default, Postgres at scale) beyond Redis retention.

`store.Archive` writes and reads it (sync SQLAlchemy Core; call it through `asyncio.to_thread` from async
code), `feeder` fills it from the event stream through a Redis consumer group, `migrate.upgrade` brings a
database to the current schema (Alembic, `migrations/`).
"""
