"""A user's notification settings: where their notices go and, by default, which of their jobs' ends
they are told of and how. One JSON value per user (Keys.profile); a user who never saved one has the
defaults: inbox, on failure.

The profile also holds the user's webhook secret (`whsec_...`, Standard Webhooks): what their own
webhook's notices are signed with, and the callbacks of jobs they submit without an API token (CLI,
Python). It is made the first time it is needed, and shown to its user only.
"""
from __future__ import annotations

import base64
import secrets
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from ..errors import InvalidPayload
from ..storage.store import Store
from .addresses import checked_email, checked_url

JobEnd = Literal["completed", "failed"]
Via = Literal["inbox", "email", "webhook"]
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


class Profile(BaseModel):
    user: str = Field(description="Whose profile it is (their sign-in email).")
    email: str | None = Field(None, description="Where email notices go; none: the sign-in email.")
    webhook_url: str | None = Field(None, description="The user's own webhook (notices via `webhook` are signed "
                                    "POSTs to it); none: no webhook.")
    events: list[JobEnd] = Field(["failed"], description="Which ends of their jobs they are told of when a submit "
                                 "does not say.")
    via: list[Via] = Field(["inbox"], description="How, when a submit does not say.")
    webhook_secret: str = Field("", description="What their webhook notices and token-less callbacks are signed "
                                "with (Standard Webhooks); shown to its user only.")

    @property
    def address(self) -> str:
        return self.email or self.user


class ProfileUpdate(BaseModel):
    """A change to a profile: each field given replaces the profile's (an empty email or URL clears it)."""

    email: str | None = Field(None, description="Email for notices; \"\": the sign-in email again.")
    webhook_url: str | None = Field(None, description="The user's webhook URL; \"\": none.")
    events: list[JobEnd] | None = Field(None, description="Default job ends to be told of.")
    via: list[Via] | None = Field(None, description="Default channels.")
    rotate_secret: bool = Field(False, description="Replace the webhook secret with a new one.")


def parse(user: str, raw: str | None) -> Profile:
    """A stored profile, or the defaults (also for one that no longer parses)."""
    if raw:
        try:
            return Profile.model_validate_json(raw)
        except ValidationError:
            pass
    return Profile(user=user)


async def load(store: Store, user: str) -> Profile:
    """`user`'s profile, with a webhook secret: one is made and saved when there is none yet (the first
    writer's wins, so two readers never hand out different secrets)."""
    key = store.keys.profile(user)
    raw = await store.redis.get(key)
    found = parse(user, raw)
    if found.webhook_secret:
        return found
    made = found.model_copy(update={"webhook_secret": new_secret()})
    if raw is not None:  # saved without a secret (unreadable, or edited by hand): this one replaces it
        await store.redis.set(key, made.model_dump_json())
        return made
    await store.redis.set(key, made.model_dump_json(), nx=True)
    again = parse(user, await store.redis.get(key))
    return again if again.webhook_secret else made


async def update(store: Store, user: str, change: ProfileUpdate) -> Profile:
    """`user`'s profile with `change` made, saved; InvalidPayload for an address that cannot be used."""
    current = await load(store, user)
    fields = change.model_dump(exclude_unset=True, exclude={"rotate_secret"})
    if "email" in fields:
        fields["email"] = checked_email(fields["email"]) if fields["email"] else None
    if "webhook_url" in fields:
        url = fields["webhook_url"]
        fields["webhook_url"] = await checked_url(url, store.settings.fetch_allow, "webhook_url") if url else None
    for name in ("events", "via"):
        if name in fields:
            fields[name] = sorted(set(fields[name] or []))
    if change.rotate_secret:
        fields["webhook_secret"] = new_secret()
    updated = current.model_copy(update=fields)
    if "webhook" in updated.via and not updated.webhook_url:
        raise InvalidPayload("notices via webhook need a webhook URL: set webhook_url too (or leave webhook out "
                             "of via)")
    await store.redis.set(store.keys.profile(user), updated.model_dump_json())
    return updated
