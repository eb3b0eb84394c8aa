"""The archive store, the same tests on SQLite and on a real Postgres: migrations, idempotent upserts,
stable pages, full-text search with filters, ownership, prune and status."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from runner.archive import migrate, store
from runner.archive.engine import normal_url, redacted, url_of
from runner.archive.schema import metadata
from runner.archive.store import Archive, AuditEntry, Filters, Record, Visibility, cursor_for
from runner.errors import InvalidPayload
from runner.models import JobStatus
from runner.reads.history import HistoryQuery
from runner.settings import Settings
from tests.archive.conftest import BASE, make_job

ALL = None  # visible_to for a principal who reads everyone's jobs
ANN = Visibility(users=frozenset({"ann@acme.io"}))
OURS = {"jobs", "audit"}
SEARCH_INDEX = {"sqlite": "ix_jobs_fts_doc", "postgresql": "ix_jobs_search"}  # one dialect's each


def schema_diff(engine: sa.Engine) -> list[object]:
    """What separates the migrated database from schema.py (FTS5's own tables and the search indexes
    aside: Alembic compares neither a dialect-only index nor an expression one)."""
    def ours(obj: object, name: str | None, kind: str, reflected: bool, compare_to: object) -> bool:
        return (kind != "table" or name in OURS) and not (kind == "index" and name in SEARCH_INDEX.values())

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_object": ours, "compare_type": True})
        return list(compare_metadata(context, metadata))


def test_migrations_from_empty_match_the_schema(archive_url: str) -> None:
    engine = sa.create_engine(normal_url(archive_url))
    try:
        assert migrate.current(engine) is None
        migrate.upgrade(archive_url)
        assert migrate.current(engine) == migrate.head()
        assert schema_diff(engine) == []
        indexes = {index["name"] for index in sa.inspect(engine).get_indexes("jobs")}
        assert SEARCH_INDEX[engine.dialect.name] in indexes
        migrate.upgrade(archive_url)  # current already: nothing to do
        migrate.downgrade(archive_url, "base")
        assert set(sa.inspect(engine).get_table_names()) & OURS == set()
        migrate.upgrade(archive_url)
        assert set(sa.inspect(engine).get_table_names()) >= OURS
    finally:
        engine.dispose()


def test_upsert_is_idempotent_and_keeps_the_newest_version(archive: Archive) -> None:
    first = make_job(1, status=JobStatus.failed, last_error="boom", attempts=1)
    assert archive.upsert([first]) == 1
    assert archive.upsert([first, first]) == 1  # the same job twice, in one batch and again
    assert archive.count(Filters(), visible_to=ALL) == 1

    rerun = first.model_copy(update={"status": JobStatus.completed, "attempts": 2, "last_error": None,
                                     "result": {"text": "fine now"},
                                     "updated_at": first.updated_at + timedelta(minutes=5)})
    archive.upsert([rerun])
    archive.upsert([first])  # an older read of the job arrives late: ignored
    got = archive.get(first.id, ALL)
    assert got is not None
    assert (got.job.status, got.job.attempts, got.job.result) == (JobStatus.completed, 2, {"text": "fine now"})
    assert archive.count(Filters(), visible_to=ALL) == 1


def test_get_returns_the_whole_record_with_usage_and_audit(archive: Archive) -> None:
    job = make_job(1, attempts=2, tokens_in=120, tokens_out=30, cost_usd=0.25, partial="half")
    audit = [AuditEntry("1772366400000-0", job.id, "DEMO", job.user_id, "submit", job.user_id),
             AuditEntry("1772366400000-1", "", "", "", "set limit max_jobs = 3", "admin@local")]
    usage = {"steps": {"Draft\ttokens_in": "120"}, "calls": ['{"model": "gpt-4o-mini"}']}
    archive.upsert([Record(job, usage)], audit)
    got = archive.get(job.id, ALL)
    assert got is not None
    assert got.job == job
    assert got.usage == usage
    assert [(a["action"], a["by"]) for a in got.audit] == [("submit", job.user_id)]
    assert archive.audit_cursor() == "1772366400000-1"
    assert archive.get("nope", ALL) is None


def page_through(archive: Archive, limit: int, filters: Filters | None = None, text: str | None = None) -> list[str]:
    ids: list[str] = []
    cursor = None
    for _ in range(1000):
        if text is None:
            page = archive.page(filters or Filters(), cursor, limit, visible_to=ALL)
        else:
            page = archive.search(text, filters or Filters(), cursor, limit, visible_to=ALL)
        ids += [job.id for job in page.jobs]
        if page.next is None:
            return ids
        cursor = page.next
    raise AssertionError("paging did not end")


def test_pages_are_newest_first_with_a_stable_cursor(archive: Archive) -> None:
    # Ties in submission time are ordered by id, as Redis orders members of equal score.
    jobs = [make_job(n, queued_at=BASE + timedelta(seconds=n // 3)) for n in range(53)]
    archive.upsert(jobs)
    expected = [j.id for j in sorted(jobs, key=lambda j: (j.queued_at, j.id), reverse=True)]
    assert page_through(archive, 7) == expected
    assert page_through(archive, 53) == expected
    assert page_through(archive, 1000) == expected

    first = archive.page(Filters(), None, 10, visible_to=ALL)
    archive.upsert([make_job(n) for n in range(100, 110)])  # newer jobs archived while a reader pages
    rest = page_through_from(archive, first.next)
    assert [j.id for j in first.jobs] + rest == expected


def page_through_from(archive: Archive, cursor: str | None) -> list[str]:
    ids: list[str] = []
    while cursor is not None:
        page = archive.page(Filters(), cursor, 10, visible_to=ALL)
        ids += [job.id for job in page.jobs]
        cursor = page.next
    return ids


def test_a_cursor_from_a_redis_row_continues_in_the_archive(archive: Archive) -> None:
    jobs = [make_job(n) for n in range(10)]
    archive.upsert(jobs)
    boundary = jobs[6]
    page = archive.page(Filters(), cursor_for(boundary.queued_at, boundary.id), 50, visible_to=ALL)
    assert [j.id for j in page.jobs] == [j.id for j in reversed(jobs[:6])]


def test_bad_cursor_and_limit_are_refused(archive: Archive) -> None:
    with pytest.raises(InvalidPayload):
        archive.page(Filters(), "not-a-cursor", visible_to=ALL)
    with pytest.raises(InvalidPayload):
        archive.page(Filters(), None, 0, visible_to=ALL)


def test_filters_match_history_and_more(archive: Archive) -> None:
    archive.upsert([
        make_job(1, type="DEMO", cost_usd=0.5),
        make_job(2, type="BRAND_KIT", user_id="bob@acme.io", cost_usd=2.0),
        make_job(3, status=JobStatus.failed, last_error="Timeout talking to the model", org_id="globex"),
        make_job(4, status=JobStatus.cancelled, user_id="bob@acme.io", org_id=""),
    ])

    def ids(**given: object) -> list[str]:
        filters = Filters(**given)  # type: ignore[arg-type]
        found = [j.id for j in archive.page(filters, visible_to=ALL).jobs]
        assert archive.count(filters, visible_to=ALL) == len(found)
        return found

    assert ids(statuses=(JobStatus.failed, JobStatus.cancelled)) == ["job00004", "job00003"]
    assert ids(type="BRAND_KIT") == ["job00002"]
    assert ids(user="bob@acme.io") == ["job00004", "job00002"]
    assert ids(org="globex") == ["job00003"]
    assert ids(since=BASE + timedelta(seconds=2), until=BASE + timedelta(seconds=4)) == ["job00003", "job00002"]
    assert ids(finished_since=BASE + timedelta(seconds=6)) == ["job00004", "job00003"]
    assert ids(cost_min=0.25, cost_max=1.0) == ["job00001"]
    assert ids(id_prefix="job0000") == ["job00004", "job00003", "job00002", "job00001"]
    assert ids(error="timeout") == ["job00003"]
    assert ids(error="100%_") == []
    history = HistoryQuery(error="TIMEOUT", since=BASE)  # History's query, finished statuses by default
    assert [j.id for j in archive.page(Filters.of(history), visible_to=ALL).jobs] == ["job00003"]
    assert [j.id for j in archive.page(Filters.of(HistoryQuery(id_prefix=" JOB00002")), visible_to=ALL).jobs] == [
        "job00002"]


def test_search_finds_a_word_in_payload_result_error_or_step(archive: Archive) -> None:
    archive.upsert([
        make_job(1, payload={"brief": "Brand kit for Acme, spring launch"}),
        make_job(2, result={"text": "Logo concepts in teal", "parts": [{"caption": "Mascot sketch"}]}),
        make_job(3, status=JobStatus.failed, last_error="Upstream quota exhausted"),
        make_job(4, steps=["Gather sources", "Summarise"]),
        make_job(5, payload={"brief": "Brand kit for Globex"}, user_id="bob@acme.io", org_id="globex"),
    ])

    def found(text: str, filters: Filters | None = None, visible_to: Visibility | None = ALL) -> list[str]:
        page = archive.search(text, filters or Filters(), visible_to=visible_to)
        assert archive.count(filters or Filters(), text, visible_to=visible_to) == len(page.jobs)
        return [job.id for job in page.jobs]

    assert found("acme") == ["job00001"]
    assert found("brand kit") == ["job00005", "job00001"]
    assert found("kits") == ["job00005", "job00001"]  # stemmed
    assert found("mascot") == ["job00002"]
    assert found("QUOTA") == ["job00003"]
    assert found("gather") == ["job00004"]
    assert found("brand globex") == ["job00005"]
    assert found("nothing-like-this") == []
    assert found("  ") == []
    assert found("brand", Filters(org="acme")) == ["job00001"]
    assert found("brand", Filters(user="bob@acme.io")) == ["job00005"]
    assert found("brand", Filters(statuses=(JobStatus.failed,))) == []
    assert found("brand", visible_to=ANN) == ["job00001"]  # bob's job is not ann's to find
    assert found("globex", visible_to=ANN) == []
    assert page_through(archive, 1, text="brand") == ["job00005", "job00001"]


def test_both_sqlite_search_plans_find_the_same_pages(archive: Archive, monkeypatch: pytest.MonkeyPatch) -> None:
    archive.upsert([make_job(n, payload={"brief": "poster" if n % 3 else "flyer"}) for n in range(30)])
    looked_up = page_through(archive, 4, text="poster")  # few matches: looked up
    monkeypatch.setattr(store, "FTS_FEW", 2)  # many matches: the newest jobs walked and checked
    walked = page_through(archive, 4, text="poster")
    assert looked_up == walked == [f"job{n:05d}" for n in reversed(range(30)) if n % 3]
    assert archive.count(Filters(), "poster", visible_to=ALL) == 20


def test_a_rerun_updates_what_search_finds(archive: Archive) -> None:
    job = make_job(1, status=JobStatus.failed, last_error="quota exhausted")
    archive.upsert([job])
    archive.upsert([job.model_copy(update={"status": JobStatus.completed, "last_error": None, "attempts": 2,
                                           "result": {"text": "a sunny poster"}})])
    assert archive.search("quota", Filters(), visible_to=ALL).jobs == []
    assert [j.id for j in archive.search("sunny", Filters(), visible_to=ALL).jobs] == [job.id]


def test_another_users_job_answers_like_a_missing_one(archive: Archive) -> None:
    mine, theirs = make_job(1), make_job(2, user_id="bob@acme.io", org_id="globex")
    archive.upsert([mine, theirs])
    assert archive.get(theirs.id, ANN) is None
    assert archive.get(mine.id, ANN) is not None
    assert [j.id for j in archive.page(Filters(), visible_to=ANN).jobs] == [mine.id]
    assert archive.count(Filters(), visible_to=ANN) == 1
    assert archive.page(Filters(), visible_to=Visibility()).jobs == []
    globex = Visibility(orgs=frozenset({"globex"}))
    assert [j.id for j in archive.page(Filters(), visible_to=globex).jobs] == [theirs.id]
    assert archive.page(Filters(), visible_to=Visibility(orgs=frozenset({""}))).jobs == []


def test_prune_and_status(archive: Archive) -> None:
    archive.upsert([make_job(n, queued_at=BASE + timedelta(days=n)) for n in range(5)],
                   [AuditEntry(f"{int((BASE + timedelta(days=n)).timestamp() * 1000)}-0", f"job{n:05d}", "DEMO",
                               "ann@acme.io", "submit", "ann@acme.io") for n in range(5)])
    status = archive.status()
    assert (status.rows, status.audit_rows, status.revision) == (5, 5, migrate.head())
    assert status.oldest_created == BASE
    assert status.newest_finished == BASE + timedelta(days=4, seconds=3)
    assert status.size_bytes > 0

    assert archive.prune(BASE + timedelta(days=2)) == 2
    assert archive.status().rows == 3
    assert archive.status().audit_rows == 3
    assert archive.search("job", Filters(), visible_to=ALL).jobs  # the FTS index survived the deletes
    assert archive.prune(BASE) == 0


def test_open_defaults_to_sqlite_under_the_data_dir(tmp_path: Path) -> None:
    archive = Archive.open(Settings(data_dir=tmp_path / "data", archive_url=""))
    try:
        assert archive.backend == "sqlite"
        assert (tmp_path / "data" / "archive.db").exists()
        assert archive.status().revision == migrate.head()
    finally:
        archive.close()


def test_postgres_urls_as_operators_write_them_use_psycopg() -> None:
    assert normal_url("postgresql://u:p@db/archive") == "postgresql+psycopg://u:p@db/archive"
    assert normal_url("postgres://db/archive") == "postgresql+psycopg://db/archive"
    assert url_of(Settings(archive_url="postgresql://db/a")) == "postgresql+psycopg://db/a"
    assert redacted("postgresql+psycopg://u:secret@db/a") == "postgresql+psycopg://u:***@db/a"
