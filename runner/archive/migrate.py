"""Alembic, run from code: no alembic.ini, the archive's URL from Settings or the caller.

`upgrade(url)` brings a database, empty or at an older revision, to the newest one; it runs in one
transaction (Postgres and SQLite both have transactional DDL), under BEGIN IMMEDIATE on SQLite and an
advisory lock on Postgres (migrations/env.py), so processes that start together do not race.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from .engine import make_engine, normal_url, writing

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "archive_version"  # as migrations/env.py


def config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normal_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head", engine: Engine | None = None) -> None:
    """Migrate the archive at `url` (through `engine` when given) to `revision`."""
    run(url, engine, lambda cfg: command.upgrade(cfg, revision))


def downgrade(url: str, revision: str, engine: Engine | None = None) -> None:
    run(url, engine, lambda cfg: command.downgrade(cfg, revision))


def run(url: str, engine: Engine | None, action: Callable[[Config], None]) -> None:
    own = engine is None
    engine = engine or make_engine(url)
    cfg = config(url)
    try:
        with writing(engine) as connection:
            cfg.attributes["connection"] = connection
            action(cfg)
    finally:
        if own:
            engine.dispose()


def head() -> str:
    """The newest revision the code knows."""
    revision = ScriptDirectory.from_config(config("sqlite://")).get_current_head()
    assert revision is not None
    return revision


def current(engine: Engine) -> str | None:
    """The revision the database is at (None: not migrated yet)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()
