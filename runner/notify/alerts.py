"""Evaluating the alert rules: one worker at a time (the `alerts` duty, every TASKDECK_ALERT_INTERVAL_S) reads
what the rules watch (signals.py) and moves each rule's state:

    ok ──condition──> pending ──held for_s──> firing ──condition gone──> resolved ──condition──> pending ...
         (for_s 0: straight to firing)          │ every repeat_s: said again

One incident is one "firing" Notification (its `since` is when the condition began) and one "resolved"
when it clears; while firing it is said again only after `repeat_s`. A disabled rule that was firing
resolves. Each state change is a WATCH/MULTI on the rule's state key (and the rules hash): of two
evaluators that overlap, one changes the state and sends; the other's transaction fails and it sends nothing.

The API server evaluates too (api/app.py), under the same duty lock: with every worker gone, no worker is
left to say so (`no_worker`).
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field
from redis.exceptions import WatchError

from ..storage.store import Store
from .model import Notification
from .rules import AlertRule, all_rules
from .signals import KINDS, Readings, Verdict

logger = logging.getLogger("taskdeck.alerts")
DUTY = "alerts"
Event = Literal["firing", "resolved"]


class AlertState(BaseModel):
    state: Literal["ok", "pending", "firing", "resolved"] = "ok"
    since: datetime | None = Field(None, description="When the condition began (pending, firing).")
    fired_at: datetime | None = Field(None, description="When the current or last incident fired.")
    notified_at: datetime | None = Field(None, description="When it was last said (fired or repeated).")
    resolved_at: datetime | None = None
    detail: str = Field("", description="What the last evaluation saw.")
    link: str = Field("", description="The dashboard page that explains it.")
    checked_at: datetime | None = None
    incidents: int = Field(0, description="Times this rule has fired.")


class Alert(BaseModel):
    """A rule and its current state (`alerts()`)."""

    rule: AlertRule
    status: AlertState


def advance(prev: AlertState, verdict: Verdict, found: AlertRule, now: datetime) -> tuple[AlertState, Event | None]:
    """The state after seeing `verdict` at `now`, and what to say about it (None: nothing)."""
    seen = {"detail": verdict.detail, "link": verdict.link, "checked_at": now}
    if not verdict.condition:
        if prev.state == "firing":
            return prev.model_copy(update={**seen, "state": "resolved", "resolved_at": now}), "resolved"
        state = "ok" if prev.state == "pending" else prev.state
        return prev.model_copy(update={**seen, "state": state, "since": None if state == "ok" else prev.since}), None
    if prev.state == "firing":
        assert prev.notified_at is not None
        if found.repeat_s and (now - prev.notified_at).total_seconds() >= found.repeat_s:
            return prev.model_copy(update={**seen, "notified_at": now}), "firing"
        return prev.model_copy(update=seen), None
    since = prev.since if prev.state == "pending" and prev.since else now
    if (now - since).total_seconds() >= found.for_s:
        return prev.model_copy(update={**seen, "state": "firing", "since": since, "fired_at": now, "notified_at": now,
                                       "resolved_at": None, "incidents": prev.incidents + 1}), "firing"
    return prev.model_copy(update={**seen, "state": "pending", "since": since}), None


def notification(found: AlertRule, state: AlertState, event: Event, now: datetime) -> Notification:
    """What is said: the rule's name and what it saw, since when, and the page that explains it."""
    since = state.since or state.fired_at or now
    if event == "firing":
        again = state.notified_at != state.fired_at
        title = f"{'Still firing' if again else 'Alert'}: {found.name}"
        body = f"{state.detail}\n(rule {found.id}, {found.kind})"
    else:
        title = f"Resolved: {found.name}"
        body = (f"{state.detail}\nFired {state.fired_at or since:%Y-%m-%d %H:%M:%S} UTC, resolved "
                f"{now:%Y-%m-%d %H:%M:%S} UTC\n(rule {found.id}, {found.kind})")
    return Notification(id=uuid.uuid4().hex, kind="alert", event=event, title=title, body=body, link=state.link,
                        since=since, created_at=now)


async def read_state(store: Store, rule_id: str) -> AlertState:
    raw = await store.redis.get(store.keys.alert_state(rule_id))
    return AlertState.model_validate_json(raw) if raw else AlertState()


async def transition(store: Store, found: AlertRule, verdict: Verdict, now: datetime) -> Event | None:
    """Move the rule's state and send what the move says, once: nothing when another evaluator moved it
    meanwhile or the rule was changed or deleted (WATCH)."""
    key = store.keys.alert_state(found.id)
    async with store.redis.pipeline(transaction=True) as pipe:
        await pipe.watch(key, store.keys.alert_rules)
        if await pipe.hget(store.keys.alert_rules, found.id) is None:  # type: ignore[misc]  # redis-py types replies `Awaitable[T] | T` for both clients
            return None
        raw = await pipe.get(key)
        state, event = advance(AlertState.model_validate_json(raw) if raw else AlertState(), verdict, found, now)
        pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        pipe.set(key, state.model_dump_json())
        try:
            await pipe.execute()
        except WatchError:
            return None
    if event is not None:
        await send(store, found, notification(found, state, event, now))
    return event


async def send(store: Store, found: AlertRule, note: Notification) -> None:
    from .outbox import enqueue

    if found.targets:
        await enqueue(store, note, found.targets)
    logger.warning("alert %s %s: %s", found.id, note.event, note.title)


async def evaluate(store: Store, now: float | None = None) -> dict[str, Event]:
    """Evaluate every rule once; returns what was said, by rule id. A rule whose readings fail is left as
    it was (logged), and the others go on."""
    readings = Readings(store, now)
    at = datetime.fromtimestamp(readings.now, UTC)
    said: dict[str, Event] = {}
    for found in await all_rules(store):
        try:
            if found.enabled:
                verdict = await KINDS[found.kind](found.typed(), readings)
            else:
                verdict = Verdict(False, "rule disabled", "/settings")
            if (event := await transition(store, found, verdict, at)) is not None:
                said[found.id] = event
        except Exception:
            logger.exception("alert rule %s (%s) could not be evaluated", found.id, found.kind)
    return said


async def due(store: Store, holder: str) -> bool:
    """True for one evaluator of all every TASKDECK_ALERT_INTERVAL_S (a little less, so that a caller
    looping at that interval does not miss every other turn)."""
    return await store.take_duty(DUTY, store.settings.alert_interval_s * 0.9, holder=holder)


async def run(store: Store, holder: str) -> None:
    """Evaluate whenever this process's turn comes, until cancelled (the API server's loop; workers
    evaluate from their heartbeat)."""
    while True:
        try:
            if await due(store, holder):
                await evaluate(store)
        except Exception:
            logger.exception("alert evaluation failed; trying again in %.1f s", store.settings.alert_interval_s)
        await asyncio.sleep(store.settings.alert_interval_s)


async def current(store: Store) -> list[Alert]:
    """Every rule with its state, as the last evaluation left it."""
    found = await all_rules(store)
    async with store.redis.pipeline(transaction=False) as pipe:
        for each in found:
            pipe.get(store.keys.alert_state(each.id))
        rows = await pipe.execute()
    return [Alert(rule=each, status=AlertState.model_validate_json(raw) if raw else AlertState())
            for each, raw in zip(found, rows, strict=True)]
