"""What a submit asks to be told about its job: which ends, how, and a callback for services.

Stored with the job's creation, in the same script (transitions.create's `calls`), under
Keys.notify_subscription, and deleted with the job. A job submitted without one has none: its end is
told as its owner's profile says (read when the job ends), which costs a submit nothing.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, ValidationError

from ..errors import InvalidPayload
from ..policy.access import Principal
from ..storage.store import Store
from . import profile as profiles
from .addresses import checked_url
from .profile import JobEnd, Via


class Notify(BaseModel):
    """Which ends of a job to be told of, and how (`notify` of a submit)."""

    events: list[JobEnd] = Field(description="completed, failed, or both; [] for none.")
    via: list[Via] = Field(["inbox"], description="inbox, email (to the profile's address), webhook (the "
                           "profile's webhook URL).")


class Callback(BaseModel):
    url: str
    secret: str = Field(description="Whose secret signs it: `token:<id>` (the API token that submitted the job) "
                        "or `user:<email>` (the submitter's profile).")


class Subscription(BaseModel):
    to: str | None = Field(None, description="Who is told; none: the job's owner.")
    events: list[JobEnd] | None = Field(None, description="None: the profile's.")
    via: list[Via] | None = Field(None, description="None: the profile's.")
    callback: Callback | None = None

    @property
    def empty(self) -> bool:
        return self == Subscription()


def parse_notify(notify: Notify | dict[str, Any] | None) -> Notify | None:
    if notify is None or isinstance(notify, Notify):
        return notify
    try:
        return Notify.model_validate(notify)
    except ValidationError as e:
        raise InvalidPayload("notify: " + "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}"
                                                    for err in e.errors())) from None


async def at_submit(store: Store, principal: Principal, owner: str, notify: Notify | dict[str, Any] | None,
                    callback_url: str | None, to: str | None = None) -> Subscription | None:
    """The subscription of a job `principal` submits for `owner`; None when it has nothing to say.
    InvalidPayload when a channel cannot be used (no SMTP server, no webhook URL on the profile) or the
    callback URL is refused by the outbound policy: then nothing is submitted."""
    wanted = parse_notify(notify)
    sub = Subscription(to=to if to and to != owner else None)
    if wanted is not None:
        recipient = to or owner
        sub.events, sub.via = sorted(set(wanted.events)), sorted(set(wanted.via))
        if wanted.events and "email" in wanted.via and not store.settings.smtp_host:
            raise InvalidPayload("notify via email needs an SMTP server (TASKDECK_SMTP_HOST); use inbox or webhook")
        if wanted.events and "webhook" in wanted.via and not (await profiles.load(store, recipient)).webhook_url:
            raise InvalidPayload(f"notify via webhook needs a webhook URL on {recipient}'s profile "
                                 "(`profile --set webhook_url=...`)")
    if callback_url is not None:
        url = await checked_url(callback_url, store.settings.fetch_allow, "callback_url")
        sub.callback = Callback(url=url, secret=await signer(store, principal))
    return None if sub.empty else sub


async def signer(store: Store, principal: Principal) -> str:
    """Whose secret signs a callback: the submitting API token's; without one (CLI, Python), or for a
    token made before tokens had secrets, the submitter's profile's."""
    token = principal.token
    if token and await store.redis.hexists(store.keys.token_secrets, token):  # type: ignore[misc]  # redis-py types replies `Awaitable[T] | T` for both clients
        return f"token:{token}"
    await profiles.load(store, principal.email)  # makes the secret now, so its user can read it before the callback
    return f"user:{principal.email}"


def subscription_calls(store: Store, job_id: str, sub: Subscription | None) -> list[list[Any]]:
    """The commands that store `sub` with the job's creation (transitions.create's `calls`)."""
    if sub is None:
        return []
    return [["SET", store.keys.notify_subscription(job_id), sub.model_dump_json(exclude_none=True)]]


def parse(raw: str) -> Subscription:
    """A stored subscription (an unreadable one is no subscription)."""
    try:
        return Subscription.model_validate_json(raw) if raw else Subscription()
    except ValidationError:
        return Subscription()
