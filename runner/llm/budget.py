"""The requests- and tokens-per-minute budget of one endpoint, shared by every worker through Redis."""
from __future__ import annotations

import asyncio
import time
from importlib.resources import files

from redis.asyncio import Redis

from ..storage.keys import Keys, lua_locals

TTL_MS = 120_000  # an unused budget's hash expires after two minutes (its buckets refill in one)
SCRIPT = lua_locals({"TTL_MS": TTL_MS}) + "\n" + files("runner.llm").joinpath("lua/budget.lua").read_text()


class Budget:
    """Each call takes one request and an estimate of its tokens before it is sent, waiting while the
    budget is spent; afterwards `settle` books the difference between the estimate and the real usage."""

    def __init__(self, redis: Redis, prefix: str, endpoint: str, rpm: int, tpm: int) -> None:
        self.rpm, self.tpm = rpm, tpm
        self._key = Keys(prefix).llm_budget(endpoint)
        self._script = redis.register_script(SCRIPT)

    @property
    def limited(self) -> bool:
        return bool(self.rpm or self.tpm)

    async def _run(self, op: str, tokens: int) -> int:
        args: list[str | int] = [op, int(time.time() * 1000), self.rpm, self.tpm, tokens]
        return int(await self._script(keys=[self._key], args=args))

    async def take(self, tokens: int) -> float:
        """Wait until the budget has room for one request of `tokens`; returns the seconds waited."""
        if not self.limited:
            return 0.0
        waited = 0.0
        while (wait_ms := await self._run("take", tokens)) > 0:
            await asyncio.sleep(wait_ms / 1000)
            waited += wait_ms / 1000
        return waited

    async def settle(self, taken: int, used: int) -> None:
        if self.tpm and used != taken:
            await self._run("settle", used - taken)
