"""Every Redis key name Taskdeck gives out, pinned byte for byte (runner/storage/keys.py is the one place they
are spelled; data already in Redis must still read after any change there), and the modules that use them
writing and reading exactly those names."""
from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
import redis
from redis.asyncio import Redis

from runner.client.schedules import Scheduler
from runner.llm import usage
from runner.llm.breaker import Breaker
from runner.llm.budget import Budget
from runner.models import utcnow
from runner.policy import admission
from runner.reads import llm_status
from runner.settings import Settings
from runner.storage.keys import BUCKET_SECONDS, BUCKET_TTL_S, Keys, bucket_start
from runner.web import sources

P = "taskdeck:"
KEYS = Keys(P, "arq:queue")

# Every attribute of Keys that is a name, and what it is.
NAMES = {
    "prefix": "taskdeck:",
    "queue": "arq:queue",
    "all": "taskdeck:idx:all",
    "dead": "taskdeck:idx:dead",
    "expiry": "taskdeck:idx:expiry",
    "events": "taskdeck:events",
    "audit": "taskdeck:audit",
    "limits": "taskdeck:limits",
    "wake": "taskdeck:wake",
    "workers": "taskdeck:workers",
    "llm_endpoints": "taskdeck:llm:endpoints",
    "tokens": "taskdeck:tokens",
    "schedules": "taskdeck:schedules",
    "schedules_seeded": "taskdeck:schedules:seeded",
    "sources_all": "taskdeck:sources:all",
    "alert_rules": "taskdeck:alerts:rules",
    "token_secrets": "taskdeck:tokens:secrets",
    "notify_due": "taskdeck:notify:due",
    "notify_deliveries": "taskdeck:notify:deliveries",
    "notify_failing": "taskdeck:notify:failing",
    "notify_health": "taskdeck:notify:health",
    "abort": "arq:abort",
}

# Every method of Keys that builds a name: its arguments, and the name it builds.
BUILT = {
    "job": (("j1",), "taskdeck:job:j1"),
    "artifact": (("j1",), "taskdeck:artifact:j1"),
    "status": (("queued",), "taskdeck:idx:status:queued"),
    "type": (("DEMO",), "taskdeck:idx:type:DEMO"),
    "user": (("a@x.io",), "taskdeck:idx:user:a@x.io"),
    "pending": (("high",), "taskdeck:idx:pending:high"),
    "metrics": (("1m", 1700000040), "taskdeck:m:1m:1700000040"),
    "errors": ((1699999200,), "taskdeck:m:errors:1h:1699999200"),
    "idempotency": (("a@x.io", "k1"), "taskdeck:idem:user:a@x.io:k1"),
    "schedule_slot": (("nightly", "1700000000.0"), "taskdeck:idem:schedule:nightly:1700000000.0"),
    "rate": (("a@x.io",), "taskdeck:rate:a@x.io"),
    "parked": (("user", "a@x.io"), "taskdeck:parked:user:a@x.io"),
    "running": (("org", "acme"), "taskdeck:running:org:acme"),
    "limit_field": (("type", "DEMO"), "type:DEMO"),
    "worker": (("w1",), "taskdeck:worker:w1"),
    "duty": (("sweep",), "taskdeck:duty:sweep"),
    "llm_breaker": (("api.x.io/v1",), "taskdeck:llm:breaker:api.x.io/v1"),
    "llm_probe": (("api.x.io/v1",), "taskdeck:llm:breaker:api.x.io/v1:probe"),
    "llm_budget": (("api.x.io/v1",), "taskdeck:llm:budget:api.x.io/v1"),
    "llm_modes": (("api.x.io/v1",), "taskdeck:llm:modes:api.x.io/v1"),
    "llm_usage": (("j1",), "taskdeck:llm:usage:j1"),
    "llm_calls": (("j1",), "taskdeck:llm:calls:j1"),
    "checkpoints": (("j1",), "taskdeck:checkpoints:j1"),
    "spend": (("day:2030-01-07",), "taskdeck:spend:day:2030-01-07"),
    "source": (("user:a@x.io", "https://x.io/feed"), "taskdeck:source:user:a@x.io:https://x.io/feed"),
    "sources": (("org:acme",), "taskdeck:sources:org:acme"),
    "feed_seen": (("user:a@x.io", "https://x.io/feed"), "taskdeck:feed:seen:user:a@x.io:https://x.io/feed"),
    "feed_items": (("user:a@x.io", "https://x.io/feed"), "taskdeck:feed:items:user:a@x.io:https://x.io/feed"),
    "page": (("user:a@x.io", "https://x.io/a"), "taskdeck:page:user:a@x.io:https://x.io/a"),
    "alert_state": (("r1",), "taskdeck:alerts:state:r1"),
    "notify_subscription": (("j1",), "taskdeck:notify:sub:j1"),
    "notify_log": (("j1",), "taskdeck:notify:log:j1"),
    "notify_lane": (("j1:webhook:ab12",), "taskdeck:notify:lane:j1:webhook:ab12"),
    "inbox": (("a@x.io",), "taskdeck:inbox:ids:a@x.io"),
    "inbox_notes": (("a@x.io",), "taskdeck:inbox:notes:a@x.io"),
    "inbox_unread": (("a@x.io",), "taskdeck:inbox:unread:a@x.io"),
    "inbox_failed": (("a@x.io",), "taskdeck:inbox:failed:a@x.io"),
    "profile": (("a@x.io",), "taskdeck:profile:a@x.io"),
    "arq_queue": (("scraping",), "arq:queue:scraping"),
    "named_queue": (("scraping",), "arq:queue:scraping"),
    "arq_job": (("j1",), "arq:job:j1"),
    "arq_in_progress": (("j1",), "arq:in-progress:j1"),
    "arq_retry": (("j1",), "arq:retry:j1"),
    "arq_result": (("j1",), "arq:result:j1"),
}

AT = 1700000040.5  # in minute 1700000040 and hour 1699999200
OWNER, URL = "user:a@x.io", "https://x.io/feed"


@pytest.mark.parametrize("name", NAMES)
def test_each_name_is_pinned(name: str) -> None:
    assert getattr(KEYS, name) == NAMES[name]


@pytest.mark.parametrize("name", BUILT)
def test_each_built_name_is_pinned(name: str) -> None:
    args, expected = BUILT[name]
    assert getattr(KEYS, name)(*args) == expected


def test_every_name_keys_gives_out_is_pinned_here() -> None:
    public = {name for name in dir(KEYS) if not name.startswith("_")} - {"lua"}
    assert public == set(NAMES) | set(BUILT), "a name was added to or taken from Keys: pin it in this file"
    assert all(not callable(getattr(KEYS, name)) for name in NAMES)
    assert all(callable(getattr(KEYS, name)) for name in BUILT)
    assert all(len(inspect.signature(getattr(KEYS, name)).parameters) == len(args) for name, (args, _) in BUILT.items())


def test_the_prefix_is_all_that_a_deployment_changes() -> None:
    other = Keys("t2:", "arq:queue")
    for name, value in NAMES.items():
        assert getattr(other, name) == (value.replace(P, "t2:", 1) if value.startswith(P) else value), name
    for name, (args, value) in BUILT.items():
        assert getattr(other, name)(*args) == (value.replace(P, "t2:", 1) if value.startswith(P) else value), name


def test_bucket_sizes_ttls_and_starts_are_pinned() -> None:
    assert BUCKET_SECONDS == {"1m": 60, "1h": 3600}
    assert BUCKET_TTL_S == {"1m": 259200, "1h": 3024000}
    assert bucket_start("1m", AT) == 1700000040 and bucket_start("1h", AT) == 1699999200
    assert bucket_start("1m", 1700000040) == 1700000040 and bucket_start("1h", 1699999199.9) == 1699995600


def test_the_scheduler_uses_the_keys_name() -> None:
    assert Scheduler(SimpleNamespace(settings=SimpleNamespace(prefix=P))).key == "taskdeck:schedules"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    connection = Redis.from_url(redis_url, decode_responses=True)
    yield connection
    await connection.aclose()


async def test_llm_usage_goes_to_the_metric_buckets_and_the_jobs_own_keys(
        client: Redis, r: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SimpleNamespace(time=lambda: AT)
    monkeypatch.setattr(usage, "time", clock)
    monkeypatch.setattr(llm_status, "time", clock)
    call = usage.Call(model="m1", tokens_in=10, tokens_out=5, cost_usd=0.5, seconds=1.0, step="Draft")
    await usage.record(client, P, "j1", "DEMO", "a@x.io", call, retention_s=600, org="acme")
    assert set(r.keys("*")) == {"taskdeck:m:1m:1700000040", "taskdeck:m:1h:1699999200", "taskdeck:llm:usage:j1",
                                "taskdeck:llm:calls:j1", "taskdeck:spend:day:2023-11-14",
                                "taskdeck:spend:month:2023-11"}
    assert r.hget("taskdeck:spend:day:2023-11-14", "tokens:user:a@x.io") == "15"
    assert r.hget("taskdeck:spend:month:2023-11", "cost_usd:org:acme") == "0.5"
    assert 2 * 86400 - 5 < r.ttl("taskdeck:spend:day:2023-11-14") <= 2 * 86400
    assert 259200 - 5 < r.ttl("taskdeck:m:1m:1700000040") <= 259200
    assert 3024000 - 5 < r.ttl("taskdeck:m:1h:1699999200") <= 3024000
    assert r.hget("taskdeck:m:1h:1699999200", "llm_tokens:user:a@x.io") == "15"
    # ... and what reads them finds it there
    assert await admission.tokens_used(client, P, "a@x.io", AT) == 15
    settings = Settings()
    assert settings.prefix == P
    read = llm_status.job_usage(settings, "j1")
    assert [(s.step, s.calls, s.tokens_in) for s in read.steps] == [("Draft", 1, 10)] and len(read.calls) == 1
    for resolution in ("1m", "1h"):
        last = llm_status.usage_series(settings, resolution, 2)[-1]
        assert (last.calls, last.tokens_out, last.cost_by_model) == (1, 5, {"m1": 0.5})


async def test_the_breaker_and_budget_keep_their_names(client: Redis, r: redis.Redis) -> None:
    await Breaker(client, P, "api.x.io/v1", 1, 30).failed("boom")
    await Budget(client, P, "api.x.io/v1", 10, 1000).take(5)
    assert set(r.keys("*")) == {"taskdeck:llm:breaker:api.x.io/v1", "taskdeck:llm:endpoints",
                                "taskdeck:llm:budget:api.x.io/v1"}
    assert r.smembers("taskdeck:llm:endpoints") == {"api.x.io/v1"}
    settings = Settings()
    assert [(b.endpoint, b.failures) for b in llm_status.breakers(settings)] == [("api.x.io/v1", 1)]
    r.set("taskdeck:llm:breaker:api.x.io/v1:probe", "1")
    llm_status.reset_breaker(settings, "api.x.io/v1")
    assert not r.exists("taskdeck:llm:breaker:api.x.io/v1:probe")
    assert r.hget("taskdeck:llm:breaker:api.x.io/v1", "failures") == "0"


def test_the_learned_output_mode_is_read_from_its_name(r: redis.Redis) -> None:
    settings = Settings(llm_base_url="http://127.0.0.1:9/v1", llm_model="m1", llm_structured_output="auto")
    assert llm_status.llm_status(settings).structured_output == "auto (json_schema)"
    r.hset("taskdeck:llm:modes:127.0.0.1:9/v1", "m1", "text")
    assert llm_status.llm_status(settings).structured_output == "auto (text)"


async def test_sources_keep_their_names(client: Redis, r: redis.Redis) -> None:
    await sources.succeeded(client, P, OWNER, URL, "feed")
    await sources.failed(client, P, OWNER, URL, "feed", "timeout")
    assert await sources.add_items(client, P, OWNER, URL, [sources.FeedItem(id="i1", title="One")])
    page = sources.Page(url=URL, final_url=URL, title="Feed", text="text", fetched_at=utcnow())
    await sources.save_page(client, P, OWNER, URL, page)
    assert set(r.keys("*")) == {f"taskdeck:source:{OWNER}:{URL}", f"taskdeck:sources:{OWNER}", "taskdeck:sources:all",
                                f"taskdeck:feed:seen:{OWNER}:{URL}", f"taskdeck:feed:items:{OWNER}:{URL}",
                                f"taskdeck:page:{OWNER}:{URL}"}
    assert r.zrange(f"taskdeck:sources:{OWNER}", 0, -1) == [URL]
    assert r.zrange("taskdeck:sources:all", 0, -1) == [sources.member(OWNER, URL)]
    # ... and what reads them finds it there
    assert (await sources.load(client, P, OWNER, URL)).failures == 1
    assert len(await sources.context(client, P, OWNER, [URL])) == 2
    settings = Settings()
    assert [s.url for s in sources.list_sources(settings, [OWNER])] == [URL]
    assert [s.url for s in sources.list_sources(settings, None)] == [URL]
    assert sources.holders(settings, URL) == [OWNER]
    assert sources.enable(settings, URL, OWNER).failures == 0
