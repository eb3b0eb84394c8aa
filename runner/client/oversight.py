"""What the dashboard reads and changes beside the jobs themselves: the LLM endpoint and its circuit
breakers, the scrape/RSS sources, and one job's LLM usage. The same rules as the rest of the client: every
role may read, changing needs Action.settings (admins) and is audited, a job's usage is there only for
those who may see the job, and an unreachable Redis is one RedisUnavailable.

AsyncClient exposes these as methods (`await client.breakers()`, ...), and Client as blocking ones. Their
readers use a blocking Redis connection (they serve pages and scripts), so they run on a worker thread.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, ParamSpec, Protocol, TypeVar

from ..errors import TaskdeckError
from ..policy.access import Action, Principal

if TYPE_CHECKING:
    from ..models import Job
    from ..reads.llm_status import BreakerState, JobUsage, LlmStatus
    from ..settings import Settings
    from ..storage.store import Store
    from ..web.sources import Source

P = ParamSpec("P")
R = TypeVar("R")
UNCHANGED = "nothing was changed"


class Overseer(Protocol):
    """The acting client, as oversight uses it (AsyncClient)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def principal(self) -> Principal: ...

    @property
    def store(self) -> Store: ...

    async def get(self, job_id: str) -> Job: ...

    async def note(self, action: str) -> None: ...


async def offloaded(store: Store, what: str, work: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """`work` (blocking Redis calls) on a worker thread, under the store's guard."""
    async with store.guard(what):
        return await asyncio.to_thread(work, *args, **kwargs)


async def job_usage(client: Overseer, job_id: str) -> JobUsage:
    from ..reads import llm_status as status

    await client.get(job_id)
    return await offloaded(client.store, UNCHANGED, status.job_usage, client.settings, job_id)


async def llm_status(client: Overseer) -> LlmStatus:
    from ..reads import llm_status as status

    client.principal.require(Action.read)
    return await offloaded(client.store, UNCHANGED, status.llm_status, client.settings)


async def breakers(client: Overseer) -> list[BreakerState]:
    from ..reads import llm_status as status

    client.principal.require(Action.read)
    return await offloaded(client.store, UNCHANGED, status.breakers, client.settings)


async def reset_breaker(client: Overseer, endpoint: str) -> None:
    from ..reads import llm_status as status

    client.principal.require(Action.settings)
    await offloaded(client.store, "the breaker was not reset", status.reset_breaker, client.settings, endpoint)
    await client.note(f"reset circuit breaker {endpoint}")


async def sources(client: Overseer) -> list[Source]:
    from ..web import sources as found

    who = client.principal
    who.require(Action.read)
    owners = None if sees_every_source(who) else found.owners_of(who.email, who.org)
    return await offloaded(client.store, UNCHANGED, found.list_sources, client.settings, owners)


def sees_every_source(who: Principal) -> bool:
    return who.can(Action.read_all) and who.can(Action.settings)


async def enable_source(client: Overseer, url: str, owner: str | None = None) -> list[Source]:
    from ..web import sources as found

    client.principal.require(Action.settings)
    url = found.canonical(url)
    enabled = await offloaded(client.store, "the source was not re-enabled", enable, client.settings, url, owner)
    if not enabled:
        raise TaskdeckError(f"no source {url}; the Workers page lists the sources")
    await client.note(f"re-enable source {url}")
    return enabled


def enable(settings: Settings, url: str, owner: str | None) -> list[Source]:
    """Re-enable `owner`'s source `url`, or every owner's source of that name (blocking)."""
    from ..web import sources as found

    owners = [owner] if owner else found.holders(settings, url)
    return [found.enable(settings, url, each) for each in owners]
