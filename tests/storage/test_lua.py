"""The protocol between Python and the Lua scripts: the scripts spell no key name, status or TTL (they get
Python's own through store.render), the names they build are byte for byte keys.py's, and what they
answer decodes into an Outcome."""
from __future__ import annotations

import inspect
import re
import uuid
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
import redis

from runner.llm import budget
from runner.models import Attempt, Job, JobStatus, Priority, utcnow
from runner.storage import transitions
from runner.storage.keys import BUCKET_TTL_S, Keys, lua_string
from runner.storage.store import Store, render
from tests.conftest import ROOT

LUA_FILES = sorted((ROOT / "runner").rglob("*.lua"))
TOKENS = re.compile(r"""--[^\n]*|'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*\"""")


def literals(source: str) -> list[str]:
    """The string literals of a Lua source, comments left out."""
    return [token[1:-1] for token in TOKENS.findall(source) if not token.startswith("--")]


def code(source: str) -> str:
    return TOKENS.sub(lambda m: "" if m.group().startswith("--") else "''", source)


def key_names() -> tuple[set[str], set[str]]:
    """Every name keys.py gives out, without a prefix: whole names ("events"), and the fixed part of the
    names built per job, status, scope... ("job:", "idx:status:", "parked:")."""
    keys, whole, fragments = Keys("", "arq:queue"), set(), set()
    for name in dir(keys):
        value = getattr(keys, name)
        if name.startswith("_") or name == "lua":
            continue
        if isinstance(value, str):
            whole.add(value)
        elif callable(value):
            marks = [f"\0{i}\0" for i in range(len(inspect.signature(value).parameters))]
            fragments.add(value(*marks).split("\0")[0])
    return whole - {""}, fragments - {""}


def test_there_are_scripts_to_check() -> None:
    assert {path.name for path in LUA_FILES} >= {"transition.lua", "claim.lua", "lease.lua", "parking.lua",
                                                 "release.lua", "breaker.lua", "budget.lua"}


@pytest.mark.parametrize("path", LUA_FILES, ids=lambda path: path.name)
def test_no_script_spells_a_key_name_status_or_ttl(path: Path) -> None:
    source = path.read_text()
    whole, fragments = key_names()
    statuses = {status.value for status in JobStatus} | {priority.value for priority in Priority}
    found = [text for text in literals(source)
             if text in whole | statuses or any(fragment in text for fragment in fragments)]
    assert found == [], f"{path.name} spells {found}: take them from Python (store.render) instead"
    ttls = {str(ttl) for ttl in BUCKET_TTL_S.values()} | {"86400", str(budget.TTL_MS)}
    assert not [n for n in re.findall(r"\b\d+\b", code(source)) if n in ttls], f"{path.name} spells a TTL"


@pytest.mark.parametrize("prefix", ["taskdeck:", 'we"ird\\ prefix é\n:'])
def test_the_scripts_build_the_same_key_names_as_keys_py(r: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix, "q:ueue")
    source = ("return {K.all, K.queue, K.job('j1'), K.status('queued'), K.parked('user', 'a@x.io'), "
              "K.running('org', 'acme'), K.metrics('1m', 1700000040), K.limit_field('type', 'DEMO'), "
              "K.arq_in_progress('j1'), K.artifact('j1'), K.pending('high'), K.events, K.wake}")
    built = r.eval(render(keys, source), 0)
    expected = [keys.all, keys.queue, keys.job("j1"), keys.status("queued"), keys.parked("user", "a@x.io"),
                keys.running("org", "acme"), keys.metrics("1m", 1700000040), keys.limit_field("type", "DEMO"),
                keys.arq_in_progress("j1"), keys.artifact("j1"), keys.pending("high"), keys.events, keys.wake]
    assert built == expected


def test_lua_string_round_trips_any_text(r: redis.Redis) -> None:
    text = "quote\" back\\slash\nnew line é 日本 \0 end"
    assert r.eval(f"return {lua_string(text)}", 0) == text


def a_job(user: str = "a@x.io") -> Job:
    now = utcnow()
    return Job(id=uuid.uuid4().hex, type="DEMO", payload={}, user_id=user, status=JobStatus.queued,
               queued_at=now, updated_at=now, max_attempts=2)


async def test_outcomes_of_a_create(store: Store) -> None:
    first, second = a_job(), a_job()
    key = store.keys.idempotency("a@x.io", "k1")
    spec = transitions.create(first, store.keys, 30, by="a@x.io")
    spec["create"]["idempotency"] = [key, 60]
    created = await store.apply(first.id, spec)
    assert created.applied and created.status == ""
    again = await store.apply(first.id, transitions.create(first, store.keys, 30, by="a@x.io"))
    assert not again.applied and again.status == JobStatus.queued and again.first_id is None
    spec = transitions.create(second, store.keys, 30, by="a@x.io")
    spec["create"]["idempotency"] = [key, 60]
    duplicate = await store.apply(second.id, spec)
    assert not duplicate.applied and duplicate.first_id == first.id


async def test_a_used_up_rate_says_when_to_come_back(store: Store) -> None:
    rate: list[str | int] = [store.keys.rate("a@x.io"), 1, 3600]
    for n, job in enumerate([a_job(), a_job()]):
        spec = transitions.create(job, store.keys, 30, by="a@x.io")
        spec["rate"] = rate
        result = await store.apply(job.id, spec)
        assert result.applied is (n == 0)
    assert result.retry_after_s is not None and 3595 <= result.retry_after_s <= 3600


async def test_metric_buckets_keep_their_names_and_ttls(store: Store, r: redis.Redis) -> None:
    job = a_job()
    await store.apply(job.id, transitions.create(job, store.keys, 30, by="a@x.io"), job.queued_at)
    at = job.queued_at.timestamp()
    for resolution, size in (("1m", 60), ("1h", 3600)):
        key = f"taskdeck:m:{resolution}:{int(at // size * size)}"
        assert r.hget(key, "submitted") == "1"
        assert BUCKET_TTL_S[resolution] - 5 < r.ttl(key) <= BUCKET_TTL_S[resolution]


async def test_a_full_limit_parks_and_release_parked_puts_every_job_back(store: Store, r: redis.Redis) -> None:
    keys, jobs = store.keys, [a_job("p@x.io"), a_job("p@x.io")]
    for n, job in enumerate(jobs):
        await store.apply(job.id, transitions.create(job, keys, 30, by=job.user_id), job.queued_at)
        spec = transitions.start(job, "w1", (), utcnow(), keys.arq_in_progress(job.id), 5000, None, {"user": 0}, n)
        parked = await store.apply(job.id, spec)
        assert parked.parked and not parked.applied and parked.status == JobStatus.queued
    assert r.zrange(keys.parked("user", "p@x.io"), 0, -1, withscores=True) == [(j.id, n) for n, j in
                                                                              enumerate(jobs)]
    assert r.zscore(keys.queue, jobs[0].id) is None
    assert orjson.loads(r.hget(keys.job(jobs[0].id), "waiting_reason")) == "waiting: user limit 0 reached"
    wake = r.pubsub(ignore_subscribe_messages=True)
    wake.subscribe(keys.wake)
    assert wake.get_message(timeout=1) is None  # the subscription's own confirmation
    await store.release_parked("user", "p@x.io")
    assert r.zcard(keys.parked("user", "p@x.io")) == 0
    assert [r.zscore(keys.queue, job.id) for job in jobs] == [0, 1]
    assert [r.hexists(keys.job(job.id), "waiting_reason") for job in jobs] == [False, False]
    assert wake.get_message(timeout=1) is not None and wake.get_message(timeout=0.2) is None  # woken once
    await store.release_parked("user", "p@x.io")  # nothing left: no wake-up
    assert wake.get_message(timeout=0.2) is None
    wake.close()


async def test_a_job_leaving_processing_unparks_one_waiting_job(store: Store, r: redis.Redis) -> None:
    keys, (running, held) = store.keys, [a_job("q@x.io"), a_job("q@x.io")]
    for job in (running, held):
        await store.apply(job.id, transitions.create(job, keys, 30, by=job.user_id), job.queued_at)
    now = utcnow()
    started = await store.apply(running.id, transitions.start(running, "w", (), now, "k", 5000, None, {"user": 1}))
    assert started.applied and started.status == JobStatus.queued
    assert (await store.apply(held.id, transitions.start(held, "w", (), now, "k", 5000, None, {"user": 1}, 7))).parked
    job = running.model_copy(update={"status": JobStatus.processing, "attempts": 1, "started_at": now})
    record = Attempt(number=1, started_at=now, finished_at=now + timedelta(seconds=1), outcome="completed")
    done = await store.apply(running.id, transitions.complete(job, record, None, now, keys, 1000))
    assert done.applied and done.status == JobStatus.processing
    assert r.zscore(keys.queue, held.id) == 7 and r.zcard(keys.parked("user", "q@x.io")) == 0
