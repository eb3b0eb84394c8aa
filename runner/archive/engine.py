"""The archive's SQLAlchemy engine: which URL, and the connection settings each backend needs.

SQLite runs in WAL mode (readers never wait for the writer) with a busy timeout, and a write
transaction starts with BEGIN IMMEDIATE: with several worker processes writing to one file, a
deferred transaction that upgrades to a write lock can fail at once with "database is locked"
instead of waiting its turn. Postgres connections are checked before use (`pool_pre_ping`), so a
restarted server costs one failed ping, not a failed write.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from ..settings import Settings

WRITE = "archive_write"  # execution option: this connection's next transaction writes


def url_of(settings: Settings) -> str:
    """Settings.archive_url, or SQLite at <data_dir>/archive.db when it is empty."""
    if settings.archive_url:
        return normal_url(settings.archive_url)
    return f"sqlite:///{Path(settings.data_dir).resolve() / 'archive.db'}"


def normal_url(url: str) -> str:
    """`postgresql://` and `postgres://` (what operators write) as the psycopg 3 driver's URL."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme):]
    return url


def redacted(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def make_engine(url: str, lock_timeout_s: float = 5.0, connect_timeout_s: float = 3.0) -> Engine:
    """An engine for `url`; `lock_timeout_s` is how long a SQLite write waits for another writer,
    `connect_timeout_s` how long a Postgres connect may take before the archive counts as down."""
    url = normal_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        return sqlite_engine(url, lock_timeout_s)
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, pool_timeout=10,
                         connect_args={"connect_timeout": max(1, round(connect_timeout_s))},
                         json_serializer=json_dumps, json_deserializer=orjson.loads)


def sqlite_engine(url: str, lock_timeout_s: float) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, json_serializer=json_dumps, json_deserializer=orjson.loads)
    busy_ms = int(lock_timeout_s * 1000)

    @event.listens_for(engine, "connect")
    def configure(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" below starts each transaction
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", f"busy_timeout={busy_ms}"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if connection.get_execution_options().get(WRITE) else "BEGIN")

    return engine


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """One write transaction (BEGIN IMMEDIATE on SQLite), committed when the block ends without error."""
    with engine.connect() as connection:
        connection.execution_options(**{WRITE: True})
        with connection.begin():
            yield connection
