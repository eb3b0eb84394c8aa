"""GET /api/jobs/{id}/events under resume, abuse and load, against a real API process and worker.

A stream must end: on a final job (a browser EventSource reconnects on its own with the id of the
last event it saw), at its time limit (with a `retry:` hint), and never by pinning a Redis
connection per follower (one reader per API process serves them all).
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import httpx
import pytest
import redis

from runner import AsyncClient, Client, Settings
from runner.api import streams
from runner.errors import InvalidPayload
from runner.reads.events import Event, Follow, Snapshot
from tests.api_server import ROLES, ServerFactory, is_problem, token
from tests.polling import wait_until

EVENTS = "taskdeck:events"
FINAL = ("completed", "failed", "cancelled")
Frame = dict[str, str]






def iter_frames(response: httpx.Response) -> Iterator[Frame]:
    """Each SSE frame ({id, event, data, retry}, as text; comments and pings left out) until the
    server ends the stream."""
    current: Frame = {}
    for line in response.iter_lines():
        if line:
            name, _, value = line.partition(":")
            if name in ("id", "event", "data", "retry"):
                current[name] = value.removeprefix(" ")
        elif current:
            yield current
            current = {}


def frames(response: httpx.Response, until: Callable[[list[Frame]], bool] = lambda _: False) -> list[Frame]:
    """The frames until `until` holds or the stream ends."""
    seen: list[Frame] = []
    for frame in iter_frames(response):
        seen.append(frame)
        if until(seen):
            break
    return seen


def stream(api: str, job_id: str, auth: dict[str, str], last_id: str | None = None,
           until: Callable[[list[Frame]], bool] = lambda _: False, timeout: float = 20) -> list[Frame]:
    headers = {**auth, **({"Last-Event-ID": last_id} if last_id is not None else {})}
    with httpx.stream("GET", f"{api}/api/jobs/{job_id}/events", headers=headers, timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        return frames(response, until)


def submit(api: str, auth: dict[str, str], type_: str = "DEMO", **payload: object) -> str:
    created = httpx.post(f"{api}/api/jobs", headers=auth, json={"type": type_, "payload": payload})
    assert created.status_code == 202, created.text
    job_id: str = created.json()["id"]
    return job_id


def status_of(api: str, job_id: str, auth: dict[str, str]) -> str:
    status: str = httpx.get(f"{api}/api/jobs/{job_id}", headers=auth).json()["status"]
    return status


def running(api: str, auth: dict[str, str], n: int = 1) -> list[str]:
    ids = [submit(api, auth, "TEST_SLEEP", seconds=120) for _ in range(n)]
    wait_until(lambda: all(status_of(api, job_id, auth) == "processing" for job_id in ids), 20, "the jobs to start")
    return ids


def blocked_xreads(r: redis.Redis) -> int:
    return sum(c["cmd"] == "xread" and "b" in c["flags"] for c in r.client_list())


def final_stream_of(api: str, job_id: str, auth: dict[str, str]) -> list[Frame]:
    return stream(api, job_id, auth, until=lambda seen: final(seen[-1]))


def test_a_resume_after_the_completed_event_sends_the_final_record_and_ends(api: str, start_worker,
                                                                             r: redis.Redis) -> None:
    start_worker()
    auth = token()
    job_id = submit(api, auth, duration_s=0.3, steps=2)
    completed = final_stream_of(api, job_id, auth)[-1]
    assert completed["event"] == "completed"
    started = time.monotonic()
    again = stream(api, job_id, auth, last_id=completed["id"], timeout=10)
    assert time.monotonic() - started < 3, "the stream ended on its own, without waiting"
    assert [f["event"] for f in again] == ["snapshot"] and '"status":"completed"' in again[0]["data"]
    assert blocked_xreads(r) <= 1


def test_zero_on_a_trimmed_stream_gives_a_snapshot_first(api: str, start_worker, r: redis.Redis) -> None:
    start_worker()
    auth = token()
    done = submit(api, auth, duration_s=0.1)
    final_stream_of(api, done, auth)
    (job_id,) = running(api, auth)
    r.xtrim(EVENTS, maxlen=1, approximate=False)
    assert [f["event"] for f in stream(api, done, auth, last_id="0-0", timeout=10)] == ["snapshot"]
    with httpx.stream("GET", f"{api}/api/jobs/{job_id}/events", headers={**auth, "Last-Event-ID": "0-0"},
                      timeout=20) as response:
        received = iter_frames(response)
        first = next(received)
        assert first["event"] == "snapshot" and '"status":"processing"' in first["data"]
        httpx.delete(f"{api}/api/jobs/{job_id}", headers=auth)
        rest = list(received)
    assert rest[-1]["event"] == "cancelled" and "retry" not in rest[-1]


@pytest.mark.parametrize("last_id", [
    "18446744073709551616-0",   # the ms part above 2^64-1 (was a 500)
    "1-18446744073709551616",   # the sequence above 2^64-1
    "99999999999999999999999999999999999999999",
    "18446744073709551615-18446744073709551615",  # the largest id: newer than the newest
    "not-an-id", "1-2-3", "-1", "1.5-0", "0x10-0", "١٢٣-٠",
])
def test_a_malformed_or_impossible_last_event_id_is_a_422(api: str, last_id: str) -> None:
    auth = token()
    job_id = submit(api, auth)
    headers = {**auth, "Last-Event-ID": last_id.encode()}
    response = httpx.get(f"{api}/api/jobs/{job_id}/events", headers=headers, timeout=10)
    assert "event id" in is_problem(response, 422)["detail"]


def test_an_id_just_past_the_newest_event_is_a_422(api: str, r: redis.Redis) -> None:
    auth = token()
    job_id = submit(api, auth)
    newest = r.xinfo_stream(EVENTS)["last-generated-id"]
    ms, seq = map(int, newest.split("-"))
    for later in (f"{ms}-{seq + 1}", f"{ms + 1}-0"):
        body = is_problem(httpx.get(f"{api}/api/jobs/{job_id}/events", headers={**auth, "Last-Event-ID": later}), 422)
        assert "newer than the newest" in body["detail"]


def test_a_resume_at_the_newest_id_of_a_quiet_job_waits_for_news(api: str) -> None:
    auth = token()
    job_id = submit(api, auth)
    snapshot = stream(api, job_id, auth, until=lambda seen: True)[0]
    with httpx.stream("GET", f"{api}/api/jobs/{job_id}/events", headers={**auth, "Last-Event-ID": snapshot["id"]},
                      timeout=20) as response:
        assert response.status_code == 200
        httpx.delete(f"{api}/api/jobs/{job_id}", headers=auth)
        rest = frames(response)
    assert [f["event"] for f in rest] == ["cancelled"], "no snapshot: nothing was lost since its id"


def test_another_users_job_answers_404_whatever_the_last_event_id(api: str) -> None:
    mine = submit(api, token("a@x.io"))
    other = token("b@x.io")
    missing = uuid.uuid4().hex
    for last_id in (None, "0-0", "garbage", "18446744073709551616-0"):
        headers = {**other, **({"Last-Event-ID": last_id} if last_id else {})}
        theirs = is_problem(httpx.get(f"{api}/api/jobs/{mine}/events", headers=headers), 404)
        absent = is_problem(httpx.get(f"{api}/api/jobs/{missing}/events", headers=headers), 404)
        assert theirs["detail"].replace(mine, "ID") == absent["detail"].replace(missing, "ID")


def test_a_stream_ends_at_its_time_limit_and_a_reconnecting_client_loses_nothing(
        own_api: ServerFactory, start_worker, r: redis.Redis) -> None:
    """A client that reconnects whenever a stream ends, as an EventSource does, until the job is final."""
    api = own_api(TASKDECK_API_STREAM_MAX_S="0.7")
    start_worker()
    auth = token()
    job_id = submit(api, auth, duration_s=2.5, steps=10)
    received: list[Frame] = []
    last_id, limits = None, 0
    deadline = time.monotonic() + 30
    while not received or not final(received[-1]):
        assert time.monotonic() < deadline, received
        opened = time.monotonic()
        part = stream(api, job_id, auth, last_id=last_id, timeout=10)
        if part[-1].get("retry"):
            limits += 1
            assert part[-1]["retry"] == "1000" and "event" not in part[-1]
            assert time.monotonic() - opened < 3, "the time limit ended the stream"
        received += [f for f in part if "event" in f]
        last_id = part[-1]["id"]
    assert limits >= 2, "the job outlived several streams"
    snapshots = [n for n, f in enumerate(received) if f["event"] == "snapshot"]
    assert snapshots in ([0], [0, len(received) - 1]), "no snapshot but the first (and a final record): no loss"
    events = [f["id"] for f in received[1:] if f["event"] != "snapshot"]
    assert events == recorded_after(r, job_id, received[0]["id"])


def test_a_resume_on_a_finished_job_sends_what_it_missed_then_the_final_record(api: str, start_worker,
                                                                                r: redis.Redis) -> None:
    start_worker()
    auth = token()
    job_id = submit(api, auth, duration_s=0.5, steps=5)
    seen = final_stream_of(api, job_id, auth)
    progress = next(f for f in seen if f["event"] == "progress")
    started = time.monotonic()
    again = stream(api, job_id, auth, last_id=progress["id"], timeout=10)
    assert time.monotonic() - started < 3
    assert [f["id"] for f in again[:-1]] == recorded_after(r, job_id, progress["id"])
    assert again[-2]["event"] == "completed" and again[-1]["event"] == "snapshot" and final(again[-1])


def final(frame: Frame) -> bool:
    """A terminal event, or a snapshot of a job in a final status."""
    if frame.get("event") == "snapshot":
        return json.loads(frame["data"])["status"] in FINAL
    return frame.get("event") in FINAL


def recorded_after(r: redis.Redis, job_id: str, position: str) -> list[str]:
    """The ids of `job_id`'s entries in the stream after `position`."""
    after = tuple(map(int, position.split("-")))
    return [i for i, fields in r.xrange(EVENTS) if fields["job"] == job_id and tuple(map(int, i.split("-"))) > after]


def test_fifty_followers_cost_one_blocked_redis_read_and_all_see_the_end(api: str, start_worker,
                                                                        r: redis.Redis) -> None:
    """5 users, 2 running jobs each, 5 streams per job."""
    start_worker()
    users = [token(f"crowd{i}@x.io") for i in range(5)]
    jobs = [(auth, job_id) for auth in users for job_id in running(api, auth, 2)]
    seen: dict[int, list[Frame]] = {}
    threads = [threading.Thread(target=follow_into, args=(seen, n, api, job_id, auth), daemon=True)
               for n, (auth, job_id) in enumerate(jobs * 5)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(seen) == 50 and all(seen[n] for n in seen), 20, "every follower's snapshot")
    samples: list[int] = []
    wait_until(lambda: samples.append(blocked_xreads(r)) or len(samples) >= 25, 10, "25 samples")
    blocked = r.info("clients")["blocked_clients"]
    assert max(samples) == 1 and blocked <= 1, (samples, blocked)
    for auth, job_id in jobs:
        httpx.delete(f"{api}/api/jobs/{job_id}", headers=auth, timeout=10)
    for thread in threads:
        thread.join(20)
    assert all(seen[n][-1].get("event") == "cancelled" for n in range(50)), "every follower saw the end"
    assert all(seen[n][0]["event"] == "snapshot" for n in range(50))


def follow_into(seen: dict[int, list[Frame]], n: int, api: str, job_id: str, auth: dict[str, str]) -> None:
    frames_of_n: list[Frame] = []
    seen[n] = frames_of_n
    with httpx.stream("GET", f"{api}/api/jobs/{job_id}/events", headers=auth, timeout=30) as response:
        for frame in iter_frames(response):
            frames_of_n.append(frame)


def test_the_per_user_cap_answers_429_while_another_user_still_streams(own_api: ServerFactory) -> None:
    api = own_api(TASKDECK_API_STREAMS_PER_USER="2")
    a, b = token("a@x.io"), token("b@x.io")
    job_a, job_b = submit(api, a), submit(api, b)
    with ExitStack() as open_streams:
        held = []
        for _ in range(2):
            response = open_streams.enter_context(httpx.stream("GET", f"{api}/api/jobs/{job_a}/events", headers=a,
                                                               timeout=20))
            received = iter_frames(response)  # kept: a dropped line iterator closes the response
            assert next(received)["event"] == "snapshot"
            held.append((response, received))
        refused = httpx.get(f"{api}/api/jobs/{job_a}/events", headers=a, timeout=10)
        assert "TASKDECK_API_STREAMS_PER_USER" in is_problem(refused, 429)["detail"]
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert stream(api, job_b, b, until=lambda seen: True)[0]["event"] == "snapshot", "another user is not held up"
        held[0][0].close()

        def reopened() -> bool:
            with httpx.stream("GET", f"{api}/api/jobs/{job_a}/events", headers=a, timeout=10) as response:
                return response.status_code == 200
        wait_until(reopened, 10, "a closed stream to give its place back")


def test_the_python_client_follows_the_same_way(api: str, start_worker, r: redis.Redis) -> None:
    start_worker()
    auth = token()
    job_id = submit(api, auth, duration_s=0.2)
    completed = final_stream_of(api, job_id, auth)[-1]
    with Client(Settings(roles=ROLES)) as admin:
        items = list(admin.follow(job_id, after=completed["id"]))
        assert len(items) == 1 and isinstance(items[0], Snapshot) and items[0].job.status == "completed"
        with pytest.raises(InvalidPayload, match="newer than the newest"):
            next(admin.follow(job_id, after="18446744073709551615-0"))
        with pytest.raises(InvalidPayload, match="not an event id"):
            next(admin.follow(job_id, after="١٢٣-٠"))  # Arabic-Indic digits pass str.isdigit()
        queued = admin.submit("DEMO", {"duration_s": 0.2})
        seen = [item for item in admin.follow(queued.id) if item is not None]
    assert isinstance(seen[0], Snapshot) and isinstance(seen[-1], Event) and seen[-1].event == "completed"


async def test_a_follower_that_falls_behind_the_hub_reads_on_from_redis(r: redis.Redis) -> None:
    """The hub holds at most PENDING_MAX entries for a follower that does not read; past that, the
    follower reads what it missed from the stream itself, and still gets every entry once."""
    settings = Settings(roles=ROLES)
    async with AsyncClient(settings) as client:
        job = await client.submit("DEMO")
        hub = streams.Hub(client.store, per_user=5, max_s=60)
        hub.start()
        try:
            await hub.ready()
            subscriber = hub.join(job.id, "reader@x.io")
            follow = Follow(client.store, job.id, None, subscriber, quiet_s=0.2)
            items = aiter(follow)
            first = await anext(items)
            assert isinstance(first, Snapshot)
            fields = {"job": job.id, "type": "DEMO", "user": job.user_id, "status": "queued", "event": "progress"}
            for _ in range(3):
                async with client.store.redis.pipeline(transaction=False) as pipe:
                    for _ in range(streams.PENDING_MAX // 2):
                        pipe.xadd(EVENTS, fields)  # type: ignore[arg-type]
                    await pipe.execute()
            await client.cancel(job.id)
            newest = r.xinfo_stream(EVENTS)["last-generated-id"]
            async with asyncio.timeout(10):  # the hub reading all of it
                while hub.position != newest:
                    await asyncio.sleep(0.01)
            assert subscriber.lost and len(subscriber.pending) < streams.PENDING_MAX, "it overflowed"
            got = [item async for item in items if isinstance(item, Event)]
        finally:
            await hub.stop()
    assert [e.id for e in got] == recorded_after(r, job.id, first.id) and got[-1].event == "cancelled"
    assert len(got) == 3 * (streams.PENDING_MAX // 2) + 1
