"""What the dashboard reads and changes beside the jobs themselves: the LLM endpoint and its circuit
breakers, the scrape/RSS sources, and one job's LLM usage. The same rules as the rest of Client: every
role may read, changing needs Action.settings (admins) and is audited, a job's usage is there only for
those who may see the job, and an unreachable Redis is one RedisUnavailable.

`Client` exposes these as methods (`client.breakers()`, `client.reset_breaker(endpoint)`, ...).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..policy.access import Action
from ..errors import TaskdeckError
from ..storage.store import UNREACHABLE, unavailable

if TYPE_CHECKING:
    from .facade import Client
    from ..reads.llm_status import BreakerState, JobUsage, LlmStatus
    from ..web.sources import Source


@contextmanager
def guarded(client: Client, what: str = "nothing was changed") -> Iterator[None]:
    try:
        yield
    except UNREACHABLE as e:
        raise unavailable(client.settings.url, e, what) from None


def job_usage(client: Client, job_id: str) -> JobUsage:
    """One job's LLM usage per step and per call; JobNotFound unless the acting user may see the job."""
    from ..reads import llm_status as status

    client.get(job_id)
    with guarded(client):
        return status.job_usage(client.settings, job_id)


def llm_status(client: Client) -> LlmStatus:
    from ..reads import llm_status as status

    client.principal.require(Action.read)
    with guarded(client):
        return status.llm_status(client.settings)


def breakers(client: Client) -> list[BreakerState]:
    from ..reads import llm_status as status

    client.principal.require(Action.read)
    with guarded(client):
        return status.breakers(client.settings)


def reset_breaker(client: Client, endpoint: str) -> None:
    from ..reads import llm_status as status

    client.principal.require(Action.settings)
    with guarded(client, "the breaker was not reset"):
        status.reset_breaker(client.settings, endpoint)
    client.note(f"reset circuit breaker {endpoint}")


def sources(client: Client) -> list[Source]:
    """The sources of the acting user and of their organisation; an admin's: everyone's."""
    from ..web import sources as found

    who = client.principal
    who.require(Action.read)
    owners = None if sees_every_source(client) else found.owners_of(who.email, who.org)
    with guarded(client):
        return found.list_sources(client.settings, owners)


def sees_every_source(client: Client) -> bool:
    return client.principal.can(Action.read_all) and client.principal.can(Action.settings)


def enable_source(client: Client, url: str, owner: str | None = None) -> list[Source]:
    """Re-enable `owner`'s source `url` (None: every owner's source of that name); admins only."""
    from ..web import sources as found

    client.principal.require(Action.settings)
    url = found.canonical(url)
    with guarded(client, "the source was not re-enabled"):
        owners = [owner] if owner else found.holders(client.settings, url)
        enabled = [found.enable(client.settings, url, each) for each in owners]
    if not enabled:
        raise TaskdeckError(f"no source {url}; the Workers page lists the sources")
    client.note(f"re-enable source {url}")
    return enabled
