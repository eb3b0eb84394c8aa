"""Alert rules: what an admin asks to be told about (a kind and its parameters), where to (targets), after
how long a condition must hold (`for_s`) and how often to say it again while it does (`repeat_s`).

Rules live in one Redis hash (Keys.alert_rules: id -> JSON). They are read and changed by admins only
(client/facade.py checks the principal): a rule's targets name addresses and webhook URLs.
"""
from __future__ import annotations

import re
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import InvalidPayload
from ..policy.access import normal_email
from ..settings import Settings
from ..storage.store import Store
from .addresses import checked_email, checked_url
from .model import Channel, Target

Kind = Literal["queue_depth", "failure_rate", "no_worker", "job_stalled", "breaker_open", "source_unhealthy",
               "llm_spend"]
DEFAULT_QUEUE = "default"
MAX_WINDOW_S = 30 * 86400
EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QueueDepthParams(Params):
    queue: str = Field(DEFAULT_QUEUE, description='Which queue; "default" is the one queue Taskdeck has today.')
    over: int = Field(50, ge=0, description="Fires while more jobs than this wait (queued or retrying).")


class FailureRateParams(Params):
    type: str | None = Field(None, description="One task type; unset: all types.")
    over_pct: float = Field(10.0, ge=0, le=100, description="Fires while failed / finished is over this percent.")
    window_s: float = Field(900.0, ge=60, le=MAX_WINDOW_S, description="Over the last this many seconds.")
    min_count: int = Field(10, ge=1, description="Finished jobs the window must hold first, so 1 of 1 does not fire.")


class NoWorkerParams(Params):
    pass


class JobStalledParams(Params):
    type: str | None = Field(None, description="One task type; unset: all types.")


class BreakerOpenParams(Params):
    endpoint: str | None = Field(None, description="One LLM endpoint (host:port/path); unset: any.")


class SourceUnhealthyParams(Params):
    url: str | None = Field(None, description="One source URL; unset: any owner's source.")


class LlmSpendParams(Params):
    budget_usd: float = Field(gt=0, description="Fires while LLM spend over the window is over this.")
    window_s: float = Field(86400.0, ge=60, le=MAX_WINDOW_S, description="Over the last this many seconds.")


PARAMS: dict[str, type[Params]] = {
    "queue_depth": QueueDepthParams, "failure_rate": FailureRateParams, "no_worker": NoWorkerParams,
    "job_stalled": JobStalledParams, "breaker_open": BreakerOpenParams, "source_unhealthy": SourceUnhealthyParams,
    "llm_spend": LlmSpendParams,
}


def new_id() -> str:
    return uuid.uuid4().hex[:12]


class AlertRule(BaseModel):
    """One alert rule. `params` depend on `kind` (PARAMS); unknown ones are refused."""

    id: str = Field(default_factory=new_id, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    name: str = Field("", max_length=200, description="Shown in every message; default: the kind.")
    kind: Kind
    params: dict[str, Any] = Field(default_factory=dict)
    targets: list[Target] = Field(default_factory=list, max_length=20)
    for_s: float = Field(0.0, ge=0, le=MAX_WINDOW_S, description="How long the condition must hold before it fires.")
    repeat_s: float = Field(3600.0, ge=0, description="While firing, say it again after this long; 0: never.")
    enabled: bool = True

    @model_validator(mode="after")
    def known_params(self) -> AlertRule:
        self.params = PARAMS[self.kind].model_validate(self.params).model_dump(exclude_none=True)
        self.name = self.name.strip() or self.kind.replace("_", " ")
        return self

    def typed(self) -> Any:
        """`params` as the kind's model (QueueDepthParams...)."""
        return PARAMS[self.kind].model_validate(self.params)


# The two, as suggestions: nothing is created until an admin saves one (README, "Alert rules").
SUGGESTED = (
    AlertRule(id="queue-depth-50", name="Queue depth over 50", kind="queue_depth", params={"over": 50}, for_s=300,
              enabled=False),
    AlertRule(id="failure-rate-10", name="Failure rate over 10 %", kind="failure_rate",
              params={"over_pct": 10, "window_s": 900, "min_count": 10}, enabled=False),
)


def rule(kind: str, params: dict[str, Any], **fields: Any) -> AlertRule:
    """An AlertRule from loose input (the CLI, a form); InvalidPayload naming the field when it does not fit."""
    try:
        return AlertRule.model_validate({"kind": kind, "params": params, **fields})
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "rule"
        raise InvalidPayload(f"alert rule {where}: {first['msg']}") from None


async def checked(found: AlertRule, settings: Settings) -> AlertRule:
    """`found` with its targets checked: inbox and email addresses are addresses, webhook and Slack URLs pass
    the outbound policy (TASKDECK_FETCH_ALLOW) now, not at the first delivery; and its queue is one that exists."""
    if found.kind == "queue_depth" and found.params["queue"] not in (DEFAULT_QUEUE, settings.queue_name):
        raise InvalidPayload(f"alert rule params.queue: no queue {found.params['queue']!r}; Taskdeck has one "
                             f"queue today, {DEFAULT_QUEUE!r}")
    targets = [await checked_target(target, settings) for target in found.targets]
    return found.model_copy(update={"targets": targets})


async def checked_target(target: Target, settings: Settings) -> Target:
    """The target with its address in normal form; InvalidPayload saying why it cannot be sent to."""
    address, what = target.address.strip(), f"alert target {target.channel}"
    if target.secret and target.channel is not Channel.webhook:
        raise InvalidPayload(f"{what}: only webhook targets have a signing secret")
    if target.channel is Channel.inbox:
        if not EMAIL.fullmatch(address):
            raise InvalidPayload(f"{what}: {address!r} is not a user's email address")
        address = normal_email(address)
    elif target.channel is Channel.email:
        address = checked_email(address)
    else:
        address = await checked_url(address, settings.fetch_allow, what)
    return target.model_copy(update={"address": address})


def parse_target(text: str) -> Target:
    """`email:a@b.io`, `inbox:a@b.io`, `slack:https://...`, `webhook:https://...` as a Target."""
    channel, sep, address = text.strip().partition(":")
    if not sep or channel not in Channel.__members__ or not address:
        raise InvalidPayload(f"alert target {text!r}: write CHANNEL:ADDRESS, CHANNEL one of "
                             f"{', '.join(Channel.__members__)}")
    return Target(channel=Channel(channel), address=address)


async def all_rules(store: Store) -> list[AlertRule]:
    raw: dict[str, str] = await store.redis.hgetall(store.keys.alert_rules)  # type: ignore[misc]  # redis-py types replies `Awaitable[T] | T` for both clients
    return sorted((AlertRule.model_validate_json(value) for value in raw.values()), key=lambda r: (r.name, r.id))


async def save(store: Store, found: AlertRule) -> None:
    await store.redis.hset(store.keys.alert_rules, found.id, found.model_dump_json())  # type: ignore[misc]  # redis-py types replies `Awaitable[T] | T` for both clients


async def delete(store: Store, rule_id: str) -> bool:
    """Remove the rule and its state; False when there was no such rule."""
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hdel(store.keys.alert_rules, rule_id)
        pipe.delete(store.keys.alert_state(rule_id))
        removed, _ = await pipe.execute()
    return bool(removed)
