"""Reading beyond Redis, on both stores: jobs archived and then removed from Redis are still found by get()
(their owner's, never another staff user's), and History, pages, lists, counts, CSV and text search read
Redis and the archive as one list: no duplicates, no gaps, one order, the same filters."""
from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from runner import AsyncClient, InvalidTransition, JobNotFound, JobStatus, Settings
from runner.archive import feeder
from runner.archive.store import Archive
from runner.llm.usage import Call
from runner.models import Job
from runner.reads.history import HistoryQuery
from runner.reads.paging import Cursor
from runner.storage import transitions
from runner.storage.store import Store
from tests.dashboard_fixtures import _drive, button, open_page, texts

ROLES = {"boss@x.io": "admin", "ann@x.io": "analyst", "*@x.io": "staff"}
SAM, OLGA, ANN, BOSS = "sam@x.io", "olga@x.io", "ann@x.io", "boss@x.io"
N = 24
KEPT_OLD = 5  # an old job Redis still holds while newer ones are gone (a long wait, a late finish)
PRUNED = [i for i in range(14) if i != KEPT_OLD]
RETRIED = 21  # failed, archived, then retried: Redis holds it (queued again), the archive as it failed
KIT = {4, 11, 16}  # results that mention the brand kit: two archived only (one Sam's), one in Redis
MISSING = "0" * 32


@dataclass
class World:
    """N DEMO jobs of Sam's and Olga's, every one archived, PRUNED then removed from Redis, and one job
    still queued (never archived). `truth` is each job as a reader should see it, newest first."""

    settings: Settings
    jobs: list[Job] = field(default_factory=list)
    queued: Job | None = None

    @property
    def pruned(self) -> set[str]:
        return {self.jobs[i].id for i in PRUNED}

    def every(self) -> list[Job]:
        """Newest first."""
        found = [*self.jobs, *([self.queued] if self.queued else [])]
        return sorted(found, key=lambda job: (job.queued_at, job.id), reverse=True)

    def truth(self, keep: Callable[[Job], bool] = lambda job: True) -> list[str]:
        return [job.id for job in self.every() if keep(job)]

    def client(self, user: str | None = None) -> AsyncClient:
        return AsyncClient(self.settings, user=user)


async def finish(job: Job, i: int) -> Job:
    if i % 3 == 0:
        return await _drive(job.id, "failed", f"DemoFailure: boom {i}", None, 0.0, 1.0)
    text = f"the brand kit for acme, version {i}" if i in KIT else f"poster {i}"
    calls = [Call(model="gpt-4o-mini", tokens_in=120, tokens_out=30, cost_usd=0.0002, seconds=0.5, step="Write")] \
        if i == 1 else []
    return await _drive(job.id, "completed", None, {"text": text}, 0.0, 1.0, calls)


@pytest.fixture
async def world(store: Store, archive: Archive, archive_url: str) -> World:
    made = World(Settings(roles=ROLES, archive=True, archive_url=archive_url))  # type: ignore[arg-type]
    async with made.client() as admin:
        for i in range(N):
            job = await admin.submit("DEMO", {"duration_s": 0, "output": f"job {i}"}, user=SAM if i % 2 else OLGA)
            made.jobs.append(await finish(job, i))
        assert await feeder.backfill(store, archive) == N
        for i in PRUNED:
            assert (await store.apply(made.jobs[i].id, transitions.purge())).applied
        assert made.jobs[RETRIED].status is JobStatus.failed
        made.jobs[RETRIED] = await admin.retry(made.jobs[RETRIED].id)
        made.queued = await admin.submit("DEMO", {"duration_s": 0}, user=SAM)
    assert await store.load(made.jobs[0].id) is None and await store.load(made.jobs[KEPT_OLD].id) is not None
    return made


QUERIES: list[tuple[HistoryQuery, Callable[[Job], bool]]] = [
    (HistoryQuery(status=[]), lambda job: True),
    (HistoryQuery(), lambda job: job.status.terminal),
    (HistoryQuery(status=[JobStatus.failed]), lambda job: job.status is JobStatus.failed),
    (HistoryQuery(status=[JobStatus.completed], user=SAM), lambda job: job.status is JobStatus.completed
     and job.user_id == SAM),
    (HistoryQuery(status=[], type="DEMO", error="boom 1"), lambda job: "boom 1" in (job.last_error or "")),
]


async def every_page(read: Callable[[int], Any], size: int) -> list[str]:
    """Offsets 0, size, 2 size... until a short page: every id read."""
    ids: list[str] = []
    while True:
        page = [job.id for job in await read(len(ids))]
        ids += page
        if len(page) < size:
            return ids


async def cursor_pages(client: AsyncClient, size: int, **filters: Any) -> list[str]:
    ids, cursor = [], None
    while True:
        page = await client.page(limit=size, cursor=cursor, **filters)
        ids += [job.id for job in page.jobs]
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor


def exported(text: str) -> list[str]:
    return [row[0] for row in list(csv.reader(io.StringIO(text)))[1:]]


async def test_get_reads_an_archived_job_its_owner_may_see(world: World) -> None:
    gone, held = world.jobs[1], world.jobs[15]  # both Sam's
    async with world.client(SAM) as sam, world.client(OLGA) as olga, world.client(ANN) as ann:
        job = await sam.get(gone.id)
        assert job.model_dump(exclude={"attempt_log"}) == gone.model_dump(exclude={"attempt_log"})
        found = await sam.job_or_archived(gone.id)
        assert found.archived and found.archived_at is not None and found.job.attempt_log
        assert [entry["action"] for entry in found.audit] == ["submit"]
        assert found.usage is not None and [u.tokens_in for u in found.usage.steps] == [120]
        assert (await sam.job_or_archived(held.id)).archived is False
        assert (await ann.get(gone.id)).id == gone.id  # an analyst reads everyone's
        with pytest.raises(JobNotFound) as other:
            await olga.get(gone.id)
        with pytest.raises(JobNotFound) as missing:
            await olga.get(MISSING)
        assert str(other.value) == str(missing.value).replace(MISSING, gone.id)
        with pytest.raises(JobNotFound):
            await olga.job_or_archived(gone.id)


async def test_an_archived_job_is_read_only(world: World) -> None:
    failed = world.jobs[12]  # Olga's, failed, no longer in Redis
    async with world.client(OLGA) as olga, world.client(SAM) as sam:
        for act in (olga.retry, olga.cancel):
            with pytest.raises(InvalidTransition, match="archived .* read-only"):
                await act(failed.id)
        with pytest.raises(JobNotFound):
            await sam.retry(failed.id)
        assert (await olga.retry_many([failed.id])).errors[failed.id].startswith(f"job {failed.id} is archived")
        assert (await olga.get(failed.id)).status is JobStatus.failed


@pytest.mark.parametrize("size", [1, 4, 7])
async def test_history_is_one_list_across_redis_and_the_archive(world: World, size: int) -> None:
    async with world.client(BOSS) as boss:
        for query, keep in QUERIES:
            expected = world.truth(keep)
            assert len(set(expected) & world.pruned) > 0 or query.error, query
            pages = [await boss.history(query, limit=size, offset=k) for k in range(0, len(expected) + size, size)]
            assert [job.id for page in pages for job in page.jobs] == expected, query
            assert all(page.total == len(expected) and page.exact for page in pages), query
            assert {i for page in pages for i in page.archived} == set(expected) & world.pruned
            assert pages[0].archived_total == len(set(expected) & world.pruned)
            assert await every_page(lambda k, q=query: listed(boss, q, size, k), size) == expected
            assert exported("".join([chunk async for chunk in boss.export_csv(query)])) == expected


async def listed(client: AsyncClient, query: HistoryQuery, size: int, offset: int) -> list[Job]:
    return await client.list(query.status or None, query.type, query.user, limit=size, offset=offset) \
        if not query.error else (await client.history(query, limit=size, offset=offset)).jobs


@pytest.mark.parametrize("size", [1, 3, 10])
async def test_cursor_pages_cross_the_boundary_and_old_cursors_still_work(world: World, size: int) -> None:
    async with world.client(BOSS) as boss:
        assert await cursor_pages(boss, size) == world.truth()
        assert await cursor_pages(boss, size, status="failed") == world.truth(lambda j: j.status is JobStatus.failed)
        assert await cursor_pages(boss, size, user=SAM, type="DEMO") == world.truth(lambda j: j.user_id == SAM)
        everything = world.every()
        for k, job in enumerate(everything[:-1]):  # a cursor at every job, Redis's or the archive's
            cursor = Cursor(score=job.queued_at.timestamp(), id=job.id).encode()  # as pages have always made them
            after = [j.id for j in everything[k + 1:k + 1 + size]]
            assert [j.id for j in (await boss.page(limit=size, cursor=cursor)).jobs] == after


async def test_a_job_pruned_between_two_pages_is_read_once(world: World, store: Store) -> None:
    expected = world.truth(lambda job: job.status.terminal)
    async with world.client(BOSS) as boss:
        first = await boss.page(status=["completed", "failed", "cancelled"], limit=3)
        offset_first = await boss.history(limit=3)
        for job in world.jobs:  # every finished job Redis still holds now goes, as the heartbeat's prune would
            if job.id in expected[3:] and job.status.terminal:
                await store.apply(job.id, transitions.purge())
        assert await store.load(world.jobs[KEPT_OLD].id) is None
        ids, cursor = [job.id for job in first.jobs], first.next_cursor
        while cursor:
            page = await boss.page(status=["completed", "failed", "cancelled"], limit=3, cursor=cursor)
            ids, cursor = ids + [job.id for job in page.jobs], page.next_cursor
        assert ids == expected
        rest = [await boss.history(limit=3, offset=k) for k in range(3, len(expected), 3)]
        assert [job.id for page in [offset_first, *rest] for job in page.jobs] == expected
        assert all(set(page.archived) == {job.id for job in page.jobs} for page in rest)


async def test_counts_and_search_include_archived_jobs(world: World) -> None:
    async with world.client(BOSS) as boss, world.client(SAM) as sam:
        assert await boss.count(status=[]) == N + 1
        assert await boss.count(status="failed") == len(world.truth(lambda j: j.status is JobStatus.failed))
        assert await boss.count(status="completed", user=SAM) == len(
            world.truth(lambda j: j.status is JobStatus.completed and j.user_id == SAM))
        assert await sam.count(status=[]) == len(world.truth(lambda j: j.user_id == SAM))
        failed = world.truth(lambda j: j.status is JobStatus.failed)
        summary = await boss.history(HistoryQuery(status=[JobStatus.failed]), limit=0)  # what "Retry all" asks
        assert summary.jobs == [] and summary.total == len(failed)
        assert summary.archived_total == len(set(failed) & world.pruned)
        kit = [world.jobs[i].id for i in sorted(KIT, reverse=True)]
        for words in ("kit", "brand kits", "ACME kit"):
            found = await boss.history(HistoryQuery(status=[], q=words))
            assert [job.id for job in found.jobs] == kit and found.total == len(kit), words
            assert set(found.archived) == {world.jobs[i].id for i in KIT} & world.pruned
        assert (await boss.history(HistoryQuery(status=[], q="kit nowhere"))).jobs == []
        assert (await boss.history(HistoryQuery(status=[], q="!!"))).jobs == []
        mine = await sam.history(HistoryQuery(status=[], q="kit"))
        assert [job.id for job in mine.jobs] == [i for i in kit if i in world.truth(lambda j: j.user_id == SAM)]
        assert exported("".join([c async for c in boss.export_csv(HistoryQuery(status=[], q="kit"))])) == kit


@pytest.mark.parametrize("user", [SAM, ANN, BOSS])
async def test_each_role_reads_whose_jobs_it_may(world: World, user: str) -> None:
    own = (lambda job: job.user_id == SAM) if user == SAM else (lambda job: True)
    async with world.client(user) as client:
        assert [job.id for job in (await client.history(HistoryQuery(status=[]), limit=100)).jobs] == world.truth(own)
        assert await cursor_pages(client, 5) == world.truth(own)
        assert await client.count(status=[]) == len(world.truth(own))
        assert exported("".join([c async for c in client.export_csv(HistoryQuery(status=[]))])) == world.truth(own)
        for job in (world.jobs[0], world.jobs[1]):  # Olga's and Sam's, both archived only
            if own(job):
                assert (await client.get(job.id)).id == job.id
            else:
                with pytest.raises(JobNotFound):
                    await client.get(job.id)


async def test_reads_come_from_redis_alone_when_the_archive_is_off_or_away(world: World) -> None:
    held = world.truth(lambda job: job.id not in world.pruned)
    away = "postgresql://taskdeck@127.0.0.1:9/nowhere"
    for settings in (world.settings.model_copy(update={"archive": False}),
                     world.settings.model_copy(update={"archive_url": away})):
        async with AsyncClient(settings) as client:
            assert [job.id for job in (await client.history(HistoryQuery(status=[]), limit=100)).jobs] == held
            assert await cursor_pages(client, 4) == held and await client.count(status=[]) == len(held)
            with pytest.raises(JobNotFound):
                await client.get(world.jobs[0].id)


def test_pages_badge_archived_jobs_and_keep_them_read_only(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKDECK_ARCHIVE", "true")
    monkeypatch.setenv("TASKDECK_ARCHIVE_URL", str(world.settings.archive_url))
    at = open_page("history")
    at.multiselect(key="h_status").set_value([]).run()
    table = at.dataframe[0].value
    statuses = dict(zip(table["Job"], table["Status"], strict=True))
    assert len(statuses) == N + 1
    for job_id, status in statuses.items():
        assert status.endswith("· archived") == (job_id.removeprefix("job?id=") in world.pruned), job_id
    gone = world.jobs[12]  # failed, archived only
    at = open_page("job", id=gone.id)
    assert any("archived" in badge for badge in badges(at)) and "read-only" in texts(at)
    assert not [b for b in at.button if b.label in ("Retry", "Cancel")]
    held = open_page("job", id=world.jobs[18].id)  # failed, in Redis
    assert not any("archived" in badge for badge in badges(held))
    button(held, "Retry")


def badges(at: AppTest) -> list[str]:
    """The page's st.badge texts (AppTest shows each as markdown with a `:color-badge[...]` directive)."""
    return [element.value for element in at.markdown if "-badge[" in element.value]
