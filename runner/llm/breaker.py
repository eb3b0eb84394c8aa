"""A circuit breaker per LLM endpoint, kept in Redis so that every worker shares it and the Workers page
can show it: after `failures` consecutive failed tries, calls fail fast for `cooldown_s`."""
from __future__ import annotations

import time
from importlib.resources import files

from redis.asyncio import Redis

from .errors import CircuitOpen

SCRIPT = files("runner.llm").joinpath("lua/breaker.lua").read_text()


def state_key(prefix: str, endpoint: str) -> str:
    return f"{prefix}llm:breaker:{endpoint}"


def endpoints_key(prefix: str) -> str:
    return f"{prefix}llm:endpoints"


class Breaker:
    def __init__(self, redis: Redis, prefix: str, endpoint: str, failures: int, cooldown_s: float) -> None:
        self.endpoint = endpoint
        self._keys = [state_key(prefix, endpoint), f"{state_key(prefix, endpoint)}:probe", endpoints_key(prefix)]
        self._threshold = failures
        self._cooldown_ms = int(cooldown_s * 1000)
        self._script = redis.register_script(SCRIPT)

    async def _run(self, op: str, error: str = "") -> list[int | str]:
        args: list[str | int] = [op, int(time.time() * 1000), self._threshold, self._cooldown_ms, self.endpoint,
                                 error[:500]]
        return await self._script(keys=self._keys, args=args)

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
