"""The outbox: notifications on their way. Inbox targets are written at once; every other delivery (email,
Slack, a signed webhook, a job's callback) waits in Redis until a worker sends it (delivery.py), retried
with backoff for TASKDECK_NOTIFY_RETRY_FOR_S. Nothing here sends anything, so queuing never waits on a
mail server or a receiver, and never fails a job.

A delivery is kept whole (the exact body it sends, and its message id, the same on every retry, so a
receiver can drop repeats) in Keys.notify_deliveries; its lane (Keys.notify_lane: one job's deliveries
to one address) keeps a job's messages in order; Keys.notify_due says when each lane's first is due.
Each attempt goes to its job's delivery log (Keys.notify_log), which the job's owner reads.
"""
from __future__ import annotations

import hashlib
import time
from datetime import datetime
from typing import Literal

import orjson
from pydantic import BaseModel, Field

from ..models import utcnow
from ..storage.store import Store
from . import inbox, scripts
from .model import Channel, Notification, Target

LOG_CAP = 200  # attempts a job's delivery log keeps
IDLE_LANE_S = 7 * 86400


class Delivery(BaseModel):
    """One message to one address, as a worker sends it."""

    id: str
    message_id: str = Field(description="The notification's id (a callback's own): webhook-id, the same on retries.")
    lane: str = Field(description="Deliveries of one lane go out one at a time, in order.")
    channel: Channel
    address: str = Field(repr=False)
    secret: str | None = Field(None, repr=False)
    job_id: str | None = None
    what: str = Field(description="What it carries, for the log: a notice's title, or \"callback\".")
    subject: str = ""
    body: str = Field(repr=False, description="Exactly what is sent: JSON for webhooks, plain text for email.")
    created_at: datetime
    attempts: int = 0


Outcome = Literal["delivered", "retrying", "given up"]


class DeliveryAttempt(BaseModel):
    """One attempt at one delivery, as a job's delivery log keeps it."""

    delivery: str
    message_id: str
    channel: Channel
    to: str = Field(description="The address, with any password in a URL left out.")
    what: str
    attempt: int
    at: datetime
    outcome: Outcome
    detail: str = Field("", description="The answer (\"HTTP 200\") or why it failed.")
    next_at: datetime | None = None


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def shown(address: str) -> str:
    """An address as a log shows it: a URL without its user and password."""
    if "://" not in address or "@" not in address.split("://", 1)[1].split("/", 1)[0]:
        return address
    scheme, rest = address.split("://", 1)
    host, _, path = rest.partition("/")
    return f"{scheme}://{host.rsplit('@', 1)[1]}" + (f"/{path}" if path else "")


def lane_of(note: Notification, target: Target) -> str:
    """One job's messages to one address, in order; an alert's, all alerts to that address."""
    return f"{note.job_id or note.kind}:{target.channel.value}:{digest(target.address)}"


def url_of(store: Store, note: Notification) -> str:
    return store.settings.public_url.rstrip("/") + note.link if note.link else ""


def slack_text(text: str) -> str:
    """Slack reads &, < and > as markup (links, mentions): escaped, the text shows as it is."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def body_of(store: Store, note: Notification, channel: Channel) -> str:
    url = url_of(store, note)
    since = f"Since {note.since:%Y-%m-%d %H:%M:%S} UTC."
    if channel is Channel.email:
        return "\n\n".join(part for part in (note.title, note.body, since, url) if part) + "\n"
    if channel is Channel.slack:
        lines = [slack_text(note.title), slack_text(note.body), since, f"<{url}>" if url else ""]
        return orjson.dumps({"text": "\n".join(line for line in lines if line)}).decode()
    return orjson.dumps({**note.model_dump(mode="json"), "url": url}).decode()


def delivery(store: Store, note: Notification, target: Target) -> Delivery:
    return Delivery(
        id=f"{note.id}:{target.channel.value}:{digest(target.address)}", message_id=note.id,
        lane=lane_of(note, target), channel=target.channel, address=target.address, secret=target.secret,
        job_id=note.job_id, what=note.title, subject=" ".join(note.title.split()),
        body=body_of(store, note, target.channel), created_at=note.created_at,
    )


async def enqueue(store: Store, note: Notification, targets: list[Target]) -> None:
    """Send `note` to `targets`: an inbox target (address: the user) at once, the others by the workers."""
    for target in targets:
        if target.channel is Channel.inbox and await inbox.add(store, target.address, note) and note.job_id:
            await log(store, note.job_id, inbox_attempt(note, target))
    await queue(store, [delivery(store, note, t) for t in targets if t.channel is not Channel.inbox])


def inbox_attempt(note: Notification, target: Target) -> DeliveryAttempt:
    return DeliveryAttempt(delivery=f"{note.id}:inbox", message_id=note.id, channel=Channel.inbox,
                           to=target.address, what=note.title, attempt=1, at=utcnow(), outcome="delivered")


async def queue(store: Store, deliveries: list[Delivery]) -> int:
    """Put `deliveries` in the outbox (lua/queue.lua); how many were new."""
    if not deliveries:
        return 0
    args: list[str | float] = [time.time(), max(IDLE_LANE_S, int(store.settings.notify_retry_for_s * 2))]
    for each in deliveries:
        args += [each.id, each.lane, each.model_dump_json()]
    return int(await scripts.run(store, "queue", args))


async def log(store: Store, job_id: str, attempt: DeliveryAttempt) -> None:
    key = store.keys.notify_log(job_id)
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.rpush(key, attempt.model_dump_json())
        pipe.ltrim(key, -LOG_CAP, -1)
        pipe.expire(key, int(store.settings.retention_days * 86400))
        await pipe.execute()


async def attempts(store: Store, job_id: str) -> list[DeliveryAttempt]:
    """A job's delivery log, oldest first."""
    rows = await store.redis.lrange(store.keys.notify_log(job_id), 0, -1)  # type: ignore[misc]  # redis-py types replies `Awaitable[T] | T` for both clients
    return [DeliveryAttempt.model_validate_json(row) for row in rows]
