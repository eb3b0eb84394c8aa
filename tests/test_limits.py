"""Running limits (user, org, type, global) and the hourly submit limit, under concurrency.

A job over a running limit is accepted, waits as `queued` off ARQ's queue with the reason, and
starts as soon as a slot frees; no limit is ever overshot, however many workers race.
"""
from __future__ import annotations

import asyncio

import pytest
import redis

from runner import AsyncClient, Client, JobStatus, LimitExceeded, Settings
from tests.polling import wait_until


def watch_peak(r: redis.Redis, key: str, client: Client, ids: list[str]) -> int:
    """Sample a running set until every job is done; return the largest size seen."""
    peak = 0

    def done() -> bool:
        nonlocal peak
        peak = max(peak, r.scard(key))
        return all(client.get(i).status.terminal for i in ids)

    wait_until(done, 60, "every job to finish", every=0.01)
    return peak


@pytest.mark.parametrize(("env", "submit", "running_key", "limit"), [
    ({"TASKDECK_MAX_RUNNING_PER_USER": "3"}, {"user": "a@x.io"}, "taskdeck:running:user:a@x.io", 3),
    ({"TASKDECK_MAX_RUNNING_PER_ORG": "2"}, {"org": "acme"}, "taskdeck:running:org:acme", 2),
    ({"TASKDECK_MAX_RUNNING_PER_TYPE": '{"TEST_SLEEP": 4}'}, {}, "taskdeck:running:type:TEST_SLEEP", 4),
], ids=["user", "org", "type"])
def test_running_limit_is_never_overshot(redis_url: str, start_worker, r, env, submit, running_key, limit) -> None:
    for _ in range(2):
        start_worker(TASKDECK_MAX_JOBS="10", **env)
    with Client() as client:
        ids = [client.submit("TEST_SLEEP", {"seconds": 0.5}, **submit).id for _ in range(12)]
        waiting = wait_until(lambda: [j for j in client.list(status="queued") if j.waiting_reason], 15, "a held job")
        assert waiting[0].waiting_reason.endswith(f"limit {limit} reached")
        peak = watch_peak(r, running_key, client, ids)
        assert peak == limit, f"peak {peak} running against a limit of {limit}"
        assert all(client.get(i).status is JobStatus.completed for i in ids)
        assert all(client.get(i).waiting_reason is None for i in ids)


def test_global_limit(redis_url: str, start_worker, r) -> None:
    start_worker(TASKDECK_MAX_JOBS="10", TASKDECK_MAX_RUNNING_GLOBAL="2")
    with Client() as client:
        ids = [client.submit("TEST_SLEEP", {"seconds": 0.3}, user=f"u{i}@x.io").id for i in range(6)]
        peak = 0

        def done() -> bool:
            nonlocal peak
            peak = max(peak, r.zcard("taskdeck:idx:status:processing"))
            return all(client.get(i).status.terminal for i in ids)

        wait_until(done, 30, "every job", every=0.01)
    assert peak == 2


def test_admin_override_and_raising_it_releases_waiting_jobs(redis_url: str, start_worker) -> None:
    start_worker(TASKDECK_MAX_JOBS="10")
    with Client() as admin:
        admin.set_limit("user", "b@x.io", 1)
        ids = [admin.submit("TEST_SLEEP", {"seconds": 30}, user="b@x.io").id for _ in range(3)]
        wait_until(lambda: sum(admin.get(i).waiting_reason is not None for i in ids) == 2, 15, "two held jobs")
        assert admin.limits() == {"user:b@x.io": 1}
        admin.set_limit("user", "b@x.io", 3)
        wait_until(lambda: all(admin.get(i).status is JobStatus.processing for i in ids), 15, "all three to run")
        assert "set limit user:b@x.io = 3" in [e["action"] for e in admin.audit()]
        for job_id in ids:
            admin.cancel(job_id)


def test_cancelling_a_held_job_frees_it_from_the_waiting_room(redis_url: str, start_worker, r) -> None:
    start_worker(TASKDECK_MAX_RUNNING_PER_USER="1")
    with Client() as client:
        first = client.submit("TEST_SLEEP", {"seconds": 30}, user="c@x.io")
        held = client.submit("TEST_SLEEP", {"seconds": 30}, user="c@x.io")
        wait_until(lambda: client.get(held.id).waiting_reason, 15, "the second job to be held")
        assert client.cancel(held.id).status is JobStatus.cancelled
        assert r.zcard("taskdeck:parked:user:c@x.io") == 0
        client.cancel(first.id)


async def test_hourly_submit_limit_holds_under_50_concurrent_submitters(redis_url: str, r) -> None:
    async with AsyncClient(Settings(max_submits_per_user_per_hour=10)) as ac:
        results = await asyncio.gather(*[ac.submit("DEMO", {}, user="d@x.io") for _ in range(50)],
                                       return_exceptions=True)
    accepted = [x for x in results if not isinstance(x, Exception)]
    refused = [x for x in results if isinstance(x, LimitExceeded)]
    assert len(accepted) == 10 and len(refused) == 40
    assert "d@x.io has submitted 10 jobs in the last hour" in str(refused[0])
    assert "try again in 60 min" in str(refused[0])
    assert r.zcard("taskdeck:idx:all") == 10 and r.zcard("arq:queue") == 10
