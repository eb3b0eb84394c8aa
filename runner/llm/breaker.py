"""A circuit breaker per LLM endpoint, kept in Redis so that every worker shares it and the Workers page
can show it: after `failures` consecutive failed tries, calls fail fast for `cooldown_s`."""
from __future__ import annotations

import time
from importlib.resources import files

from redis.asyncio import Redis

from ..storage.keys import Keys
from .errors import CircuitOpen

SCRIPT = files("runner.llm").joinpath("lua/breaker.lua").read_text()


class Breaker:
    def __init__(self, redis: Redis, prefix: str, endpoint: str, failures: int, cooldown_s: float) -> None:
        self.endpoint = endpoint
        keys = Keys(prefix)
        self._keys = [keys.llm_breaker(endpoint), keys.llm_probe(endpoint), keys.llm_endpoints]
        self._threshold = failures
        self._cooldown_ms = int(cooldown_s * 1000)
        self._script = redis.register_script(SCRIPT)

    async def _run(self, op: str, error: str = "") -> list[int | str]:
        args: list[str | int] = [op, int(time.time() * 1000), self._threshold, self._cooldown_ms, self.endpoint,
                                 error[:500]]
        reply: list[int | str] = await self._script(keys=self._keys, args=args)
        return reply

    async def allow(self) -> None:
        """Go ahead, or raise CircuitOpen while the breaker is open."""
        wait_ms, failures, last = await self._run("allow")
        if int(wait_ms) > 0:
            raise CircuitOpen(
                f"LLM endpoint {self.endpoint} failed {failures} times in a row (last: {last}); calls are paused "
                f"for another {int(wait_ms) / 1000:.0f} s. Check the endpoint, or reset its breaker on the "
                "Workers page."
            )

    async def failed(self, error: str) -> None:
        await self._run("failure", error)

    async def succeeded(self) -> None:
        await self._run("success")
