"""Every client method, for every role, against their own object, another user's and a missing one: what
README's "Security model" table says, enforced in runner (so the dashboard, CLI and API share it).

Outcomes: "ok" (answered, the object included), "hidden" (answered without the object), "missing" (exactly
what an unknown id gives: JobNotFound), "denied" (AccessDenied: the role may not do this at all)."""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.asyncio import Redis

from runner import AccessDenied, Client, JobNotFound, Settings
from runner.archive import operations
from runner.client.schedules import Schedule
from runner.notify.rules import AlertRule
from runner.reads.history import HistoryQuery
from runner.web import sources

ROLES = {"boss@x.io": "admin", "ann@x.io": "analyst", "*@x.io": "staff"}
ME = {"staff": "sam@x.io", "analyst": "ann@x.io", "admin": "boss@x.io"}
OTHER = "olga@x.io"
MISSING = "0" * 32
OTHER_SOURCE = "https://olga.example/"

Method = Callable[[Client, str], Any]


def included(found: Any, job_id: str) -> str:
    return "ok" if job_id in found else "hidden"


def ids(jobs: Any) -> list[str]:
    return [job.id for job in jobs]


def bulk_outcome(result: Any, job_id: str) -> str:
    """A bulk action reports each refusal in `errors` instead of raising: read it back as one outcome."""
    if result.done == [job_id]:
        return "ok"
    if "may not" in result.errors.get(job_id, ""):
        raise AccessDenied(result.errors[job_id])
    raise JobNotFound(result.errors.get(job_id, ""))


# Each method is called with the job it is about; it returns an outcome or raises.
READS: dict[str, Method] = {
    "get": lambda c, j: c.get(j).id == j and "ok",
    "job_or_archived": lambda c, j: c.job_or_archived(j).job.id == j and "ok",
    "wait_terminal": lambda c, j: c.wait_terminal(j, 0).id == j and "ok",
    "artifact": lambda c, j: c.artifact(j) is None and "ok",
    "job_usage": lambda c, j: c.job_usage(j) is not None and "ok",
    "follow": lambda c, j: next(iter(c.follow(j))) is not None and "ok",
    "get_many": lambda c, j: included(ids(c.get_many([j])), j),
    "list": lambda c, j: included(ids(c.list()), j),
    "page": lambda c, j: included(ids(c.page().jobs), j),
    "history": lambda c, j: included(ids(c.history(HistoryQuery(status=[])).jobs), j),
    "export_csv": lambda c, j: included("".join(c.export_csv(HistoryQuery(status=[]))), j),
    "live": lambda c, j: included([row.job.id for row in c.live().jobs], j),
    "events": lambda c, j: included([e.job for e in c.events().events], j),
    "deliveries": lambda c, j: c.deliveries(j) == [] and "ok",
}
ACTIONS: dict[str, Method] = {
    "cancel": lambda c, j: c.cancel(j).id == j and "ok",
    "retry": lambda c, j: c.retry(j).id == j and "ok",
    "rerun": lambda c, j: c.retry(j, payload={"duration_s": 0}).rerun_of == j and "ok",  # a new job, from j
    "cancel_many": lambda c, j: bulk_outcome(c.cancel_many([j]), j),
    "retry_many": lambda c, j: bulk_outcome(c.retry_many([j]), j),
    "submit_for": lambda c, j: c.submit("DEMO", {}, user=OTHER).user_id == OTHER and "ok",
}
GLOBAL: dict[str, Method] = {
    "list_of_others": lambda c, _: "ok" if c.list(user=OTHER) else "hidden",
    "count_of_others": lambda c, _: "ok" if c.count(status=[], user=OTHER) else "hidden",
    "submit": lambda c, _: c.submit("DEMO", {}).user_id == c.user and "ok",
    "metrics": lambda c, _: c.metrics("1h") is not None and "ok",
    "audit": lambda c, _: c.audit() is not None and "ok",
    "stats": lambda c, _: c.stats() is not None and "ok",
    "workers": lambda c, _: c.workers() is not None and "ok",
    "llm_status": lambda c, _: c.llm_status() is not None and "ok",
    "breakers": lambda c, _: c.breakers() is not None and "ok",
    "limits_of_others": lambda c, _: "ok" if f"user:{OTHER}" in c.limits() else "hidden",
    "schedule_payloads": lambda c, _: "ok" if c.schedules()[0].payload else "hidden",
    "set_limit": lambda c, _: c.set_limit("user", OTHER, 3) is None and "ok",
    "save_schedule": lambda c, _: c.save_schedule(Schedule(name="n2", type="DEMO", cron="0 1 * * *")) and "ok",
    "pause_schedule": lambda c, _: c.pause_schedule("nightly") and "ok",
    "run_schedule": lambda c, _: c.run_schedule("nightly") and "ok",
    "delete_schedule": lambda c, _: c.delete_schedule("nightly") is None and "ok",
    "sources_of_others": lambda c, _: "ok" if OTHER_SOURCE in {s.url for s in c.sources()} else "hidden",
    "own_sources": lambda c, _: "ok" if f"https://{c.user.split('@')[0]}.example/" in {s.url for s in c.sources()}
                                else "hidden",
    "enable_source": lambda c, _: c.enable_source(OTHER_SOURCE) and "ok",
    "reset_breaker": lambda c, _: c.reset_breaker("http://127.0.0.1:9/v1") is None and "ok",
    "retry_matching": lambda c, _: c.retry_matching() is not None and "ok",
    "archive_status": lambda c, _: c.archive_status().ok and "ok",
    "archive_backfill": lambda c, _: c.archive_backfill() >= 0 and "ok",
    "archive_prune": lambda c, _: c.archive_prune("2025-01-01") == 0 and "ok",
    # a user's notifications are their own: no method names another user (tests/notify/test_inbox.py)
    "profile": lambda c, _: c.profile().user == c.user and "ok",
    "set_profile": lambda c, _: c.set_profile(events=["completed"]).user == c.user and "ok",
    "notifications": lambda c, _: c.notifications().items == [] and "ok",
    "mark_read": lambda c, _: c.mark_read("all") == 0 and "ok",
    "unread_count": lambda c, _: c.unread_count() == 0 and "ok",
    "inbox_counts": lambda c, _: c.inbox_counts().unread == 0 and "ok",
    "delivery_health": lambda c, _: c.delivery_health().queued == 0 and "ok",
    "alert_rules": lambda c, _: [a.id for a in c.alert_rules()] == ["backlog"] and "ok",
    "alerts": lambda c, _: [a.rule.id for a in c.alerts()] == ["backlog"] and "ok",
    "set_alert_rule": lambda c, _: c.set_alert_rule(AlertRule(kind="no_worker")) and "ok",
    "delete_alert_rule": lambda c, _: c.delete_alert_rule("backlog") is None and "ok",
}

# (method, role) -> outcome on (own, other's, missing) for the per-object methods.
READ_OUTCOMES = {
    "staff": ("ok", "missing", "missing"),
    "analyst": ("ok", "ok", "missing"),
    "admin": ("ok", "ok", "missing"),
}
LISTING_OUTCOMES = {  # a listing never says "missing": the object is just not in it
    "staff": ("ok", "hidden", "hidden"),
    "analyst": ("ok", "ok", "hidden"),
    "admin": ("ok", "ok", "hidden"),
}
ACTION_OUTCOMES = {
    "staff": ("ok", "missing", "missing"),
    "analyst": ("denied", "denied", "denied"),
    "admin": ("ok", "ok", "missing"),
}
GLOBAL_OUTCOMES = {
    "staff": {"sources_of_others": "hidden", "list_of_others": "hidden", "count_of_others": "hidden", "submit": "ok",
              "metrics": "denied", "audit": "denied", "limits_of_others": "hidden", "schedule_payloads": "hidden",
              "retry_matching": "ok", "archive_status": "denied"},
    "analyst": {"sources_of_others": "hidden", "list_of_others": "ok", "count_of_others": "ok", "submit": "denied",
                "metrics": "ok", "audit": "denied", "limits_of_others": "ok", "schedule_payloads": "hidden",
                "retry_matching": "denied", "archive_status": "ok"},
    "admin": {"sources_of_others": "ok", "list_of_others": "ok", "count_of_others": "ok", "submit": "ok",
              "metrics": "ok", "audit": "ok", "limits_of_others": "ok", "schedule_payloads": "ok",
              "retry_matching": "ok", "archive_status": "ok"},
}
ADMIN_ONLY = {"enable_source", "set_limit", "save_schedule", "pause_schedule", "run_schedule",
              "delete_schedule", "reset_breaker", "archive_backfill", "archive_prune", "alert_rules", "alerts",
              "set_alert_rule", "delete_alert_rule"}
ANY_ROLE = {"stats", "workers", "llm_status", "breakers", "own_sources", "profile", "set_profile", "notifications",
            "mark_read", "unread_count", "inbox_counts", "delivery_health"}
LISTINGS = {"get_many", "list", "page", "history", "export_csv", "live", "events"}


def expected_per_object(method: str, role: str) -> tuple[str, str, str]:
    if method == "deliveries":  # names addresses: for those who may act on the job (owner, admin)
        return ("ok", "ok", "missing") if role == "admin" else ("ok", "missing", "missing")
    if method in ACTIONS:
        if method == "submit_for":
            return ("ok", "ok", "ok") if role == "admin" else ("denied",) * 3  # type: ignore[return-value]
        return ACTION_OUTCOMES[role]
    return LISTING_OUTCOMES[role] if method in LISTINGS else READ_OUTCOMES[role]


def expected_global(method: str, role: str) -> str:
    if method in ADMIN_ONLY:
        return "ok" if role == "admin" else "denied"
    if method in ANY_ROLE:
        return "ok"
    return GLOBAL_OUTCOMES[role][method]


def outcome(call: Callable[[], Any]) -> str:
    try:
        result = call()
    except JobNotFound:
        return "missing"
    except AccessDenied:
        return "denied"
    assert result in ("ok", "hidden", "missing"), result
    return str(result)


@pytest.fixture(autouse=True)
def archive_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """The archive on (SQLite in tmp), for the archive_* rows."""
    monkeypatch.setenv("TASKDECK_ARCHIVE", "true")
    monkeypatch.setenv("TASKDECK_DATA_DIR", str(tmp_path))
    yield
    operations.close_all()


@pytest.fixture
def world(redis_url: str, r: redis.Redis) -> Iterator[dict[str, str]]:
    """Per role: their own job and another user's (both cancelled, so cancel/retry can act), a schedule,
    and a limit override on the other user."""
    with Client(Settings(roles=ROLES)) as admin:
        jobs = {}
        for whose in ("own", "other"):
            for role, email in ME.items():
                job = admin.submit("DEMO", {"duration_s": 600}, user=email if whose == "own" else OTHER)
                jobs[f"{role}:{whose}"] = job.id
        admin.save_schedule(Schedule(name="nightly", type="DEMO", cron="0 3 * * *", payload={"duration_s": 5}))
        admin.set_limit("user", OTHER, 2)
        admin.set_alert_rule(AlertRule(id="backlog", kind="queue_depth", params={"over": 50}))
    for email in [*ME.values(), OTHER]:  # a source each, as their scrape jobs would leave it
        url = f"https://{email.split('@')[0]}.example/"
        asyncio.run(add_source(redis_url, sources.owner_of(email), url))
    yield jobs


async def add_source(url: str, owner: str, source: str) -> None:
    client = Redis.from_url(url, decode_responses=True)
    try:
        await sources.failed(client, "taskdeck:", owner, source, "page", "HTTP 500")
    finally:
        await client.aclose()


def client_for(role: str) -> Client:
    return Client(Settings(roles=ROLES), user=ME[role])  # type: ignore[arg-type]


@pytest.mark.parametrize("role", list(ME))
@pytest.mark.parametrize("method", [*READS, *ACTIONS])
def test_per_object_method(world: dict[str, str], role: str, method: str) -> None:
    call = {**READS, **ACTIONS}[method]
    with client_for(role) as client:
        if method in ("retry", "retry_many", "rerun"):
            with Client(Settings(roles=ROLES)) as admin:
                for whose in ("own", "other"):
                    admin.cancel(world[f"{role}:{whose}"])
        got = tuple(outcome(lambda j=job: call(client, j))
                    for job in (world[f"{role}:own"], world[f"{role}:other"], MISSING))
    assert got == expected_per_object(method, role)


@pytest.mark.parametrize("role", list(ME))
@pytest.mark.parametrize("method", list(GLOBAL))
def test_global_method(world: dict[str, str], role: str, method: str) -> None:
    with client_for(role) as client:
        assert outcome(lambda: GLOBAL[method](client, "")) == expected_global(method, role)


def test_the_matrix_covers_every_public_client_method() -> None:
    public = {name for name in dir(Client) if not name.startswith("_")}
    # rows are named for the method they call; these read or write nothing of anyone's (or are the
    # connection itself), or have their rows under another name (limits_of_others, schedule_payloads)
    covered = {*READS, *ACTIONS, *GLOBAL, "close", "principal", "types", "ping", "note", "last_event_id",
               "sources", "schedules", "limits", "count", "list"}
    assert public <= covered, f"methods with no row in the access matrix: {sorted(public - covered)}"
