"""The inbox and the profile: notices kept per user in Redis, read from any client, each user's own only."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import redis

from runner import AccessDenied, Client, InvalidPayload, Settings
from runner.models import utcnow
from runner.notify import inbox, outbox
from runner.notify.model import Channel, Notification, Target
from runner.storage.store import Store, connect
from tests.conftest import ROOT

ROLES = {"boss@x.io": "admin", "ann@x.io": "analyst", "*@x.io": "staff"}
SAM, OLGA = "sam@x.io", "olga@x.io"


def note(event: str = "failed", job_id: str | None = None, minutes_ago: float = 0) -> Notification:
    at = utcnow() - timedelta(minutes=minutes_ago)
    job = job_id or uuid.uuid4().hex
    return Notification(id=uuid.uuid4().hex, kind="job", event=event, title=f"Job DEMO {job[:8]} {event}",
                        body="boom: <b>not html</b>", link=f"/job?id={job}", job_id=job, since=at, created_at=at)


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    settings = Settings(roles=ROLES)
    opened = Store(connect(settings), settings)
    yield opened
    await opened.redis.aclose()


async def put(store: Store, user: str, *notes: Notification) -> None:
    for each in notes:
        await outbox.enqueue(store, each, [Target(channel=Channel.inbox, address=user)])


async def test_the_inbox_persists_across_clients_and_is_each_users_own(store: Store) -> None:
    failed, done = note("failed", minutes_ago=2), note("completed", minutes_ago=1)
    await put(store, SAM, failed, done)
    await put(store, OLGA, note("failed"))
    with Client(Settings(roles=ROLES), user=SAM) as first:
        assert first.unread_count() == 2
        assert first.inbox_counts().failed_since_looked == 1
    with Client(Settings(roles=ROLES), user=SAM) as second:  # another session, another device: the same inbox
        page = second.notifications()
        assert [item.id for item in page.items] == [done.id, failed.id]  # newest first
        assert page.items[1].body == "boom: <b>not html</b>" and page.items[1].link == failed.link
        assert page.unread == 2 and page.failed_since_looked == 0  # the first page is a look
        assert second.inbox_counts().failed_since_looked == 0
        assert second.mark_read([failed.id]) == 1
    with Client(Settings(roles=ROLES), user=OLGA) as other:
        assert other.unread_count() == 1
        assert {item.id for item in other.notifications().items}.isdisjoint({failed.id, done.id})
        assert other.mark_read([done.id]) == 1  # someone else's id changes nothing of theirs
    with Client(Settings(roles=ROLES), user=SAM) as third:
        items = {item.id: item.read for item in third.notifications().items}
        assert items == {failed.id: True, done.id: False}
        assert third.mark_read("all") == 0
        assert all(item.read for item in third.notifications().items)


async def test_failed_since_looked_counts_failures_after_the_last_look(store: Store) -> None:
    await put(store, SAM, note("failed"))
    with Client(Settings(roles=ROLES), user=SAM) as client:
        client.notifications()
        await put(store, SAM, note("completed"), note("failed"), note("failed"))
        assert client.inbox_counts().model_dump() == {"unread": 4, "failed_since_looked": 2}
        assert client.mark_read("all") == 0
        assert client.inbox_counts().model_dump() == {"unread": 0, "failed_since_looked": 0}


async def test_pages_follow_the_cursor_without_gaps_or_repeats(store: Store) -> None:
    notes = [note("completed", minutes_ago=30 - i) for i in range(25)]
    await put(store, SAM, *notes)
    with Client(Settings(roles=ROLES), user=SAM) as client:
        seen, cursor = [], None
        while True:
            page = client.notifications(limit=10, cursor=cursor)
            seen += [item.id for item in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == [n.id for n in reversed(notes)]
        client.mark_read([notes[0].id, notes[1].id])
        assert len(client.notifications(limit=100, unread=True).items) == 23
        with pytest.raises(InvalidPayload):
            client.notifications(cursor="not-a-cursor")


async def test_the_inbox_keeps_its_newest_and_expires_with_the_retention(store: Store, r: redis.Redis) -> None:
    notes = [note("completed", minutes_ago=1000 - i) for i in range(inbox.CAP + 5)]
    await put(store, SAM, *notes)
    keys = store.keys
    assert r.zcard(keys.inbox(SAM)) == inbox.CAP and r.hlen(keys.inbox_notes(SAM)) == inbox.CAP
    assert r.zcard(keys.inbox_unread(SAM)) == inbox.CAP
    assert not r.hexists(keys.inbox_notes(SAM), notes[0].id) and r.hexists(keys.inbox_notes(SAM), notes[-1].id)
    retention = int(store.settings.retention_days * 86400)
    for key in (keys.inbox(SAM), keys.inbox_notes(SAM), keys.inbox_unread(SAM)):
        assert retention - 5 < r.ttl(key) <= retention
    old = note("failed", minutes_ago=store.settings.retention_days * 1440 + 10)
    await put(store, SAM, old, note("failed"))  # past the retention: trimmed as it comes
    assert not r.hexists(keys.inbox_notes(SAM), old.id)


async def test_a_repeated_notice_is_kept_once(store: Store, r: redis.Redis) -> None:
    same = note("failed")
    await put(store, SAM, same, same)
    assert r.zcard(store.keys.inbox(SAM)) == 1 and r.zcard(store.keys.inbox_failed(SAM)) == 1
    log = r.lrange(store.keys.notify_log(same.job_id or ""), 0, -1)
    assert [json.loads(row)["outcome"] for row in log] == ["delivered"]


def test_profile_defaults_changes_and_refusals(redis_url: str, r: redis.Redis) -> None:
    with Client(Settings(roles=ROLES), user=SAM) as client:
        first = client.profile()
        assert (first.email, first.address, first.events, first.via) == (None, SAM, ["failed"], ["inbox"])
        assert first.webhook_secret.startswith("whsec_") and client.profile().webhook_secret == first.webhook_secret
        with pytest.raises(InvalidPayload, match="private address"):
            client.set_profile(webhook_url="http://127.0.0.1:9/hook")  # TASKDECK_FETCH_ALLOW is empty
        with pytest.raises(InvalidPayload, match="need a webhook URL"):
            client.set_profile(via=["inbox", "webhook"])
        with pytest.raises(InvalidPayload, match="not an email address"):
            client.set_profile(email="not an address")
        with pytest.raises(InvalidPayload, match="events"):
            client.set_profile(events=["done"])  # type: ignore[list-item]
        changed = client.set_profile(email="Sam.Alerts@X.io", events=["completed", "failed"], via=["email", "inbox"])
        assert (changed.address, changed.events, changed.via) == ("sam.alerts@x.io", ["completed", "failed"],
                                                                  ["email", "inbox"])
        rotated = client.set_profile(rotate_secret=True)
        assert rotated.webhook_secret != first.webhook_secret and rotated.address == "sam.alerts@x.io"
        assert client.set_profile(email="").address == SAM
    with Client(Settings(roles=ROLES, fetch_allow=["127.0.0.1"]), user=SAM) as client:
        assert client.set_profile(webhook_url="http://127.0.0.1:9/hook", via=["webhook"]).via == ["webhook"]
    with Client(Settings(roles=ROLES), user=OLGA) as other:  # each user's own
        assert other.profile().webhook_url is None
    with Client(Settings(roles=ROLES), user="ann@x.io") as analyst:  # every role has a profile and an inbox
        assert analyst.profile().user == "ann@x.io" and analyst.unread_count() == 0
    with pytest.raises(AccessDenied), Client(Settings(roles=ROLES), user="stranger@y.io") as nobody:
        nobody.profile()


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "TASKDECK_ROLES": json.dumps(ROLES), **(env or {})}, timeout=60)


async def test_the_command_line_reads_and_marks_the_inbox_and_sets_the_profile(store: Store) -> None:
    failed = note("failed")
    await put(store, SAM, failed)
    listed = cli("notifications", "--unread", "--json", "--as", SAM)
    assert listed.returncode == 0, listed.stderr
    page = json.loads(listed.stdout)
    assert [item["id"] for item in page["items"]] == [failed.id] and page["unread"] == 1
    text = cli("notifications", "--as", SAM)
    assert failed.title in text.stdout and "/job?id=" in text.stdout
    marked = cli("notifications", "read", failed.id, "--json", "--as", SAM)
    assert json.loads(marked.stdout) == {"unread": 0}
    assert cli("notifications", "read", "--as", SAM).returncode == 2  # nothing named
    set_ = cli("profile", "--set", "events=completed,failed", "--set", "via=inbox", "--json", "--as", SAM)
    assert json.loads(set_.stdout)["events"] == ["completed", "failed"], set_.stderr
    bad = cli("profile", "--set", "colour=red", "--as", SAM)
    assert bad.returncode == 2 and "NAME=VALUE" in bad.stderr
