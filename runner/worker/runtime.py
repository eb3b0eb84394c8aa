"""What task functions share inside a worker: its settings, a Redis pool and the LLM client, one set per
event loop (a worker process runs one loop; tests run one per test)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from redis.asyncio import Redis

from ..settings import Settings
from ..storage.store import connect

if TYPE_CHECKING:
    from ..llm.client import LLM


@dataclass
class Runtime:
    settings: Settings
    redis: Redis
    _llm: LLM | None = field(default=None, repr=False)

    @property
    def prefix(self) -> str:
        return self.settings.prefix

    def llm(self) -> LLM:
        """The shared LLM client; runner.Fatal with what to set when no endpoint is configured."""
        if self._llm is None:
            from ..llm.client import LLM
            from ..policy import admission

            admission.require_llm(self.settings)
            self._llm = LLM(self.settings, self.redis)
        return self._llm

    async def close(self) -> None:
        if self._llm is not None:
            await self._llm.close()
        await self.redis.aclose()


_runtimes: WeakKeyDictionary[asyncio.AbstractEventLoop, Runtime] = WeakKeyDictionary()


def runtime() -> Runtime:
    loop = asyncio.get_running_loop()
    if loop not in _runtimes:
        settings = Settings()
        _runtimes[loop] = Runtime(settings, connect(settings, resilient=True))
    return _runtimes[loop]


async def close() -> None:
    """Release this loop's runtime (tests; a worker keeps its own until the process ends)."""
    found = _runtimes.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.close()
