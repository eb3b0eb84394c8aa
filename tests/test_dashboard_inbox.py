"""Notifications on the dashboard (issue 16): the sidebar's bell, the Inbox and Profile pages, "Notify me" and
the callback URL on Submit, a job's delivery log, the outbox's health and the alert rules' state on Workers,
and the alert rules editor on Settings. Notices reach the inbox through runner's own path (the job-end hook
reading the event stream, the outbox, the alert evaluator); the last test drives the real dashboard and a real
worker in Chromium."""
from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from runner import AsyncClient, Client, Settings
from runner.models import utcnow
from runner.notify import alerts, delivery, outbox
from runner.notify.job_end import Hook, ensure_group
from runner.notify.model import Channel, Notification, Target
from runner.notify.rules import AlertRule
from runner.storage.store import Store
from tests.browser import CHROMIUM
from tests.conftest import free_port
from tests.dashboard_fixtures import button, drive, open_page, texts
from tests.polling import wait_until
from tests.test_dashboard_inject import HOSTILE, Tab, assert_inert, assert_page_literal, tab  # noqa: F401  (a fixture)

ME = "admin@local"  # who acts in local mode (no sign-in configured)
ROLES = {"sam@x.io": "staff", "ann@x.io": "analyst", "*@boss.io": "admin"}


def run(coroutine_function: Any) -> Any:
    """Run `coroutine_function(store)` on a Store with the environment's settings (as a worker would)."""
    async def go() -> Any:
        async with AsyncClient() as ac:
            return await coroutine_function(ac.store)
    return asyncio.run(go())


def note(title: str, event: str = "failed", body: str = "", link: str | None = None, minutes_ago: float = 0,
         kind: str = "job") -> Notification:
    at = utcnow() - timedelta(minutes=minutes_ago)
    job = uuid.uuid4().hex
    return Notification(id=uuid.uuid4().hex, kind=kind, event=event, title=title, body=body,  # type: ignore[arg-type]
                        link=f"/job?id={job}" if link is None else link, job_id=job if kind == "job" else None,
                        since=at, created_at=at)


def put(user: str, *notes: Notification) -> None:
    """Deliver `notes` to `user`'s inbox through the outbox, as the job-end hook and the alert evaluator do."""
    async def go(store: Store) -> None:
        for each in notes:
            await outbox.enqueue(store, each, [Target(channel=Channel.inbox, address=user)])
    run(go)


def listen() -> None:
    """Make the `notify` consumer group (a worker does at start): job ends from now on are told."""
    run(ensure_group)


def tell() -> int:
    """One pass of the job-end hook, as a worker's notify task makes every second."""
    return int(run(lambda store: Hook(store, "test-hook").run_once()))


def bell(at: AppTest) -> str:
    links = [p.proto.label for p in at.sidebar.get("page_link")]
    found = [label for label in links if label.startswith("Inbox")]
    assert found, f"no bell in the sidebar; links: {links}"
    return found[0]


def titles(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if "-badge[" in m.value]


def page_links(at: AppTest) -> list[tuple[str, str]]:
    return [(p.proto.label, p.proto.page) for p in at.main.get("page_link")]


# --- the bell and the inbox -------------------------------------------------------------------------------------

def test_the_bell_counts_unread_and_failed_since_looked_on_every_page(client: Client) -> None:
    at = open_page("live")
    assert bell(at) == "Inbox · nothing unread"
    assert [p.proto.page for p in at.sidebar.get("page_link") if p.proto.label.startswith("Inbox")] == ["inbox"]
    put(ME, note("Job DEMO a failed"), note("Job DEMO b completed", event="completed"))
    put("bob@x.io", note("Job DEMO c failed"))  # someone else's: not counted
    for page in ("live", "history", "workers", "settings", "profile"):
        assert bell(open_page(page)) == "Inbox · 2 unread · 1 failed since you last looked", page
    open_page("inbox")  # looking at the inbox resets "failed since you last looked", not "unread"
    assert client.inbox_counts().model_dump() == {"unread": 2, "failed_since_looked": 0}
    assert bell(open_page("live")) == "Inbox · 2 unread"


def test_the_inbox_lists_newest_first_with_links_and_marks_read(client: Client) -> None:
    old = note("Job DEMO 11111111 failed", body="DemoFailure: first line", minutes_ago=5)
    new = note("Job DEMO 22222222 completed", event="completed", body="It is completed.", minutes_ago=1)
    alert = note("Alert: Queue depth over 50", event="firing", body="60 jobs waiting", link="/workers", kind="alert",
                 minutes_ago=3)
    odd = note("Alert: odd link", event="firing", link="https://evil.example/x", kind="alert", minutes_ago=4)
    put(ME, old, new, alert, odd)
    at = open_page("inbox")
    assert titles(at) == [f":blue-badge[unread] **`{t}`**" for t in (new.title, alert.title, odd.title, old.title)]
    assert [t.value for t in at.text] == ["It is completed.", "60 jobs waiting", "DemoFailure: first line"]
    assert page_links(at) == [("Open the job", "job"), ("Open Workers", "workers"), ("Open the job", "job")]
    assert [p.proto.query_string for p in at.main.get("page_link")] == [f"id={new.job_id}", "", f"id={old.job_id}"]
    assert "4 unread in all" in texts(at)

    at.button(key=f"read:{old.id}").click().run()
    assert client.unread_count() == 3 and bell(at) == "Inbox · 3 unread"
    assert titles(at)[-1] == f":gray-badge[read] **`{old.title}`**" and at.button(key=f"read:{old.id}").disabled
    at.toggle(key="inbox_unread").set_value(True).run()
    assert len(titles(at)) == 3
    button(at, "Mark all read").click().run()
    assert client.unread_count() == 0 and bell(at) == "Inbox · nothing unread"
    assert "Nothing unread." in texts(at)
    at.toggle(key="inbox_unread").set_value(False).run()
    assert all("read]" in t and "unread" not in t for t in titles(at)) and len(titles(at)) == 4
    # another session (another browser, another device) reads the same inbox
    again = open_page("inbox")
    assert len(titles(again)) == 4 and "0 unread in all" in texts(again)


def test_the_inbox_pages_with_the_cursor(client: Client) -> None:
    notes = [note(f"Job DEMO {i:08d} completed", event="completed", minutes_ago=100 - i) for i in range(25)]
    put(ME, *notes)
    at = open_page("inbox")
    at.selectbox(key="inbox_size").set_value(20).run()
    first = titles(at)
    assert len(first) == 20 and f"{notes[-1].title}" in first[0] and "page 1" in texts(at)
    button(at, "Older").click().run()
    second = titles(at)
    assert len(second) == 5 and notes[0].title in second[-1] and "page 2" in texts(at)
    assert button(at, "Older").disabled
    button(at, "Newer").click().run()
    assert titles(at) == first and button(at, "Newer").disabled


def test_inbox_text_from_a_failed_job_is_shown_literally(client: Client) -> None:
    listen()
    job = client.submit("TEST_STEP_TEXT", {"text": "x"})
    drive(job.id, "failed", error=f"{HOSTILE}\nsecond line")
    assert tell() == 1
    at = open_page("inbox")
    [item] = client.notifications().items
    assert item.body == HOSTILE and item.link == f"/job?id={job.id}"
    assert [t.value for t in at.text] == [HOSTILE]
    assert page_links(at) == [("Open the job", "job")]
    assert_page_literal(at, shown=None)


def test_a_notice_for_a_job_opens_the_job_page(client: Client) -> None:
    listen()
    job = client.submit("DEMO", {"fail_always": True})
    drive(job.id, "failed", error="DemoFailure: boom")
    tell()
    at = open_page("inbox")
    assert titles(at) == [f":blue-badge[unread] **`Job DEMO {job.id[:8]} failed`**"]
    [link] = at.main.get("page_link")
    assert (link.proto.page, link.proto.query_string) == ("job", f"id={job.id}")
    job_page = open_page(link.proto.page, id=job.id)  # what following the link opens
    assert f"DEMO · {job.id[:8]}" in [t.value for t in job_page.title]


# --- profile ----------------------------------------------------------------------------------------------------

def test_profile_saves_defaults_and_shows_refusals_as_runner_says(client: Client) -> None:
    at = open_page("profile")
    assert at.multiselect(key="profile_events").value == ["failed"]
    assert at.multiselect(key="profile_via").value == ["inbox"]
    secret = client.profile().webhook_secret
    shown = [c.value for c in at.code]
    assert shown == [f"whsec_…{secret[-4:]}"] and secret not in shown
    at.toggle(key="profile_show_secret").set_value(True).run()
    assert [c.value for c in at.code] == [secret]

    at.text_input(key="profile_webhook").set_value("http://127.0.0.1:9/hook")
    button(at, "Save profile").click().run()
    assert any("private address" in e.value or "refused" in e.value for e in at.error), [e.value for e in at.error]
    assert client.profile().webhook_url is None
    assert at.text_input(key="profile_webhook").value == "http://127.0.0.1:9/hook"  # kept, to be corrected

    at.text_input(key="profile_webhook").set_value("")
    at.text_input(key="profile_email").set_value("Ops.Alerts@X.io")
    at.multiselect(key="profile_events").set_value(["completed", "failed"])
    at.multiselect(key="profile_via").set_value(["inbox", "email"])
    button(at, "Save profile").click().run()
    saved = client.profile()
    assert (saved.email, saved.events, saved.via) == ("ops.alerts@x.io", ["completed", "failed"], ["email", "inbox"])
    assert at.text_input(key="profile_email").value == "ops.alerts@x.io"
    assert "no SMTP server is set" in texts(at)

    at.text_input(key="profile_email").set_value("not an address")
    button(at, "Save profile").click().run()
    assert any("not an email address" in e.value for e in at.error)
    assert client.profile().email == "ops.alerts@x.io"

    button(at, "Rotate now").click().run()
    assert client.profile().webhook_secret != secret
    assert client.profile().email == "ops.alerts@x.io"


def test_profile_is_each_users_own(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKDECK_ROLES", json.dumps(ROLES))
    at = open_page("profile", as_user="sam@x.io")
    at.multiselect(key="profile_events").set_value(["completed"])
    button(at, "Save profile").click().run()
    with Client(Settings(), user="sam@x.io") as sam, Client(Settings(), user="ann@x.io") as ann:
        assert sam.profile().events == ["completed"] and ann.profile().events == ["failed"]
        at = open_page("profile", as_user="ann@x.io")
        assert at.multiselect(key="profile_events").value == ["failed"]
        assert sam.profile().webhook_secret not in [c.value for c in at.code]


# --- submit, job page -----------------------------------------------------------------------------------------

def demo_form(at: AppTest) -> AppTest:
    return at.selectbox(key="submit_type").set_value("DEMO").run()


def submit(at: AppTest) -> AppTest:
    return button(at, "Submit job").click().run()


def test_submit_notify_options_start_from_the_profile_and_are_passed(client: Client) -> None:
    client.set_profile(events=["failed"], via=["inbox"])
    listen()
    at = demo_form(open_page("submit"))
    assert at.multiselect(key="notify_events").value == ["failed"]
    assert at.multiselect(key="notify_via").value == ["inbox"]
    at.multiselect(key="notify_events").set_value(["completed"])
    submit(at)
    assert not at.exception and not at.error, [e.value for e in at.error]
    [job] = client.list()
    drive(job.id, "completed", result={})
    assert tell() == 1
    [item] = client.notifications().items  # the profile says "failed only": the submit's choice was used
    assert item.title == f"Job DEMO {job.id[:8]} completed"

    at = open_page("job", id=job.id)
    assert [t.label for t in at.tabs][-1] == "Deliveries"
    log = at.dataframe[-1].value
    assert log.to_dict("records")[0] | {"When": None} == {
        "When": None, "Channel": "inbox", "To": ME, "What": item.title, "Attempt": 1, "Status": "delivered",
        "Code or error": "", "Next attempt": None}


def test_submit_refuses_a_private_callback_url_and_submits_nothing(client: Client) -> None:
    at = demo_form(open_page("submit"))
    at.text_input(key="callback_url").set_value("http://127.0.0.1:9/cb")
    submit(at)
    assert any(e.value.startswith("`callback_url") and "private" in e.value for e in at.error), \
        [e.value for e in at.error]
    assert client.list() == []
    at.multiselect(key="notify_via").set_value(["webhook"])
    at.text_input(key="callback_url").set_value("")
    submit(at)
    assert any("needs a webhook URL" in e.value for e in at.error) and client.list() == []


def test_a_failing_callback_shows_in_the_jobs_log_and_on_workers(client: Client,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKDECK_FETCH_ALLOW", json.dumps(["127.0.0.1"]))
    listen()
    dead = f"http://127.0.0.1:{free_port()}/callback"  # nothing listens there
    at = demo_form(open_page("submit"))
    at.text_input(key="callback_url").set_value(dead)
    submit(at)
    [job] = client.list()
    drive(job.id, "completed", result={"ok": True})
    tell()
    assert run(lambda store: delivery.run_due(store)) == 1
    at = open_page("job", id=job.id)
    [row] = at.dataframe[-1].value.to_dict("records")
    assert (row["Channel"], row["To"], row["What"], row["Status"]) == ("webhook", dead, "callback: job completed",
                                                                        "retrying")
    assert row["Code or error"] and row["Next attempt"] is not None
    at = open_page("workers")
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Waiting"], metrics["Failing"], metrics["Given up"]) == ("1", "1", "0")
    assert any(c.value.startswith("webhook:") for c in at.code)
    assert "127.0.0.1" not in " ".join(c.value for c in at.code)  # the health names no address


def test_anothers_job_has_no_delivery_log_for_staff_or_analysts(client: Client,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKDECK_ROLES", json.dumps(ROLES))
    listen()
    job = client.submit("DEMO", {}, user="bob@x.io", notify={"events": ["completed"], "via": ["inbox"]})
    drive(job.id, "completed", result={})
    tell()
    assert len(client.deliveries(job.id)) == 1
    at = open_page("job", as_user="sam@x.io", id=job.id)
    assert "not found" in texts(at) and not at.tabs
    at = open_page("job", as_user="ann@x.io", id=job.id)
    assert [t.label for t in at.tabs][-1] == "Audit"
    at = open_page("job", as_user="kim@boss.io", id=job.id)
    assert [t.label for t in at.tabs][-1] == "Deliveries"


# --- alert rules: Settings and Workers -----------------------------------------------------------------------

def rules_form(at: AppTest, kind: str) -> AppTest:
    at.selectbox(key="rule_kind").set_value(kind).run()
    return at


def test_admins_add_edit_and_delete_alert_rules(client: Client) -> None:
    at = open_page("settings")
    assert [t.label for t in at.tabs] == ["Running limits", "Schedules", "Alert rules", "Audit log"]
    assert "No alert rules yet" in texts(at)
    rules_form(at, "queue_depth")
    at.text_input(key="rule_name").set_value("Backlog")
    at.number_input(key="rule_params:queue_depth.over").set_value(5)
    at.text_area(key="rule_targets").set_value("inbox:Ops@X.io\nemail:ops@x.io")
    at.number_input(key="rule_for").set_value(120)
    button(at, "Save rule").click().run()
    assert not at.exception
    [saved] = client.alert_rules()
    assert (saved.name, saved.kind, saved.params, saved.for_s, saved.enabled) == (
        "Backlog", "queue_depth", {"queue": "default", "over": 5}, 120.0, True)
    assert [f"{t.channel.value}:{t.address}" for t in saved.targets] == ["inbox:ops@x.io", "email:ops@x.io"]
    assert "Backlog" in texts(at) and at.text_input(key="rule_name").value == "Backlog"

    at.text_input(key="rule_name").set_value("Backlog over 5")  # the form now edits the saved rule: replaced
    at.checkbox(key="rule_enabled").uncheck()
    button(at, "Save rule").click().run()
    [edited] = client.alert_rules()
    assert (edited.id, edited.name, edited.enabled) == (saved.id, "Backlog over 5", False)

    at.text_area(key="rule_targets").set_value("slack:http://127.0.0.1:9/hook")
    button(at, "Save rule").click().run()
    assert any("private" in e.value or "refused" in e.value for e in at.error), [e.value for e in at.error]
    assert [t.channel.value for t in client.alert_rules()[0].targets] == ["inbox", "email"]
    at.text_area(key="rule_targets").set_value("pager:someone")
    button(at, "Save rule").click().run()
    assert any("CHANNEL:ADDRESS" in e.value for e in at.error)

    button(at, "New rule").click().run()
    assert at.text_input(key="rule_name").value == "" and "**New rule**" in texts(at)
    button(at, "Suggested: Failure rate over 10 %").click().run()
    assert at.selectbox(key="rule_kind").value == "failure_rate"
    assert at.number_input(key="rule_params:failure_rate.over_pct").value == 10
    button(at, "Save rule").click().run()
    assert sorted(r.id for r in client.alert_rules()) == sorted([saved.id, "failure-rate-10"])

    at.selectbox(key="rule_pick").set_value(saved.id).run()
    button(at, "Delete alert rule").click().run()
    assert [r.id for r in client.alert_rules()] == ["failure-rate-10"]
    assert [e["action"] for e in client.audit()][:2] == [f"delete alert rule {saved.id}",
                                                         "set alert rule failure-rate-10 (failure_rate)"]


def test_editing_a_rule_keeps_its_webhook_secret(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKDECK_FETCH_ALLOW", json.dumps(["127.0.0.1"]))
    with Client() as allowed:
        allowed.set_alert_rule(AlertRule(id="hooked", kind="no_worker", targets=[
            Target(channel=Channel.webhook, address="http://127.0.0.1:9/hook", secret="whsec_c2VjcmV0")]))
    at = open_page("settings")
    button(at, "Edit rule").click().run()
    assert at.text_area(key="rule_targets").value == "webhook:http://127.0.0.1:9/hook"
    assert "whsec_c2VjcmV0" not in json.dumps([d.value.to_dict() for d in at.dataframe], default=str)
    at.number_input(key="rule_repeat").set_value(0)
    button(at, "Save rule").click().run()
    [rule] = client.alert_rules()
    assert rule.repeat_s == 0 and rule.targets[0].secret == "whsec_c2VjcmV0"


def test_workers_page_shows_alert_state_to_admins_only(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKDECK_ROLES", json.dumps(ROLES))
    client.set_alert_rule(AlertRule(id="no-worker", name="Nobody works", kind="no_worker",
                                    targets=[Target(channel=Channel.inbox, address=ME)]))
    fired = run(lambda store: alerts.evaluate(store))
    assert fired == {"no-worker": "firing"}
    at = open_page("workers")
    assert any("Nobody works" in e.value and "is firing since" in e.value for e in at.error)
    table = at.dataframe[-1].value
    assert list(table["Rule"]) == ["Nobody works"] and list(table["State"]) == ["firing"]
    assert list(table["Incidents"]) == [1]
    inbox = open_page("inbox")  # the alert's message arrived, with a link to the page that explains it
    assert titles(inbox) == [":blue-badge[unread] **`Alert: Nobody works`**"]
    assert page_links(inbox) == [("Open Workers", "workers")]
    staff = open_page("workers", as_user="sam@x.io")
    assert "Nobody works" not in texts(staff) and "Alert rules" not in texts(staff)
    assert "Waiting" in [m.label for m in staff.metric]


def test_settings_rules_tab_quotes_hostile_rule_names_literally(client: Client) -> None:
    client.set_alert_rule(AlertRule(id="hostile", name=HOSTILE[:200], kind="no_worker"))
    at = open_page("settings")
    button(at, "Edit rule").click().run()
    assert_page_literal(at, shown=None)
    run(lambda store: alerts.evaluate(store))
    assert_page_literal(open_page("workers"), shown=HOSTILE[:100])


# --- Chromium: the bell and the inbox -----------------------------------------------------------------------------

@pytest.fixture
def e2e_client(redis_url: str) -> Iterator[Client]:
    with Client() as c:
        yield c


@pytest.mark.e2e
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium")
def test_browser_bell_and_inbox(tab: Tab, dashboard: str, e2e_client: Client,  # noqa: F811
                                start_worker: Any) -> None:
    page = tab.page
    page.goto("/live")
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text("Inbox · nothing unread").wait_for(timeout=30_000)
    start_worker()  # its notify task reads the job ends from now on
    wait_until(lambda: e2e_client.workers(), 30, "the worker's first heartbeat")
    job = e2e_client.submit("TEST_FAIL_WITH", {"message": f"{HOSTILE}\nmore"})
    bell_link = sidebar.get_by_role("link", name=re.compile(r"Inbox · 1 unread · 1 failed since you last looked"))
    bell_link.wait_for(timeout=30_000)  # no reload: the bell refreshes by itself
    bell_link.click()
    page.wait_for_url(re.compile(r"/inbox$"), timeout=30_000)
    main = page.get_by_test_id("stMain")
    main.get_by_text(f"Job TEST_FAIL_WITH {job.id[:8]} failed").wait_for(timeout=30_000)
    assert HOSTILE in (main.get_by_test_id("stText").first.text_content() or "")
    assert_inert(tab)
    # looked at: no "failed since you last looked" any more, still unread
    sidebar.get_by_role("link", name="Inbox · 1 unread", exact=True).wait_for(timeout=30_000)

    other = page.context.browser.new_context(base_url=dashboard).new_page()
    other.goto("/inbox")  # another session: the same inbox, from Redis
    other.get_by_text(f"Job TEST_FAIL_WITH {job.id[:8]} failed").first.wait_for(timeout=30_000)
    other.context.close()

    main.get_by_role("button", name="Mark read").click()
    sidebar.get_by_role("link", name="Inbox · nothing unread", exact=True).wait_for(timeout=30_000)
    assert e2e_client.unread_count() == 0
    main.get_by_role("link", name="Open the job").click()
    page.wait_for_url(re.compile(rf"/job\?id={job.id}$"), timeout=30_000)
    page.get_by_text(f"TEST_FAIL_WITH · {job.id[:8]}").wait_for(timeout=30_000)
    assert_inert(tab)
