"""The outbox and its channels against real receivers: a local SMTP server, a local webhook receiver that
checks signatures, drops repeats, refuses replays and fails the first deliveries. The sending pass
(delivery.run_due) runs here in the test's process, as a worker's notify task runs it."""
from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import redis

from runner import Settings
from runner.models import utcnow
from runner.notify import delivery, outbox, scripts
from runner.notify import profile as profiles
from runner.notify.model import Channel, Notification, Target
from runner.storage.store import Store, connect
from tests.notify.receivers import Receiver, SMTPServer, receiver, smtp_server

__all__ = ["receiver", "smtp_server"]  # fixtures
SAM = "sam@x.io"
PUBLIC = "https://taskdeck.example"


def note(event: str = "failed", job_id: str | None = None) -> Notification:
    job = job_id or uuid.uuid4().hex
    return Notification(id=uuid.uuid4().hex, kind="job", event=event, title=f"Job DEMO {job[:8]} {event}",
                        body="ValueError: <b>bad</b> & worse", link=f"/job?id={job}", job_id=job, since=utcnow(),
                        created_at=utcnow())


StoreFactory = Callable[..., Awaitable[Store]]


@pytest.fixture
async def open_store(redis_url: str, smtp_server: SMTPServer) -> AsyncIterator[StoreFactory]:
    opened: list[Store] = []

    async def make(**overrides: Any) -> Store:
        values: dict[str, Any] = {"fetch_allow": ["127.0.0.1"], "notify_backoff_s": 0.05, "public_url": PUBLIC,
                                  "smtp_host": smtp_server.host, "smtp_port": smtp_server.port, "smtp_tls": "none",
                                  "smtp_sender": "taskdeck@test.local", **overrides}
        settings = Settings(**values)
        store = Store(connect(settings), settings)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.redis.aclose()


async def drain(store: Store, done: Callable[[], object], timeout: float = 10.0) -> None:
    """Run the sending pass until `done()` holds (polling with a deadline, as a worker would pass)."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out waiting for deliveries"
        await delivery.run_due(store)
        await asyncio.sleep(0.02)


async def test_a_webhook_notice_is_signed_retried_and_logged(open_store: StoreFactory, receiver: Receiver,
                                                             r: redis.Redis) -> None:
    store = await open_store()
    secret = (await profiles.load(store, SAM)).webhook_secret
    receiver.secrets["/hook"], receiver.fail_first["/hook"] = secret, 2
    sent = note("failed")
    await outbox.enqueue(store, sent, [Target(channel=Channel.webhook, address=f"{receiver.url}/hook",
                                              secret=f"user:{SAM}")])
    await drain(store, lambda: receiver.at("/hook"))
    got = receiver.at("/hook")[0]
    assert got.id == sent.id and [f.headers["webhook-id"] for f in receiver.failed] == [sent.id, sent.id]
    assert got.json["title"] == sent.title and got.json["url"] == PUBLIC + sent.link and got.json["kind"] == "job"
    assert got.headers["webhook-signature"].startswith("v1,") and not receiver.refused
    log = await outbox.attempts(store, sent.job_id or "")
    assert [(a.outcome, a.attempt, a.detail) for a in log] == [
        ("retrying", 1, "HTTP 503"), ("retrying", 2, "HTTP 503"), ("delivered", 3, "HTTP 204")]
    assert log[0].next_at is not None and log[0].to == f"{receiver.url}/hook"
    health = await delivery.health(store)
    assert (health.queued, health.failing, health.given_up) == (0, 0, 0)
    assert health.last_error == "webhook: HTTP 503" and r.hlen(store.keys.notify_deliveries) == 0

    # the receiver's side of the spec: the same delivery again is a repeat (200, dropped); a replay with an
    # old timestamp is refused
    async with httpx.AsyncClient() as http:
        again = await http.post(f"{receiver.url}/hook", content=got.body, headers=got.headers)
        stale = {**got.headers, "webhook-timestamp": str(int(time.time()) - 600)}
        replayed = await http.post(f"{receiver.url}/hook", content=got.body, headers=stale)
    assert again.status_code == 200 and len(receiver.duplicates) == 1
    assert replayed.status_code == 400 and "too old" in receiver.refused[0][1]
    assert len(receiver.at("/hook")) == 1


async def test_email_goes_over_smtp_as_plain_text(open_store: StoreFactory, smtp_server: SMTPServer) -> None:
    store = await open_store()
    smtp_server.mailbox.fail_next = 1  # a 451 first: retried
    sent = note("failed")
    await outbox.enqueue(store, sent, [Target(channel=Channel.email, address="sam.alerts@x.io")])
    await drain(store, lambda: smtp_server.mailbox.messages)
    mail = smtp_server.mailbox.messages[0]
    assert mail["Subject"] == sent.title and mail["To"] == "sam.alerts@x.io"
    assert mail["From"] == "taskdeck@test.local" and mail["X-Taskdeck-Message-Id"] == sent.id
    assert mail.get_content_type() == "text/plain"
    text = mail.get_content()
    assert "ValueError: <b>bad</b> & worse" in text and f"{PUBLIC}/job?id={sent.job_id}" in text
    assert smtp_server.mailbox.recipients == [["sam.alerts@x.io"]]
    log = await outbox.attempts(store, sent.job_id or "")
    assert [a.outcome for a in log] == ["retrying", "delivered"] and log[0].detail.startswith("SMTP:")


async def test_slack_gets_its_text_with_markup_escaped(open_store: StoreFactory, receiver: Receiver) -> None:
    store = await open_store()
    sent = note("completed")
    await outbox.enqueue(store, sent, [Target(channel=Channel.slack, address=f"{receiver.url}/slack")])
    await drain(store, lambda: receiver.at("/slack"))
    got = receiver.at("/slack")[0]
    assert set(got.json) == {"text"} and "webhook-signature" not in got.headers
    assert "ValueError: &lt;b&gt;bad&lt;/b&gt; &amp; worse" in got.json["text"]
    assert f"<{PUBLIC}/job?id={sent.job_id}>" in got.json["text"]


async def test_one_jobs_deliveries_to_one_address_keep_their_order(open_store: StoreFactory,
                                                                   receiver: Receiver) -> None:
    store = await open_store()
    job = uuid.uuid4().hex
    receiver.fail_first["/ordered"] = 3
    first, second = note("failed", job), note("completed", job)
    target = Target(channel=Channel.webhook, address=f"{receiver.url}/ordered")
    await outbox.enqueue(store, first, [target])
    await outbox.enqueue(store, second, [target])
    await drain(store, lambda: len(receiver.at("/ordered")) == 2)
    assert [got.id for got in receiver.at("/ordered")] == [first.id, second.id]
    assert {f.id for f in receiver.failed} == {first.id}  # the second waited for the first


async def test_a_dead_receiver_is_given_up_after_the_retry_window(open_store: StoreFactory, receiver: Receiver,
                                                                  r: redis.Redis) -> None:
    store = await open_store(notify_retry_for_s=0.4)
    receiver.fail_first["/dead"] = 1000
    sent = note("failed")
    await outbox.enqueue(store, sent, [Target(channel=Channel.webhook, address=f"{receiver.url}/dead")])
    await drain(store, lambda: r.hlen(store.keys.notify_deliveries) == 0)
    log = await outbox.attempts(store, sent.job_id or "")
    assert log[-1].outcome == "given up" and all(a.outcome == "retrying" for a in log[:-1]) and len(log) >= 2
    health = await delivery.health(store)
    assert health.given_up == 1 and health.failing == 0 and r.zcard(store.keys.notify_due) == 0


async def test_the_outbound_policy_refuses_private_addresses_at_once(open_store: StoreFactory, receiver: Receiver,
                                                                     r: redis.Redis) -> None:
    store = await open_store(fetch_allow=[])
    sent = note("failed")
    await outbox.enqueue(store, sent, [Target(channel=Channel.webhook, address=f"{receiver.url}/private")])
    await drain(store, lambda: r.hlen(store.keys.notify_deliveries) == 0)
    log = await outbox.attempts(store, sent.job_id or "")
    assert [(a.outcome, a.detail) for a in log] == [("given up", "refused: private address 127.0.0.1")]
    assert receiver.accepted == [] and receiver.failed == []
    health = await delivery.health(store)
    assert health.last_error == "webhook: refused by the outbound policy"  # no host: every role sees it


async def test_a_taken_delivery_is_due_again_when_its_lease_lapses(open_store: StoreFactory,
                                                                   receiver: Receiver) -> None:
    store = await open_store()
    sent = note("completed")
    await outbox.enqueue(store, sent, [Target(channel=Channel.webhook, address=f"{receiver.url}/lease")])
    now = time.time()
    assert len(await scripts.run(store, "claim", [now, 10, delivery.LEASE_S])) == 1  # a worker took it, then died
    assert await scripts.run(store, "claim", [now + 1, 10, delivery.LEASE_S]) == []  # others leave it alone
    again = await scripts.run(store, "claim", [now + delivery.LEASE_S + 1, 10, delivery.LEASE_S])
    assert [outbox.Delivery.model_validate_json(raw).message_id for raw in again] == [sent.id]


async def test_a_callback_whose_token_was_revoked_is_not_sent(open_store: StoreFactory, receiver: Receiver,
                                                             r: redis.Redis) -> None:
    store = await open_store()
    job = uuid.uuid4().hex
    gone = outbox.Delivery(id="c1", message_id="c1", lane=f"{job}:callback", channel=Channel.webhook,
                           address=f"{receiver.url}/cb", secret="token:0123456789abcdef", job_id=job,
                           what="callback", body="{}", created_at=utcnow())
    await outbox.queue(store, [gone])
    await drain(store, lambda: r.hlen(store.keys.notify_deliveries) == 0)
    log = await outbox.attempts(store, job)
    assert [a.outcome for a in log] == ["given up"] and "revoked" in log[0].detail and receiver.accepted == []
