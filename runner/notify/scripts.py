"""The notification Lua scripts (lua/*.lua), with Taskdeck's key names written in as storage's are
(storage.store.render): one text per key prefix."""
from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

from redis.commands.core import AsyncScript

from ..storage.keys import Keys
from ..storage.store import Store, render


@cache
def source(prefix: str, queue: str, name: str) -> str:
    return render(Keys(prefix, queue), files("runner.notify").joinpath(f"lua/{name}.lua").read_text())


def script(store: Store, name: str) -> AsyncScript:
    return store.redis.register_script(source(store.keys.prefix, store.keys.queue, name))


async def run(store: Store, name: str, args: list[Any], client: Any = None) -> Any:
    """lua/<name>.lua with `args` as its ARGV (the scripts take no KEYS: every name is written in)."""
    return await script(store, name)(keys=[], args=args, client=client)
