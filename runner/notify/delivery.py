"""The workers' side of the outbox: take the due deliveries, send each once, and record how it went.

Any worker may take due deliveries (lua/claim.lua): a taken one stays due at the end of a lease, so a
worker that dies while sending leaves it to another (at least once; the webhook-id lets a receiver drop
the repeat). A failed attempt is retried after TASKDECK_NOTIFY_BACKOFF_S, doubling up to an hour, until
TASKDECK_NOTIFY_RETRY_FOR_S has passed since the delivery was queued; then it is given up. Every attempt
goes to its job's delivery log; failures also to the outbox's health, which the Workers page shows.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field

from ..models import utcnow
from ..storage.store import Store
from . import channels, scripts
from .channels import Failed
from .outbox import LOG_CAP, Delivery, DeliveryAttempt, Outcome, shown

logger = logging.getLogger("taskdeck.notify")
LEASE_S = 60.0  # longer than one send may take (channels.SEND_TIMEOUT_S)
BATCH = 20  # deliveries one worker sends at once
BACKOFF_CAP_S = 3600.0


class DeliveryHealth(BaseModel):
    """The outbox as the Workers page shows it (no addresses: every role sees it)."""

    queued: int = Field(description="Deliveries waiting to be sent or retried.")
    failing: int = Field(description="Deliveries whose last attempt failed, waiting for their retry.")
    given_up: int = Field(description="Deliveries given up since the outbox began.")
    last_error: str | None = Field(None, description="The last failure: channel and what went wrong.")
    last_error_at: datetime | None = None


def backoff_s(base_s: float, attempt: int) -> float:
    """Wait after failed attempt `attempt` (1, 2, ...): doubling from `base_s`, capped, give or take 10 %."""
    return float(min(base_s * 2 ** (attempt - 1), BACKOFF_CAP_S) * random.uniform(0.9, 1.1))


async def run_due(store: Store, most: int = BATCH) -> int:
    """Send up to `most` due deliveries, at once; how many were taken."""
    taken = await scripts.run(store, "claim", [time.time(), most, LEASE_S])
    deliveries = [Delivery.model_validate_json(raw) for raw in taken]
    await asyncio.gather(*(attempt(store, each) for each in deliveries))
    return len(deliveries)


async def attempt(store: Store, delivery: Delivery) -> None:
    """One attempt at `delivery`, recorded; nothing it does raises (a bug in a channel counts as a failure)."""
    number, at = delivery.attempts + 1, utcnow()
    try:
        detail = await channels.send(store, delivery)
    except Failed as e:
        await failed(store, delivery, number, at, e)
    except Exception as e:
        logger.exception("notify: delivery %s failed unexpectedly", delivery.id)
        await failed(store, delivery, number, at, Failed(f"{type(e).__name__} while sending"))
    else:
        await finish(store, delivery, number, at, "delivered", detail)


async def failed(store: Store, delivery: Delivery, number: int, at: datetime, error: Failed) -> None:
    settings = store.settings
    wait = backoff_s(settings.notify_backoff_s, number)
    expired = (at - delivery.created_at).total_seconds() + wait > settings.notify_retry_for_s
    if error.final or expired:
        logger.error("notify: %s delivery %s given up after %d attempts: %s", delivery.channel.value, delivery.id,
                     number, error.public)
        await finish(store, delivery, number, at, "given up", error.detail, error=error.public)
        return
    logger.warning("notify: %s delivery %s failed (attempt %d), again in %.3g s: %s", delivery.channel.value,
                   delivery.id, number, wait, error.public)
    await finish(store, delivery, number, at, "retrying", error.detail, error=error.public,
                 next_at=at + timedelta(seconds=wait))


async def finish(store: Store, delivery: Delivery, number: int, at: datetime, outcome: Outcome, detail: str,
                 error: str = "", next_at: datetime | None = None) -> None:
    """Record the attempt (lua/finish.lua): retry at `next_at`, or out of the outbox."""
    record = DeliveryAttempt(delivery=delivery.id, message_id=delivery.message_id, channel=delivery.channel,
                             to=shown(delivery.address), what=delivery.what, attempt=number, at=at, outcome=outcome,
                             detail=detail[:500], next_at=next_at)
    retry = next_at is not None
    keep = max(int(store.settings.retention_days * 86400), int(store.settings.notify_retry_for_s * 2))
    args: list[str | float | int] = [
        delivery.id, delivery.lane, "retry" if retry else "done", next_at.timestamp() if next_at else 0,
        delivery.model_copy(update={"attempts": number}).model_dump_json() if retry else "",
        f"{delivery.channel.value}: {error}" if error else "", "1" if outcome == "given up" else "0",
        at.timestamp(), delivery.job_id or "", record.model_dump_json(), LOG_CAP, keep,
    ]
    await scripts.run(store, "finish", args)


async def health(store: Store) -> DeliveryHealth:
    keys = store.keys
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.hlen(keys.notify_deliveries)
        pipe.scard(keys.notify_failing)
        pipe.hgetall(keys.notify_health)
        queued, failing, found = await pipe.execute()
    at = found.get("last_error_at")
    return DeliveryHealth(queued=queued, failing=failing, given_up=int(found.get("given_up", 0)),
                          last_error=found.get("last_error"),
                          last_error_at=datetime.fromtimestamp(float(at), UTC) if at else None)
