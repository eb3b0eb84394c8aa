"""Task types: registered once with the `task` decorator, looked up by name everywhere else."""
from __future__ import annotations

import importlib
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from . import queues
from .errors import UnknownTaskType
from .models import Priority, SpendCap

if TYPE_CHECKING:
    from .context import TaskContext

TaskFunction = Callable[["TaskContext", Any], Awaitable[Any]]


@dataclass(frozen=True)
class Backoff:
    """Delay before attempt n+1: base * factor**(n-1), capped, with up to `jitter` of it added at random."""

    base_s: float = 1.0
    factor: float = 2.0
    cap_s: float = 300.0
    jitter: float = 0.1
    delays_s: tuple[float, ...] = ()  # a fixed schedule instead (its last delay repeats): (60, 300, 900)

    def delay(self, attempt: int) -> float:
        if self.delays_s:
            raw = self.delays_s[min(max(attempt, 1), len(self.delays_s)) - 1]
        else:
            raw = min(self.cap_s, self.base_s * self.factor ** max(attempt - 1, 0))
        return raw * (1 + random.uniform(0, self.jitter))


QUEUE_BACKOFF = {"sync": Backoff(delays_s=(60.0, 300.0, 900.0))}  # network-bound platform work: 1, 5, 15 min


@dataclass(frozen=True)
class TaskType:
    name: str
    payload: type[BaseModel]
    function: TaskFunction
    steps: tuple[str, ...] = ()
    timeout_s: float = 900.0
    max_attempts: int = 3
    backoff: Backoff = field(default_factory=Backoff)
    priority: Priority = Priority.normal
    description: str = ""
    requires: tuple[str, ...] = ()  # Settings fields that must be set for this type to run (admission.py)
    max_tokens: int | None = None  # its jobs' default LLM spend caps (a submit may name others)
    max_cost_usd: float | None = None
    queue: str = queues.DEFAULT

    def schema(self) -> dict[str, Any]:
        return self.payload.model_json_schema()


_registry: dict[str, TaskType] = {}


def task(
    name: str,
    *,
    payload: type[BaseModel],
    steps: Iterable[str] = (),
    timeout_s: float = 900.0,
    max_attempts: int = 3,
    backoff: Backoff | None = None,
    priority: Priority | str = Priority.normal,
    description: str = "",
    requires: Iterable[str] = (),
    queue: str = queues.DEFAULT,
    max_tokens: int | None = None,
    max_cost_usd: float | None = None,
) -> Callable[[TaskFunction], TaskFunction]:
    """Register the decorated `async def fn(ctx, payload)` as task type `name`, in queue `queue` (its backoff
    defaults to the queue's: 1, 5 and 15 minutes for `sync`)."""
    if not queues.NAME.match(queue):
        raise ValueError(f"task type {name}: queue {queue!r} is not a lowercase name")

    def register(function: TaskFunction) -> TaskFunction:
        doc = (function.__doc__ or "").strip().splitlines()
        _registry[name] = TaskType(
            name=name,
            payload=payload,
            function=function,
            steps=tuple(steps),
            timeout_s=timeout_s,
            max_attempts=max_attempts,
            backoff=backoff or QUEUE_BACKOFF.get(queue, Backoff()),
            priority=Priority(priority),
            description=description or (doc[0] if doc else ""),
            requires=tuple(requires),
            queue=queue,
            **SpendCap(max_tokens=max_tokens, max_cost_usd=max_cost_usd).model_dump(),  # checked at import
        )
        return function

    return register


def load(modules: Iterable[str]) -> None:
    """Import the modules that register task types (Settings.task_modules)."""
    for module in modules:
        importlib.import_module(module)


def get(name: str) -> TaskType:
    try:
        return _registry[name]
    except KeyError:
        known = ", ".join(sorted(_registry)) or "none"
        raise UnknownTaskType(f"unknown task type {name!r}; registered types: {known}") from None


def all_types() -> list[TaskType]:
    return sorted(_registry.values(), key=lambda t: t.name)


def queue_names() -> set[str]:
    """The queues the registered types name, and `default`."""
    return {queues.DEFAULT, *(t.queue for t in _registry.values())}
