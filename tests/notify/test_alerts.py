"""Alert rules (issue 16), driven by the real signals: a queue backlog behind a worker at its limit, a failing
type, a killed worker, a stalled job, an opened LLM breaker, an unhealthy source, LLM spend. Each incident fires
once and resolves once, however many evaluators run; rules are admins' only, their targets checked at set time."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from runner import AccessDenied, Client, InvalidPayload, JobNotFound, Settings
from runner.llm.breaker import Breaker
from runner.llm.usage import Call, record
from runner.notify import alerts
from runner.notify.alerts import AlertState, advance
from runner.notify.model import Channel, Target
from runner.notify.rules import SUGGESTED, AlertRule, rule
from runner.notify.signals import Verdict
from runner.storage.keys import Keys
from runner.storage.store import Store
from runner.web import sources
from tests.conftest import ROOT, WorkerFactory
from tests.notify.receivers import Receiver, SMTPServer, receiver, smtp_server
from tests.polling import wait_until

KEYS = Keys("taskdeck:")
ADMIN = "admin@local"
INBOX = [Target(channel=Channel.inbox, address=ADMIN)]
__all__ = ["receiver", "smtp_server"]  # fixtures
FAST = {"TASKDECK_ALERT_INTERVAL_S": "0.2"}  # a worker evaluates once per heartbeat (lease_s 3: every 1 s)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def state(r: redis.Redis, rule_id: str) -> dict[str, Any]:
    raw = r.get(KEYS.alert_state(rule_id))
    return json.loads(raw) if raw else {"state": "ok", "incidents": 0, "checked_at": None}  # type: ignore[arg-type]


def evaluated_after(r: redis.Redis, rule_id: str, at: datetime) -> dict[str, Any] | None:
    """The rule's state once an evaluation started after `at` has written it."""
    found = state(r, rule_id)
    checked = found["checked_at"]
    return found if checked and datetime.fromisoformat(checked) > at else None


def in_state(r: redis.Redis, rule_id: str, wanted: str) -> dict[str, Any] | None:
    found = state(r, rule_id)
    return found if found["state"] == wanted else None


def said(r: redis.Redis, rule_id: str) -> list[str]:
    """The events of `rule_id`'s notifications in the admin's inbox (the real one, notify/inbox.py), oldest first."""
    notes = [json.loads(raw) for raw in r.hvals(KEYS.inbox_notes(ADMIN))]  # type: ignore[union-attr]
    mine = [n for n in notes if n["kind"] == "alert" and f"(rule {rule_id}, " in n["body"]]
    return [n["event"] for n in sorted(mine, key=lambda n: n["created_at"])]


# -- the state machine, on its own -----------------------------------------------------------------------


def walk(found: AlertRule, steps: list[tuple[float, bool]]) -> list[tuple[str, str | None]]:
    """(state, event) after each (seconds after T0, condition)."""
    current, seen = AlertState(), []
    for at_s, condition in steps:
        current, event = advance(current, Verdict(condition, "d", "/live"), found, T0 + timedelta(seconds=at_s))
        seen.append((current.state, event))
    return seen


def test_a_condition_must_hold_for_s_before_it_fires_and_clears_with_one_resolution() -> None:
    found = AlertRule(kind="no_worker", for_s=60, repeat_s=0)
    assert walk(found, [(0, True), (30, True), (59, True), (60, True), (600, True), (601, False), (700, False)]) == [
        ("pending", None), ("pending", None), ("pending", None), ("firing", "firing"), ("firing", None),
        ("resolved", "resolved"), ("resolved", None)]


def test_a_blip_shorter_than_for_s_says_nothing() -> None:
    found = AlertRule(kind="no_worker", for_s=60)
    assert walk(found, [(0, True), (30, False), (40, True), (99, True), (100, True)]) == [
        ("pending", None), ("ok", None), ("pending", None), ("pending", None), ("firing", "firing")]


def test_while_firing_it_is_said_again_only_after_repeat_s() -> None:
    found = AlertRule(kind="no_worker", repeat_s=100)
    events = [event for _, event in walk(found, [(0, True), (50, True), (99, True), (100, True), (150, True),
                                                  (200, True), (201, False), (202, True)])]
    assert events == ["firing", None, None, "firing", None, "firing", "resolved", "firing"]


def test_an_incident_says_since_when_it_began() -> None:
    found = AlertRule(kind="no_worker", for_s=60, name="nobody home")
    current, _ = advance(AlertState(), Verdict(True, "no live worker", "/workers"), found, T0)
    current, event = advance(current, Verdict(True, "no live worker", "/workers"), found, T0 + timedelta(seconds=90))
    assert event == "firing" and current.incidents == 1
    note = alerts.notification(found, current, "firing", T0 + timedelta(seconds=90))
    assert note.kind == "alert" and note.event == "firing" and note.since == T0 and note.link == "/workers"
    assert "nobody home" in note.title and "no live worker" in note.body


# -- rules: validation and who may touch them -----------------------------------------------------------


def test_params_are_checked_per_kind() -> None:
    assert rule("queue_depth", {"over": "7"}).params == {"queue": "default", "over": 7}
    assert rule("failure_rate", {}).params == {"over_pct": 10.0, "window_s": 900.0, "min_count": 10}
    for kind, params in (("queue_depth", {"threshold": 5}), ("llm_spend", {}), ("failure_rate", {"over_pct": 101}),
                         ("no_such_kind", {})):
        with pytest.raises(InvalidPayload, match="alert rule"):
            rule(kind, params)


def test_targets_are_checked_by_the_outbound_policy_when_the_rule_is_set(redis_url: str) -> None:
    hook = [Target(channel=Channel.webhook, address="http://127.0.0.1:9/hook")]
    with Client() as admin:
        with pytest.raises(InvalidPayload, match="private address 127.0.0.1.*TASKDECK_FETCH_ALLOW"):
            admin.set_alert_rule(AlertRule(kind="no_worker", targets=hook))
        with pytest.raises(InvalidPayload, match="not an email address"):
            admin.set_alert_rule(AlertRule(kind="no_worker", targets=[Target(channel=Channel.email, address="x")]))
        with pytest.raises(InvalidPayload, match="no queue 'other'"):
            admin.set_alert_rule(AlertRule(kind="queue_depth", params={"queue": "other"}))
        assert admin.alert_rules() == []
    with Client(Settings(fetch_allow=["127.0.0.1"])) as admin:
        saved = admin.set_alert_rule(AlertRule(kind="no_worker", targets=hook))
        assert admin.alert_rules() == [saved] and saved.name == "no worker"
        assert [a.status.state for a in admin.alerts()] == ["ok"]
        admin.delete_alert_rule(saved.id)
        assert admin.alert_rules() == []
        with pytest.raises(JobNotFound, match="no alert rule"):
            admin.delete_alert_rule(saved.id)


def test_only_admins_read_or_change_rules(redis_url: str) -> None:
    roles = {"boss@x.io": "admin", "ann@x.io": "analyst", "*@x.io": "staff"}
    with Client(Settings(roles=roles), user="boss@x.io") as admin:  # type: ignore[arg-type]
        saved = admin.set_alert_rule(AlertRule(kind="no_worker", targets=INBOX))
    for user in ("sam@x.io", "ann@x.io"):
        with Client(Settings(roles=roles), user=user) as other:  # type: ignore[arg-type]
            for call in (other.alert_rules, other.alerts, lambda: other.delete_alert_rule(saved.id),
                         lambda: other.set_alert_rule(AlertRule(kind="no_worker"))):
                with pytest.raises(AccessDenied):
                    call()


def test_the_suggested_rules_are_the_issues_and_switched_off() -> None:
    assert [(s.kind, s.params.get("over"), s.params.get("over_pct"), s.enabled) for s in SUGGESTED] == [
        ("queue_depth", 50, None, False), ("failure_rate", None, 10.0, False)]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


def test_the_cli_sets_lists_and_deletes_rules(redis_url: str) -> None:
    allow = {"TASKDECK_FETCH_ALLOW": '["127.0.0.1"]'}
    out = cli("alerts", "set", "--kind", "queue_depth", "--param", "over=5", "--to",
              f"inbox:{ADMIN},slack:http://127.0.0.1:9/slack", "--for", "60", "--repeat", "600", "--name", "Backlog",
              "--json", env=allow)
    assert out.returncode == 0, out.stderr
    saved = json.loads(out.stdout)
    assert saved["params"] == {"queue": "default", "over": 5} and saved["for_s"] == 60 and saved["repeat_s"] == 600
    assert [(t["channel"], t["address"]) for t in saved["targets"]] == [
        ("inbox", ADMIN), ("slack", "http://127.0.0.1:9/slack")]
    listed = json.loads(cli("alerts", "--json").stdout)
    assert [(a["rule"]["id"], a["rule"]["name"], a["status"]["state"]) for a in listed] == [
        (saved["id"], "Backlog", "ok")]
    assert "Backlog" in cli("alerts", "list").stdout

    refused = cli("alerts", "set", "--kind", "no_worker", "--to", "webhook:http://127.0.0.1:9/x")
    assert refused.returncode == 2 and "private address" in refused.stderr and refused.stdout == ""
    bad = cli("alerts", "set", "--kind", "queue_depth", "--param", "over")
    assert bad.returncode == 2 and "NAME=VALUE" in bad.stderr
    staff = cli("alerts", "--as", "sam@x.io", env={"TASKDECK_ROLES": '{"*@x.io": "staff"}'})
    assert staff.returncode == 2 and "may not" in staff.stderr

    assert json.loads(cli("alerts", "delete", saved["id"], "--json").stdout) == {"deleted": saved["id"]}
    again = cli("alerts", "delete", saved["id"])
    assert again.returncode == 2 and "no alert rule" in again.stderr


# -- real signals, evaluated by real workers --------------------------------------------------------------


def test_a_queue_backlog_fires_once_and_resolves_once_with_two_evaluators(start_worker: WorkerFactory,
                                                                         r: redis.Redis) -> None:
    with Client() as admin:
        admin.set_alert_rule(AlertRule(id="backlog", kind="queue_depth", params={"over": 2}, for_s=1, targets=INBOX))
        for _ in range(2):
            start_worker(TASKDECK_MAX_JOBS="1", **FAST)
        jobs = [admin.submit("TEST_SLEEP", {"seconds": 120}) for _ in range(6)]  # 2 run, 4 wait
        firing = wait_until(lambda: in_state(r, "backlog", "firing"), 20, "the backlog alert to fire")
        assert "4 jobs waiting in queue default" in firing["detail"] and firing["link"] == "/live"
        held = datetime.fromisoformat(firing["fired_at"]) - datetime.fromisoformat(firing["since"])
        assert held >= timedelta(seconds=1)  # for_s
        for job in jobs:
            admin.cancel(job.id)
        resolved = wait_until(lambda: in_state(r, "backlog", "resolved"), 20, "the backlog alert to resolve")
        wait_until(lambda: evaluated_after(r, "backlog", datetime.fromisoformat(resolved["checked_at"])), 10,
                   "another evaluation")
        assert state(r, "backlog")["incidents"] == 1 and said(r, "backlog") == ["firing", "resolved"]


def test_a_failing_type_fires_once_past_its_minimum_and_resolves(worker: subprocess.Popen[bytes],
                                                                 r: redis.Redis) -> None:
    with Client() as admin:
        admin.set_alert_rule(AlertRule(id="failing", kind="failure_rate", targets=INBOX,
                                       params={"over_pct": 10, "min_count": 3, "window_s": 600}))
        one = admin.submit("TEST_FATAL", {})
        done = admin.wait_terminal(one.id, 10)
        assert done.status == "failed" and done.completed_at is not None
        ok = wait_until(lambda: evaluated_after(r, "failing", done.completed_at), 10, "an evaluation after it failed")
        assert ok["state"] == "ok" and "100.0 % of 1 finished" in ok["detail"]  # 1 of 1 is under min_count

        for job in [admin.submit("TEST_FATAL", {}) for _ in range(2)]:
            admin.wait_terminal(job.id, 10)
        firing = wait_until(lambda: in_state(r, "failing", "firing"), 10, "the failure-rate alert to fire")
        assert "100.0 % of 3 finished" in firing["detail"] and firing["link"] == "/metrics"

        for job in [admin.submit("TEST_SLEEP", {"seconds": 0}) for _ in range(30)]:
            admin.wait_terminal(job.id, 20)
        resolved = wait_until(lambda: in_state(r, "failing", "resolved"), 10, "the failure-rate alert to resolve")
        assert "9.1 % of 33 finished" in resolved["detail"] and resolved["incidents"] == 1
        assert said(r, "failing") == ["firing", "resolved"]


def test_a_killed_worker_fires_no_worker_from_the_api_server_and_a_new_one_resolves_it(
        start_worker: WorkerFactory, own_api: Any, r: redis.Redis) -> None:
    with Client() as admin:
        admin.set_alert_rule(AlertRule(id="nobody", kind="no_worker", targets=INBOX))
    first = start_worker(**FAST)
    wait_until(lambda: r.zcount(KEYS.workers, "-inf", "+inf"), 30, "the worker to beat")
    own_api(**FAST)  # it evaluates too: with no worker left, only it can say so
    since = datetime.now(UTC)
    ok = wait_until(lambda: evaluated_after(r, "nobody", since), 10, "an evaluation with a worker alive")
    assert ok["state"] == "ok"

    first.send_signal(signal.SIGKILL)
    first.wait()
    firing = wait_until(lambda: in_state(r, "nobody", "firing"), 15, "the no-worker alert to fire")
    assert firing["link"] == "/workers" and "no live worker" in firing["detail"]

    start_worker(**FAST)
    resolved = wait_until(lambda: in_state(r, "nobody", "resolved"), 30, "the no-worker alert to resolve")
    assert resolved["incidents"] == 1 and said(r, "nobody") == ["firing", "resolved"]


def test_a_stalled_job_fires_with_its_page_and_resolves_when_it_ends(start_worker: WorkerFactory,
                                                                      r: redis.Redis) -> None:
    with Client() as admin:
        admin.set_alert_rule(AlertRule(id="stalled", kind="job_stalled", targets=INBOX))
        start_worker(TASKDECK_STALLED_AFTER_S="1", **FAST)
        job = admin.submit("TEST_SLEEP", {"seconds": 6})  # one step, then no change for 6 s
        firing = wait_until(lambda: in_state(r, "stalled", "firing"), 15, "the stalled-job alert to fire")
        assert firing["link"] == f"/job?id={job.id}" and job.id in firing["detail"]
        assert admin.wait_terminal(job.id, 30).status == "completed"
        resolved = wait_until(lambda: in_state(r, "stalled", "resolved"), 10, "the stalled-job alert to resolve")
        assert resolved["incidents"] == 1 and said(r, "stalled") == ["firing", "resolved"]


def test_an_open_llm_breaker_fires_and_resetting_it_resolves(worker: subprocess.Popen[bytes], redis_url: str,
                                                             r: redis.Redis) -> None:
    endpoint = "127.0.0.1:9/v1"

    async def trip() -> None:
        client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
        breaker = Breaker(client, "taskdeck:", endpoint, failures=Settings().llm_breaker_failures, cooldown_s=600)
        try:
            for _ in range(Settings().llm_breaker_failures):
                await breaker.failed("connection refused")
        finally:
            await client.aclose()

    with Client() as admin:
        admin.set_alert_rule(AlertRule(id="breaker", kind="breaker_open", targets=INBOX))
        asyncio.run(trip())
        assert [b.state for b in admin.breakers()] == ["open"]
        firing = wait_until(lambda: in_state(r, "breaker", "firing"), 15, "the breaker alert to fire")
        assert endpoint in firing["detail"] and "connection refused" in firing["detail"]
        admin.reset_breaker(endpoint)
        resolved = wait_until(lambda: in_state(r, "breaker", "resolved"), 15, "the breaker alert to resolve")
        assert resolved["incidents"] == 1 and said(r, "breaker") == ["firing", "resolved"]


# -- signals that need no worker, evaluated here ------------------------------------------------------------


async def test_an_unhealthy_source_fires_and_re_enabling_it_resolves(store: Store, r: redis.Redis) -> None:
    url, owner = "https://feeds.example/rss", sources.owner_of("sam@x.io")
    with Client() as admin:
        admin.set_alert_rule(AlertRule(id="sources", kind="source_unhealthy", targets=INBOX))
    assert await alerts.evaluate(store) == {}
    for _ in range(sources.UNHEALTHY_AFTER):
        await sources.failed(store.redis, "taskdeck:", owner, url, "feed", "HTTP 503")
    assert await alerts.evaluate(store) == {"sources": "firing"}
    assert await alerts.evaluate(store) == {}
    assert url in state(r, "sources")["detail"] and "HTTP 503" in state(r, "sources")["detail"]
    await asyncio.to_thread(sources.enable, store.settings, url, owner)
    assert await alerts.evaluate(store) == {"sources": "resolved"}
    assert await alerts.evaluate(store) == {}
    assert said(r, "sources") == ["firing", "resolved"]


async def test_llm_spend_over_budget_fires_and_resolves_once_the_window_passes(store: Store, r: redis.Redis) -> None:
    with Client() as admin:
        admin.set_alert_rule(AlertRule(id="spend", kind="llm_spend", params={"budget_usd": 1, "window_s": 3600},
                                       targets=INBOX, repeat_s=0))
    call = Call(model="m", tokens_in=1000, tokens_out=1000, cost_usd=0.75, seconds=1)
    await record(store.redis, "taskdeck:", "j1", "DEMO", "sam@x.io", call, 3600)
    assert await alerts.evaluate(store) == {}
    await record(store.redis, "taskdeck:", "j2", "DEMO", "sam@x.io", call, 3600)
    assert await alerts.evaluate(store) == {"spend": "firing"}
    assert "$1.50" in state(r, "spend")["detail"]
    later = datetime.now(UTC).timestamp() + 2 * 3600
    assert await alerts.evaluate(store, now=later) == {"spend": "resolved"}
    assert said(r, "spend") == ["firing", "resolved"]


async def test_a_disabled_rule_that_was_firing_resolves_and_a_deleted_one_says_nothing(store: Store) -> None:
    with Client() as admin:
        found = admin.set_alert_rule(AlertRule(id="nobody", kind="no_worker", targets=INBOX))
        assert await alerts.evaluate(store) == {"nobody": "firing"}  # no worker runs in this test
        admin.set_alert_rule(found.model_copy(update={"enabled": False}))
        assert await alerts.evaluate(store) == {"nobody": "resolved"}
        assert await alerts.evaluate(store) == {}
        admin.set_alert_rule(found)
        assert await alerts.evaluate(store) == {"nobody": "firing"}
        admin.delete_alert_rule(found.id)
        assert await alerts.evaluate(store) == {}
        assert admin.alerts() == []


async def test_overlapping_evaluators_say_each_change_once(store: Store, r: redis.Redis) -> None:
    with Client() as admin:
        admin.set_alert_rule(AlertRule(id="nobody", kind="no_worker", targets=INBOX))
    answers = await asyncio.gather(*(alerts.evaluate(store) for _ in range(8)))
    assert [a for a in answers if a] == [{"nobody": "firing"}]
    assert said(r, "nobody") == ["firing"]


async def test_while_it_fires_it_is_said_again_after_repeat_s(store: Store, r: redis.Redis) -> None:
    with Client() as admin:
        admin.set_alert_rule(AlertRule(id="nobody", kind="no_worker", targets=INBOX, repeat_s=60))
    now = datetime.now(UTC).timestamp()
    assert await alerts.evaluate(store, now=now) == {"nobody": "firing"}
    assert await alerts.evaluate(store, now=now + 30) == {}
    assert await alerts.evaluate(store, now=now + 61) == {"nobody": "firing"}
    titles = sorted((json.loads(raw)["created_at"], json.loads(raw)["title"])
                    for raw in r.hvals(KEYS.inbox_notes(ADMIN)))  # type: ignore[union-attr]
    assert [title for _, title in titles] == ["Alert: no worker", "Still firing: no worker"]
    assert state(r, "nobody")["incidents"] == 1


def test_an_alert_reaches_email_and_slack_through_the_workers_outbox(start_worker: WorkerFactory, r: redis.Redis,
                                                                     smtp_server: SMTPServer,
                                                                     receiver: Receiver) -> None:
    """One incident, end to end: a real backlog, a worker evaluates the rule, the outbox sends a firing and a
    resolution mail over SMTP and posts both to a Slack-compatible receiver."""
    allow = {"TASKDECK_FETCH_ALLOW": '["127.0.0.1"]', "TASKDECK_NOTIFY_BACKOFF_S": "0.05"}
    with Client(Settings(fetch_allow=["127.0.0.1"])) as admin:
        targets = [Target(channel=Channel.email, address="oncall@x.io"),
                   Target(channel=Channel.slack, address=f"{receiver.url}/slack")]
        admin.set_alert_rule(AlertRule(id="mail", kind="queue_depth", params={"over": 1}, targets=targets))
        start_worker(TASKDECK_MAX_JOBS="1", **FAST, **allow, **smtp_server.settings)
        jobs = [admin.submit("TEST_SLEEP", {"seconds": 120}) for _ in range(3)]  # 1 runs, 2 wait
        wait_until(lambda: len(smtp_server.mailbox.messages) >= 1 and receiver.at("/slack"), 30, "the firing notice")
        for job in jobs:
            admin.cancel(job.id)
        wait_until(lambda: len(smtp_server.mailbox.messages) >= 2 and len(receiver.at("/slack")) >= 2, 30,
                   "the resolution")
    subjects = [str(m["subject"]) for m in smtp_server.mailbox.messages]
    assert subjects == ["Alert: queue depth", "Resolved: queue depth"]
    assert smtp_server.mailbox.recipients == [["oncall@x.io"], ["oncall@x.io"]]
    texts = [post.json["text"] for post in receiver.at("/slack")]
    assert len(texts) == 2 and "2 jobs waiting in queue default" in texts[0] and "resolved" in texts[1].lower(), texts
    assert state(r, "mail")["incidents"] == 1
