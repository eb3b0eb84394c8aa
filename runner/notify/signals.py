"""What alert rules watch: the readings (queue depth, metric counters, workers, stalled jobs, LLM breakers,
sources), each read at most once per evaluation, and one small function per rule kind from those readings
to a Verdict: whether its condition holds, what to say, and the page that explains it.
"""
from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from ..models import JobStatus, Priority
from ..reads import live
from ..reads.live import LiveRecord
from ..reads.llm_status import BreakerState, breaker_state
from ..storage.keys import BUCKET_SECONDS, bucket_start
from ..storage.store import Store
from ..web import sources
from ..web.sources import Source

MINUTE_BUCKETS_UP_TO_S = 3 * 3600  # longer windows are summed from hour buckets
STALLED_SCAN = 500  # running jobs looked at for job_stalled
SOURCES_SCAN = 1000  # sources looked at for source_unhealthy (the most recently checked)
NAMED = 3  # how many stalled jobs, breakers or sources a message names


class Verdict(NamedTuple):
    condition: bool
    detail: str
    link: str


class Readings:
    """The current readings for one evaluation of all rules; each read once, when a rule first needs it."""

    def __init__(self, store: Store, now: float | None = None) -> None:
        self.store, self.now = store, time.time() if now is None else now
        self._cache: dict[Any, Any] = {}

    async def once(self, key: Any, read: Callable[[], Awaitable[Any]]) -> Any:
        if key not in self._cache:
            self._cache[key] = await read()
        return self._cache[key]

    async def depth(self) -> int:
        """Jobs waiting in the queue (queued or retrying), over every priority: `stats().queue_depth`."""
        async def read() -> int:
            async with self.store.redis.pipeline(transaction=False) as pipe:
                for priority in Priority:
                    pipe.zcard(self.store.keys.pending(priority))
                return sum(await pipe.execute())
        return int(await self.once("depth", read))

    async def totals(self, window_s: float) -> dict[str, float]:
        """Every metric counter summed over the last `window_s` seconds (the buckets that overlap it)."""
        resolution = "1m" if window_s <= MINUTE_BUCKETS_UP_TO_S else "1h"
        size = BUCKET_SECONDS[resolution]
        last = bucket_start(resolution, self.now)
        starts = [last - size * i for i in range(math.ceil(window_s / size))]

        async def read() -> dict[str, float]:
            async with self.store.redis.pipeline(transaction=False) as pipe:
                for start in starts:
                    pipe.hgetall(self.store.keys.metrics(resolution, start))
                rows = await pipe.execute()
            sums: dict[str, float] = defaultdict(float)
            for row in rows:
                for name, value in row.items():
                    sums[name] += float(value)
            return dict(sums)
        found: dict[str, float] = await self.once(("totals", resolution, len(starts)), read)
        return found

    async def workers_alive(self) -> int:
        async def read() -> int:
            return int(await self.store.redis.zcount(self.store.keys.workers, self.now, "+inf"))
        return int(await self.once("workers", read))

    async def running(self) -> list[LiveRecord]:
        """The running jobs (oldest first, up to STALLED_SCAN), as the Live board reads them."""
        async def read() -> list[LiveRecord]:
            ids = await self.store.redis.zrange(self.store.keys.status(JobStatus.processing), 0, STALLED_SCAN - 1)
            jobs, _ = await live.read(self.store, ids)
            return jobs
        found: list[LiveRecord] = await self.once("running", read)
        return found

    async def breakers(self) -> list[BreakerState]:
        """Every LLM endpoint the workers have called, with its breaker (as the Workers page shows it)."""
        async def read() -> list[BreakerState]:
            keys = self.store.keys
            names = sorted(await self.store.redis.smembers(keys.llm_endpoints))  # type: ignore[misc]  # redis-py types replies `Awaitable[T] | T` for both clients
            async with self.store.redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hgetall(keys.llm_breaker(name))
                rows = await pipe.execute()
            threshold, now_ms = self.store.settings.llm_breaker_failures, int(self.now * 1000)
            return [breaker_state(raw, threshold, now_ms) for raw in rows if raw.get("endpoint")]
        found: list[BreakerState] = await self.once("breakers", read)
        return found

    async def sources(self) -> list[Source]:
        """Every owner's sources, the SOURCES_SCAN most recently checked."""
        async def read() -> list[Source]:
            keys = self.store.keys
            found = [sources.pair(m) for m in await self.store.redis.zrevrange(keys.sources_all, 0, SOURCES_SCAN - 1)]
            async with self.store.redis.pipeline(transaction=False) as pipe:
                for owner, url in found:
                    pipe.hgetall(keys.source(owner, url))
                rows = await pipe.execute()
            return [sources.decode(owner, url, raw) for (owner, url), raw in zip(found, rows, strict=True) if raw]
        found: list[Source] = await self.once("sources", read)
        return found


def named(items: list[str]) -> str:
    more = f" and {len(items) - NAMED} more" if len(items) > NAMED else ""
    return ", ".join(items[:NAMED]) + more


async def queue_depth(params: Any, readings: Readings) -> Verdict:
    depth = await readings.depth()
    return Verdict(depth > params.over, f"{depth} jobs waiting in queue {params.queue} (threshold {params.over})",
                   "/live")


async def failure_rate(params: Any, readings: Readings) -> Verdict:
    totals = await readings.totals(params.window_s)
    suffix = f":{params.type}" if params.type else ""
    failed, done = totals.get(f"failed{suffix}", 0.0), totals.get(f"completed{suffix}", 0.0)
    finished = failed + done
    rate = 100 * failed / finished if finished else 0.0
    what = f"type {params.type}" if params.type else "all types"
    detail = (f"{rate:.1f} % of {finished:.0f} finished jobs failed in the last {params.window_s / 60:g} min "
              f"({what}; threshold {params.over_pct:g} %, at least {params.min_count} finished)")
    return Verdict(finished >= params.min_count and rate > params.over_pct, detail, "/metrics")


async def no_worker(params: Any, readings: Readings) -> Verdict:
    alive = await readings.workers_alive()
    return Verdict(alive == 0, "no live worker: queued jobs are not running" if alive == 0 else
                   f"{alive} workers alive", "/workers")


async def job_stalled(params: Any, readings: Readings) -> Verdict:
    after_s = readings.store.settings.stalled_after_s
    stalled = [job for job in await readings.running()
               if readings.now - job.updated_at.timestamp() > after_s and (not params.type or job.type == params.type)]
    if not stalled:
        return Verdict(False, f"no running job stalled (over {after_s:g} s without a change)", "/live")
    first = stalled[0]
    detail = (f"{len(stalled)} running jobs unchanged for over {after_s:g} s: "
              f"{named([f'{job.id} ({job.type}, {job.user_id})' for job in stalled])}")
    return Verdict(True, detail, f"/job?id={first.id}" if len(stalled) == 1 else "/live")


async def breaker_open(params: Any, readings: Readings) -> Verdict:
    """Open or half-open: the endpoint has not answered since the breaker opened (a half-open one lets
    one probe through, and closes on its success)."""
    tripped = [b for b in await readings.breakers()
               if b.state != "closed" and (not params.endpoint or b.endpoint == params.endpoint)]
    if not tripped:
        return Verdict(False, "every LLM circuit breaker is closed", "/workers")
    detail = ("LLM circuit breaker open: " +
              named([f"{b.endpoint} after {b.failures} failures (last: {b.last_error or '-'})" for b in tripped]))
    return Verdict(True, detail, "/workers")


async def source_unhealthy(params: Any, readings: Readings) -> Verdict:
    sick = [s for s in await readings.sources() if not s.healthy and (not params.url or s.url == params.url)]
    if not sick:
        return Verdict(False, "every source is healthy", "/workers")
    detail = "sources marked unhealthy: " + named([f"{s.url} of {s.owner} (last: {s.last_error or '-'})" for s in sick])
    return Verdict(True, detail, "/workers")


async def llm_spend(params: Any, readings: Readings) -> Verdict:
    spent = (await readings.totals(params.window_s)).get("llm_cost_usd", 0.0)
    detail = f"LLM spend ${spent:.2f} in the last {params.window_s / 3600:g} h (budget ${params.budget_usd:.2f})"
    return Verdict(spent > params.budget_usd, detail, "/metrics")


KINDS: dict[str, Callable[[Any, Readings], Awaitable[Verdict]]] = {
    "queue_depth": queue_depth, "failure_rate": failure_rate, "no_worker": no_worker, "job_stalled": job_stalled,
    "breaker_open": breaker_open, "source_unhealthy": source_unhealthy, "llm_spend": llm_spend,
}
