"""The job-end hook: final job events, read through the Redis consumer group `notify`, become notices
(as the job's subscription, else its owner's profile, says) and callbacks, queued in the outbox.

As the archive's feeder does (archive/feeder.py): every worker reads the group's new entries; those of
unfinished states are acknowledged at once (lua/finals.lua, which also reads each final job's
subscription and the profile of whom it tells), the final ones once their notices are queued. So a job's
end is told at least once: a worker that dies in between leaves its entries pending, and any worker
claims those idle for longer than `claim_idle_s` (XAUTOCLAIM). Notices and callbacks have ids made from
the event's, so reading an event twice queues nothing twice while the first is still in the outbox.

The group starts at the stream's end (`$`): events from before the first worker that notifies are not
told (they would be every job in the stream, all at once).
"""
from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from pydantic import ValidationError
from redis.exceptions import ResponseError

from ..models import utcnow
from ..reads.events import TERMINAL_NAMES
from ..storage.store import Store
from . import outbox, scripts, subscriptions
from . import profile as profiles
from .model import Channel, Notification, Target
from .outbox import Delivery, digest
from .profile import Profile
from .subscriptions import Subscription

logger = logging.getLogger("taskdeck.notify")
GROUP = "notify"
READ_COUNT = 500
FINAL_ORDER = sorted(TERMINAL_NAMES)
IDS = uuid.UUID("5b6c0f5e-7f57-4a55-9d0e-6f1e0e7a9c11")  # the namespace of notice and callback ids


class Final(NamedTuple):
    """A final job event as lua/finals.lua returns it."""

    entry: str
    job: str
    user: str
    type: str
    status: str
    attempt: str
    error: str
    subscription: str
    profile: str

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(int(self.entry.split("-")[0]) / 1000, UTC)


async def ensure_group(store: Store) -> None:
    try:
        await store.redis.xgroup_create(store.keys.events, GROUP, id="$", mkstream=True)
    except ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


def notice(final: Final) -> Notification:
    """What a job's end says: plain text, with a link to its page."""
    tries = f" ({final.attempt} attempts)" if final.attempt not in ("", "1") else ""
    if final.status == "failed":
        lines = final.error.strip().splitlines()
        body = (lines[0][:300] if lines else "It failed without an error message.") + tries
    else:
        body = f"It is {final.status}{tries}."
    return Notification(id=uuid.uuid5(IDS, f"notice:{final.job}:{final.entry}").hex, kind="job", event=final.status,
                        title=f"Job {final.type} {final.job[:8]} {final.status}", body=body,
                        link=f"/job?id={final.job}", job_id=final.job, since=final.at, created_at=utcnow())


def targets(via: Sequence[str], recipient: str, profile: Profile) -> list[Target]:
    """Where a notice to `recipient` goes; a webhook only while their profile names one."""
    found = []
    if "inbox" in via:
        found.append(Target(channel=Channel.inbox, address=recipient))
    if "email" in via:
        found.append(Target(channel=Channel.email, address=profile.address))
    if "webhook" in via and profile.webhook_url:
        found.append(Target(channel=Channel.webhook, address=profile.webhook_url, secret=f"user:{recipient}"))
    return found


class Hook:
    """One consumer of the group. `run_once` is what a worker's notify task calls every second or so."""

    def __init__(self, store: Store, consumer: str, claim_idle_s: float = 30.0) -> None:
        self.store, self.consumer = store, consumer
        self.claim_idle_ms = int(claim_idle_s * 1000)
        self.grouped = False
        self.behind = True  # own pending entries may exist (a restart under the same name, a failed pass)
        self.next_stale = 0.0
        self.profiles: dict[tuple[str, str], Profile] = {}  # this batch's, by (recipient, stored text)

    async def run_once(self) -> int:
        """Tell what the stream holds: own pending entries first, then others' stale ones (looked for every
        claim_idle_s / 2), then new ones. Returns the job ends handled."""
        if not self.grouped:
            await ensure_group(self.store)
            self.grouped = True
        ways = [">"]
        if time.monotonic() >= self.next_stale:
            ways.insert(0, "stale")
            self.next_stale = time.monotonic() + self.claim_idle_ms / 2000
        if self.behind:
            ways.insert(0, "0")
        handled = 0
        self.behind = True  # until this pass has handled all it read
        for how in ways:
            handled += await self.drain(how)
        self.behind = False
        return handled

    async def drain(self, how: str) -> int:
        handled = 0
        while True:
            read, finals = await self.read(how)
            await self.handle(finals)
            handled += len(finals)
            if read < READ_COUNT or how == "stale":
                return handled

    async def read(self, how: str) -> tuple[int, list[Final]]:
        args = [GROUP, self.consumer, how, READ_COUNT, self.claim_idle_ms, *FINAL_ORDER]
        try:
            read, flat = await scripts.run(self.store, "finals", args)
        except ResponseError as e:
            if "NOGROUP" not in str(e):
                raise
            await ensure_group(self.store)
            return 0, []
        size = len(Final._fields)
        return int(read), [Final(*flat[i:i + size]) for i in range(0, len(flat), size)]

    async def handle(self, finals: list[Final]) -> None:
        """Queue each final event's notices and callback, then acknowledge them all."""
        known: dict[str, Subscription] = {}  # most jobs share one (none) and one owner's profile: parsed once
        self.profiles = {}
        for final in finals:
            if (sub := known.get(final.subscription)) is None:
                sub = known.setdefault(final.subscription, subscriptions.parse(final.subscription))
            try:
                await self.tell(final, sub)
                if sub.callback is not None:
                    await self.call_back(final, sub)
            except (ValidationError, ValueError) as e:  # one odd event must not hold back the others for good
                logger.error("notify: the end of job %s cannot be told, skipped: %s", final.job, str(e)[:300])
        if finals:
            await self.store.redis.xack(self.store.keys.events, GROUP, *[f.entry for f in finals])

    async def tell(self, final: Final, sub: Subscription) -> None:
        recipient = sub.to or final.user
        if (profile := self.profiles.get((recipient, final.profile))) is None:
            profile = self.profiles.setdefault((recipient, final.profile), profiles.parse(recipient, final.profile))
        events = profile.events if sub.events is None else sub.events
        via = profile.via if sub.via is None else sub.via
        if final.status in events and (found := targets(via, recipient, profile)):
            await outbox.enqueue(self.store, notice(final), found)

    async def call_back(self, final: Final, sub: Subscription) -> None:
        """POST the job's final record to its callback URL, signed (the job as GET /api/jobs/{id} answers).
        A job that is no longer final (retried since) is not called back for this end."""
        assert sub.callback is not None
        job = await self.store.load(final.job)
        if job is None or not job.status.terminal:
            logger.info("notify: job %s is no longer final; its callback for this end is not sent", final.job)
            return
        message = uuid.uuid5(IDS, f"callback:{final.job}:{final.entry}").hex
        await outbox.queue(self.store, [Delivery(
            id=f"{message}:callback", message_id=message, lane=f"{final.job}:callback:{digest(sub.callback.url)}",
            channel=Channel.webhook, address=sub.callback.url, secret=sub.callback.secret, job_id=final.job,
            what=f"callback: job {final.status}", body=job.model_dump_json(), created_at=utcnow())])
