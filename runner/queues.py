"""Named queues: each task type belongs to one, and each queue has its own slots in a worker.

A worker serves the queues TASKDECK_QUEUES names ("generation=10,scraping=30"), each with that many
slots that no other queue's jobs can take; unset, it serves every queue at the seed's concurrencies
(the `default` queue at TASKDECK_MAX_JOBS). The `default` queue is ARQ's queue of TASKDECK_QUEUE_NAME
itself, so a deployment from before named queues keeps its queue; the others are `<queue_name>:<name>`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidPayload
from .settings import Settings

DEFAULT = "default"
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class Queue:
    """A queue's defaults: its slots per worker, and its lease as a share of TASKDECK_LEASE_S (a short job
    kind is found dead sooner)."""

    concurrency: int
    lease_share: float = 1.0


SEED = {  # the system Taskdeck replaces ran these three beside everything else
    "generation": Queue(10),  # LLM types: minutes each
    "scraping": Queue(30, lease_share=0.5),  # pages, feeds, documents: seconds each
    "sync": Queue(60),  # platform sync and publishing
    DEFAULT: Queue(10),
}


def served(settings: Settings, known: set[str] | None = None) -> dict[str, int]:
    """The queues a worker configured by `settings` serves, with their slots, in a stable order."""
    if not settings.queues.strip():
        names = sorted({*SEED, *(known or ())})
        return {name: settings.max_jobs if name == DEFAULT else SEED.get(name, Queue(settings.max_jobs)).concurrency
                for name in names}
    return parse(settings.queues)


def parse(text: str) -> dict[str, int]:
    """"generation=10,scraping=30" as {"generation": 10, "scraping": 30}, or a clear error."""
    found: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, slots = item.partition("=")
        name = name.strip()
        if not NAME.match(name) or not slots.strip().isdigit() or int(slots) < 1:
            raise InvalidPayload(f"TASKDECK_QUEUES: {item!r} is not NAME=SLOTS (a lowercase name, a whole number "
                                 'of slots of at least 1), e.g. "generation=10,scraping=30"')
        found[name] = int(slots)
    return found


def lease_s(settings: Settings, name: str) -> float:
    """The lease of a job of queue `name`: TASKDECK_LEASE_S, shorter for the queues that say so."""
    return settings.lease_s * SEED.get(name, SEED[DEFAULT]).lease_share
