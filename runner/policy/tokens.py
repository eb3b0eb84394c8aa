"""Bearer tokens for the HTTP API: made and revoked by operators (`python -m runner token ...`).

Only a SHA-256 hash of each token is stored (a token is 32 random bytes, so a plain hash is enough);
the token itself is shown once, when it is made. So is its webhook secret (`whsec_...`, Standard
Webhooks), which signs the callbacks of the jobs the token submits (runner.notify); it is kept in
Keys.token_secrets, since signing needs it, and goes when the token is revoked.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import replace
from datetime import datetime

import orjson
from pydantic import BaseModel

from ..errors import InvalidPayload, TokenNotFound
from ..models import utcnow
from ..storage.store import Store
from . import access
from .access import Principal, Role

PREFIX = "td_"


class Token(BaseModel):
    id: str
    user: str
    role: Role
    org: str = ""
    created_at: datetime


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create(store: Store, user: str, role: Role | None = None, org: str = "") -> tuple[str, Token]:
    """A new token for `user` (who must be on the allow-list), with `role` or else the one TASKDECK_ROLES
    gives them; the allow-list caps it again on every use. `org` is the org it claims when TASKDECK_ORGS
    names none for the user."""
    if not user.strip():
        raise InvalidPayload("a token needs a user: --user EMAIL")
    holder = access.principal(store.settings, user, cap=role, org=org)
    record = Token(id=secrets.token_hex(8), user=holder.email, role=holder.role, org=org.strip(), created_at=utcnow())
    token = f"{PREFIX}{record.id}_{secrets.token_urlsafe(32)}"
    async with store.guard("no token was made"), store.redis.pipeline(transaction=True) as pipe:
        pipe.hset(store.keys.tokens, digest(token), record.model_dump_json())
        pipe.hset(store.keys.token_secrets, record.id, f"whsec_{base64.b64encode(secrets.token_bytes(32)).decode()}")
        await pipe.execute()
    return token, record


async def webhook_secret(store: Store, token_id: str) -> str | None:
    """The secret that signs the callbacks of jobs submitted with token `token_id` (None for a token made
    before tokens had one: those sign with their user's profile secret)."""
    async with store.guard():
        found: str | None = await store.redis.hget(store.keys.token_secrets, token_id)  # type: ignore[misc]  # redis-py types replies `Awaitable[T] | T` for both clients
    return found


async def all_tokens(store: Store) -> dict[str, Token]:
    async with store.guard():
        rows = await store.redis.hgetall(store.keys.tokens)  # type: ignore[misc]  # redis-py types replies `Awaitable[T] | T` for both clients
    return {hashed: Token.model_validate(orjson.loads(raw)) for hashed, raw in rows.items()}


async def revoke(store: Store, token_id: str) -> Token:
    """Revoke the token with id `token_id`, and any other with that id (ids of older tokens were short
    enough to collide: none of them must stay usable)."""
    found = {hashed: record for hashed, record in (await all_tokens(store)).items() if record.id == token_id}
    if found:
        async with store.guard("the token was not revoked"):
            await store.redis.hdel(store.keys.tokens, *found)  # type: ignore[misc]  # redis-py types replies `Awaitable[T] | T` for both clients
            await store.redis.hdel(store.keys.token_secrets, token_id)  # type: ignore[misc]  # redis-py types replies `Awaitable[T] | T` for both clients
        return next(iter(found.values()))
    raise TokenNotFound(f"no token with id {token_id!r}; `python -m runner token list` shows them")


async def verify(store: Store, token: str) -> Principal | None:
    """Who a token acts as, or None when it is unknown or revoked. The allow-list is read again on every
    call: a user no longer on it is refused (AccessDenied), a demoted user's token is demoted too."""
    if not token.startswith(PREFIX):
        return None
    async with store.guard():
        raw = await store.redis.hget(store.keys.tokens, digest(token))  # type: ignore[misc]  # redis-py types replies `Awaitable[T] | T` for both clients
    if raw is None:
        return None
    record = Token.model_validate_json(raw)
    return replace(access.principal(store.settings, record.user, cap=record.role, org=record.org), token=record.id)
