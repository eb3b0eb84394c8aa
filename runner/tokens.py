"""Bearer tokens for the HTTP API: made and revoked by operators (`python -m runner token ...`).

Only a SHA-256 hash of each token is stored (a token is 32 random bytes, so a plain hash is enough);
the token itself is shown once, when it is made.
"""
from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

import orjson
from pydantic import BaseModel

from . import access
from .access import Principal, Role
from .errors import JobNotFound
from .models import utcnow
from .store import Store

PREFIX = "td_"


class Token(BaseModel):
    id: str
    user: str
    role: Role
    created_at: datetime


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def key(store: Store) -> str:
    return f"{store.keys.prefix}tokens"


async def create(store: Store, user: str, role: Role | None = None) -> tuple[str, Token]:
    """A new token for `user`, with `role` or else the one TASKDECK_ROLES gives them."""
    user = user.strip().lower()
    role = role or access.principal(store.settings, user).role
    record = Token(id=secrets.token_hex(4), user=user, role=role, created_at=utcnow())
    token = f"{PREFIX}{record.id}_{secrets.token_urlsafe(32)}"
    async with store.guard("no token was made"):
        await store.redis.hset(key(store), digest(token), record.model_dump_json())
    return token, record


async def all_tokens(store: Store) -> dict[str, Token]:
    async with store.guard():
        rows = await store.redis.hgetall(key(store))
    return {hashed: Token.model_validate(orjson.loads(raw)) for hashed, raw in rows.items()}


async def revoke(store: Store, token_id: str) -> Token:
    for hashed, record in (await all_tokens(store)).items():
        if record.id == token_id:
            async with store.guard("the token was not revoked"):
                await store.redis.hdel(key(store), hashed)
            return record
    raise JobNotFound(f"no token with id {token_id!r}; `python -m runner token list` shows them")


async def verify(store: Store, token: str) -> Principal | None:
    """The user and role a token acts as, or None when it is unknown or revoked."""
    if not token.startswith(PREFIX):
        return None
    async with store.guard():
        raw = await store.redis.hget(key(store), digest(token))
    if raw is None:
        return None
    record = Token.model_validate_json(raw)
    return Principal(record.user, record.role)
