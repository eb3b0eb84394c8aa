"""What a user reads and changes of their notifications (runner.notify): their profile, their inbox, a
job's delivery log, and the outbox's health. The same rules as the rest of the client: every role has a
profile and an inbox, and only their own (no method takes another user); a job's delivery log (which
names addresses) is for those who may act on the job, its owner or an admin, and another user's job
answers exactly like a missing one.

AsyncClient exposes these as methods (`await client.notifications()`, ...), and Client as blocking ones.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import ValidationError

from ..errors import InvalidPayload, JobNotFound
from ..notify import delivery, inbox, outbox
from ..notify import profile as profiles
from ..policy.access import Action, Principal

if TYPE_CHECKING:
    from ..notify.delivery import DeliveryHealth
    from ..notify.inbox import InboxCounts, InboxPage
    from ..notify.outbox import DeliveryAttempt
    from ..notify.profile import Profile, ProfileUpdate
    from ..storage.store import Store
    from .archived import Found


class Reader(Protocol):
    """The acting client, as notices uses it (AsyncClient)."""

    @property
    def principal(self) -> Principal: ...

    @property
    def store(self) -> Store: ...

    async def job_or_archived(self, job_id: str) -> Found: ...


def me(client: Reader) -> str:
    client.principal.require(Action.read)
    return client.principal.email


async def profile(client: Reader) -> Profile:
    user = me(client)
    async with client.store.guard():
        return await profiles.load(client.store, user)


async def set_profile(client: Reader, change: ProfileUpdate | dict[str, Any]) -> Profile:
    """`change`: a ProfileUpdate, or its fields (InvalidPayload names the one that does not fit)."""
    user = me(client)
    if not isinstance(change, profiles.ProfileUpdate):
        try:
            change = profiles.ProfileUpdate.model_validate(change)
        except ValidationError as e:
            raise InvalidPayload("profile: " + "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}"
                                                         for err in e.errors())) from None
    async with client.store.guard("the profile was not changed"):
        return await profiles.update(client.store, user, change)


async def notifications(client: Reader, limit: int, cursor: str | None, unread: bool) -> InboxPage:
    user = me(client)
    async with client.store.guard():
        return await inbox.page(client.store, user, max(1, min(limit, 500)), cursor, unread)


async def mark_read(client: Reader, ids: Sequence[str] | Literal["all"]) -> int:
    user = me(client)
    if isinstance(ids, str) and ids != "all":
        raise InvalidPayload(f'mark_read takes a list of notification ids, or "all"; got {ids!r}')
    async with client.store.guard("nothing was marked read"):
        return await inbox.mark_read(client.store, user, None if ids == "all" else list(ids))


async def counts(client: Reader) -> InboxCounts:
    user = me(client)
    async with client.store.guard():
        return await inbox.counts(client.store, user)


async def deliveries(client: Reader, job_id: str) -> list[DeliveryAttempt]:
    found = await client.job_or_archived(job_id)
    if not client.principal.acts_on(found.job.user_id):
        raise JobNotFound(f"job {job_id!r} not found; `python -m runner list` shows recent jobs")
    async with client.store.guard():
        return await outbox.attempts(client.store, found.job.id)


async def delivery_health(client: Reader) -> DeliveryHealth:
    me(client)
    async with client.store.guard():
        return await delivery.health(client.store)
