"""Client: AsyncClient's methods, blocking, for Streamlit pages and scripts.

Each method is made from AsyncClient's (`blocking`, `iterating`): the same parameters, defaults, return
type and docstring, run on one private event loop thread that the client owns.
"""
from __future__ import annotations

import asyncio
import builtins
import functools
import inspect
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Concatenate, ParamSpec, TypeVar

from ..policy import access
from ..registry import TaskType
from ..settings import Settings
from .facade import AsyncClient

P = ParamSpec("P")
R = TypeVar("R")
Y = TypeVar("Y")


def blocking(method: Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, R]]
             ) -> Callable[Concatenate[Client, P], R]:
    """A Client method that runs AsyncClient's `method` and waits for its answer."""
    @functools.wraps(method)
    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._call(method(self.aio, *args, **kwargs))

    call.__qualname__ = f"Client.{method.__name__}"
    return call


def iterating(method: Callable[Concatenate[AsyncClient, P], AsyncIterator[Y]]
              ) -> Callable[Concatenate[Client, P], Iterator[Y]]:
    """A Client method that iterates what AsyncClient's `method` yields, closing it when left early."""
    @functools.wraps(method)
    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[Y]:
        return self._iterate(method(self.aio, *args, **kwargs))

    call.__qualname__ = f"Client.{method.__name__}"
    # help() and get_type_hints() must not show AsyncClient's return type (an AsyncIterator)
    call.__annotations__ = {k: v for k, v in method.__annotations__.items() if k != "return"}
    call.__signature__ = inspect.signature(method).replace(return_annotation=inspect.Signature.empty)  # type: ignore[attr-defined]  # inspect reads it; typeshed's _Wrapped does not declare it
    return call


async def following(items: AsyncIterator[Y]) -> Y:
    return await anext(items)


class Client:
    """The blocking face of AsyncClient, for Streamlit pages and scripts: one private event loop thread."""

    def __init__(self, settings: Settings | None = None, user: str | None = None,
                 principal: access.Principal | None = None) -> None:
        self.aio = AsyncClient(settings, user, principal)
        self.settings, self.user = self.aio.settings, self.aio.user
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="taskdeck-client", daemon=True)
        self._thread.start()

    def _call(self, coro: Coroutine[Any, Any, R]) -> R:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _iterate(self, items: AsyncIterator[Y]) -> Iterator[Y]:
        try:
            while True:
                try:
                    yield self._call(following(items))
                except StopAsyncIteration:
                    return
        finally:
            if isinstance(items, AsyncGenerator):
                self._call(items.aclose())

    def close(self) -> None:
        self._call(self.aio.close())
        self._call(self._loop.shutdown_default_executor())  # the threads of the oversight readers (oversight.py)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def principal(self) -> access.Principal:
        """Who acts and their role (what the dashboard shows and hides by; runner enforces it anyway)."""
        return self.aio.principal

    def types(self) -> builtins.list[TaskType]:
        return self.aio.types()

    submit = blocking(AsyncClient.submit)
    get = blocking(AsyncClient.get)
    job_or_archived = blocking(AsyncClient.job_or_archived)
    list = blocking(AsyncClient.list)
    page = blocking(AsyncClient.page)
    cancel = blocking(AsyncClient.cancel)
    retry = blocking(AsyncClient.retry)
    wait_terminal = blocking(AsyncClient.wait_terminal)
    stats = blocking(AsyncClient.stats)
    audit = blocking(AsyncClient.audit)
    note = blocking(AsyncClient.note)
    limits = blocking(AsyncClient.limits)
    set_limit = blocking(AsyncClient.set_limit)
    schedules = blocking(AsyncClient.schedules)
    save_schedule = blocking(AsyncClient.save_schedule)
    pause_schedule = blocking(AsyncClient.pause_schedule)
    run_schedule = blocking(AsyncClient.run_schedule)
    delete_schedule = blocking(AsyncClient.delete_schedule)
    workers = blocking(AsyncClient.workers)
    ping = blocking(AsyncClient.ping)
    history = blocking(AsyncClient.history)
    count = blocking(AsyncClient.count)
    get_many = blocking(AsyncClient.get_many)
    live = blocking(AsyncClient.live)
    metrics = blocking(AsyncClient.metrics)
    events = blocking(AsyncClient.events)
    follow = iterating(AsyncClient.follow)
    last_event_id = blocking(AsyncClient.last_event_id)
    artifact = blocking(AsyncClient.artifact)
    export_csv = iterating(AsyncClient.export_csv)
    cancel_many = blocking(AsyncClient.cancel_many)
    retry_many = blocking(AsyncClient.retry_many)
    retry_matching = blocking(AsyncClient.retry_matching)
    job_usage = blocking(AsyncClient.job_usage)
    llm_status = blocking(AsyncClient.llm_status)
    breakers = blocking(AsyncClient.breakers)
    reset_breaker = blocking(AsyncClient.reset_breaker)
    sources = blocking(AsyncClient.sources)
    enable_source = blocking(AsyncClient.enable_source)
    archive_status = blocking(AsyncClient.archive_status)
    archive_backfill = blocking(AsyncClient.archive_backfill)
    archive_prune = blocking(AsyncClient.archive_prune)
    profile = blocking(AsyncClient.profile)
    set_profile = blocking(AsyncClient.set_profile)
    notifications = blocking(AsyncClient.notifications)
    mark_read = blocking(AsyncClient.mark_read)
    unread_count = blocking(AsyncClient.unread_count)
    inbox_counts = blocking(AsyncClient.inbox_counts)
    deliveries = blocking(AsyncClient.deliveries)
    delivery_health = blocking(AsyncClient.delivery_health)
    alert_rules = blocking(AsyncClient.alert_rules)
    set_alert_rule = blocking(AsyncClient.set_alert_rule)
    delete_alert_rule = blocking(AsyncClient.delete_alert_rule)
    alerts = blocking(AsyncClient.alerts)
