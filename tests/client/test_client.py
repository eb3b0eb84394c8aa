"""The client without workers: submit validation and atomicity, reads, pagination, dedup, retention."""
from __future__ import annotations

import asyncio
import time
from itertools import pairwise

import pytest

from runner import AsyncClient, Client, InvalidPayload, JobNotFound, JobStatus, RedisUnavailable, Settings
from runner.storage.store import Store, connect
from runner.worker.execution import WorkerState
from runner.worker.heartbeat import prune

REJECTED = [
    ("DEMO", {"duration_s": 5000}, InvalidPayload, "duration_s: Input should be less than or equal to 3600"),
    ("DEMO", {"steps": 0}, InvalidPayload, "steps: Input should be greater than or equal to 1"),
    ("DEMO", {"output": "x" * 10_001}, InvalidPayload, "output: String should have at most 10000 characters"),
    ("DEMO", {"surprise": 1}, InvalidPayload, "surprise: Extra inputs are not permitted"),
    ("DEMO", {"duration_s": "soon"}, InvalidPayload, "duration_s: Input should be a valid number"),
    ("DEMO", "{not json", InvalidPayload, "payload for DEMO is not valid JSON"),
    ("DEMO", "[1, 2]", InvalidPayload, "payload for DEMO must be a JSON object, not list"),
    ("NO_SUCH_TYPE", {}, Exception, "unknown task type 'NO_SUCH_TYPE'; registered types: "),
]


@pytest.fixture
def client(redis_url: str):
    with Client() as c:
        yield c


@pytest.mark.parametrize(("type_", "payload", "error", "message"), REJECTED)
def test_rejected_submit_writes_nothing(client: Client, r, type_, payload, error, message) -> None:
    r.config_resetstat()
    with pytest.raises(error, match=message.replace("(", r"\(").replace("[", r"\[")):
        client.submit(type_, payload)
    commands = {name.split("|")[0] for name in r.info("commandstats")}
    assert commands <= {"cmdstat_config", "cmdstat_info"}, f"a rejected submit sent {commands}"
    assert r.dbsize() == 0


def test_oversized_payload_names_the_limit(redis_url: str, r) -> None:
    limit = r"is 2,013 bytes; the limit is 1,000 \(TASKDECK_MAX_PAYLOAD_BYTES\)"
    with Client(Settings(max_payload_bytes=1000)) as small, pytest.raises(InvalidPayload, match=limit):
        small.submit("DEMO", {"output": "x" * 2000})
    assert r.dbsize() == 0


def test_bad_priority_is_refused(client: Client, r) -> None:
    with pytest.raises(InvalidPayload, match="priority 'urgent' is not one of: high, normal, low"):
        client.submit("DEMO", {}, priority="urgent")
    assert r.dbsize() == 0


def test_submit_writes_record_indexes_arq_job_and_event_together(client: Client, r) -> None:
    job = client.submit("DEMO", {"duration_s": 2}, user="a@x.io", org="acme", priority="high")
    assert r.zscore("arq:queue", job.id) is not None and r.exists(f"arq:job:{job.id}")
    for index in ("all", "status:queued", "type:DEMO", "user:a@x.io", "pending:high"):
        assert r.zscore(f"taskdeck:idx:{index}", job.id) is not None, index
    [(_, event)] = r.xrange("taskdeck:events")
    assert event == {"job": job.id, "type": "DEMO", "user": "a@x.io", "status": "queued", "event": "submitted"}
    stored = client.get(job.id)
    assert stored.payload == {"duration_s": 2.0, "steps": 1, "fail_first": 0, "fail_always": False, "output": ""}
    assert stored.org_id == "acme" and stored.priority == "high"
    assert stored.queued_at.utcoffset().total_seconds() == 0
    assert "." in r.hget(f"taskdeck:job:{job.id}", "queued_at"), "timestamps keep sub-second precision"


def test_priorities_order_arq_queue(client: Client, r) -> None:
    low = client.submit("DEMO", {}, priority="low")
    normal = client.submit("DEMO", {}, priority="normal")
    high = client.submit("DEMO", {}, priority="high")
    assert r.zrange("arq:queue", 0, -1) == [high.id, normal.id, low.id]
    assert client.stats().queue_depth == {"high": 1, "normal": 1, "low": 1}


def test_get_unknown_and_malformed_ids(client: Client) -> None:
    with pytest.raises(JobNotFound, match="not found"):
        client.get("f" * 32)
    with pytest.raises(JobNotFound):
        client.get("../../etc")


def test_redis_down_gives_one_clear_error_fast(redis_url: str) -> None:
    with Client(Settings(redis_url="redis://127.0.0.1:1/0")) as down:
        started = time.monotonic()
        with pytest.raises(RedisUnavailable, match="job queue unavailable.*nothing was submitted"):
            down.submit("DEMO", {})
        assert time.monotonic() - started < 5
        with pytest.raises(RedisUnavailable):
            down.list()


async def test_idempotency_key_makes_one_job_under_concurrency(redis_url: str, r) -> None:
    async with AsyncClient() as ac:
        jobs = await asyncio.gather(*[ac.submit("DEMO", {}, idempotency_key="order-42") for _ in range(10)])
    assert len({j.id for j in jobs}) == 1
    assert r.zcard("taskdeck:idx:all") == 1 and r.zcard("arq:queue") == 1


async def test_pagination_over_ten_thousand_records(redis_url: str) -> None:
    async with AsyncClient() as ac:
        for start in range(0, 10_000, 500):
            await asyncio.gather(*[
                ac.submit("DEMO" if i % 2 else "TEST_SLEEP", {"seconds": 1} if i % 2 == 0 else {},
                          user=f"u{i % 4}@x.io") for i in range(start, start + 500)
            ])
        began = time.perf_counter()
        pages, offset = [], 0
        while page := await ac.list(limit=500, offset=offset):
            pages.append(page)
            offset += len(page)
        everything = [j for page in pages for j in page]
        took = time.perf_counter() - began
        print(f"\nlisted 10,000 jobs in 20 pages of 500 in {took * 1000:.0f} ms")
        assert len(everything) == 10_000 and len({j.id for j in everything}) == 10_000
        assert all(a.queued_at >= b.queued_at for a, b in pairwise(everything))

        began = time.perf_counter()
        filtered = await ac.list(type="DEMO", user="u1@x.io", status="queued", limit=50, offset=2000)
        print(f"filtered page (type+user+status, offset 2000) in {(time.perf_counter() - began) * 1000:.1f} ms")
        assert len(filtered) == 50
        assert {(j.type, j.user_id, j.status) for j in filtered} == {("DEMO", "u1@x.io", JobStatus.queued)}
        assert len(await ac.list(type="DEMO", user="u1@x.io", limit=1000, offset=2000)) == 500


async def test_finished_jobs_expire_with_their_index_entries(redis_url: str, r) -> None:
    settings = Settings(retention_days=1 / 86400)
    async with AsyncClient(settings) as ac:
        keep = await ac.submit("DEMO", {})
        gone = await ac.submit("DEMO", {}, user="b@x.io")
        await ac.cancel(gone.id)
    await asyncio.sleep(0)
    store = Store(connect(settings), settings)
    r.zadd("taskdeck:idx:expiry", {gone.id: time.time() - 1})
    assert await prune(WorkerState(store, "test")) == 1
    await store.redis.aclose()
    assert not r.exists(f"taskdeck:job:{gone.id}")
    leftover = [k for k in r.keys("taskdeck:idx:*") if r.zscore(k, gone.id) is not None]
    assert leftover == []
    assert r.exists(f"taskdeck:job:{keep.id}")
