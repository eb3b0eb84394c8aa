"""Metric buckets read back over a time range (storage/counters.py writes them).

Counters live in the hashes `{prefix}m:1m:{minute}` and `{prefix}m:1h:{hour}` (lua/transition.lua
adds every counter to both), error messages in one sorted set per hour. Reading a range costs one
command per bucket, in one pipeline, so it grows with the range and never with the number of jobs.
"""
from __future__ import annotations

import math
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from functools import cached_property
from itertools import pairwise
from typing import Any

from pydantic import BaseModel

from ..models import Priority
from ..storage.counters import DURATION_BOUNDS_S, TOP_ERRORS_PER_HOUR, WAIT_BOUNDS_S, error_key
from ..storage.store import Store

RANGES = {"1h": ("1m", 60, 60), "24h": ("1m", 60, 1440), "7d": ("1h", 3600, 168), "30d": ("1h", 3600, 720)}


class Bucket(BaseModel):
    at: datetime
    counters: dict[str, float]

    def get(self, name: str) -> float:
        return self.counters.get(name, 0.0)


class ErrorCount(BaseModel):
    message: str
    count: int


class Percentiles(BaseModel):
    type: str
    count: int
    mean_s: float | None
    p50_s: float | None
    p95_s: float | None


class UserRate(BaseModel):
    user: str
    completed: int
    failed: int
    success_rate: float | None


class Window(BaseModel):
    """The metric buckets of one time range, oldest first, and what the charts derive from them."""

    range: str
    resolution: str
    buckets: list[Bucket]
    top_errors: list[ErrorCount]

    @cached_property
    def totals(self) -> dict[str, float]:
        """Every counter summed over the range, in one pass over the buckets (a 7-day window holds 168
        buckets of a few hundred counters each; every total and breakdown below reads these sums)."""
        sums: dict[str, float] = defaultdict(float)
        for b in self.buckets:
            for name, n in b.counters.items():
                sums[name] += n
        return dict(sums)

    def overall(self) -> Window:
        """The whole range as one bucket holding those sums, for code that adds counters over buckets."""
        at = self.buckets[0].at if self.buckets else datetime.fromtimestamp(0, UTC)
        return Window.model_construct(range=self.range, resolution=self.resolution, top_errors=self.top_errors,
                                      buckets=[Bucket.model_construct(at=at, counters=self.totals)])

    @property
    def span(self) -> tuple[datetime, datetime]:
        """From the start of the first bucket to the end of the last."""
        size = timedelta(seconds=60 if self.resolution == "1m" else 3600)
        return self.buckets[0].at, self.buckets[-1].at + size

    def total(self, name: str) -> float:
        return self.totals.get(name, 0.0)

    def success_rate(self) -> float | None:
        done, failed = self.total("completed"), self.total("failed")
        return done / (done + failed) if done + failed else None

    def mean_wait_s(self) -> float | None:
        n = self.total("wait_n")
        return self.total("wait_s") / n if n else None

    def queue_depth(self) -> list[dict[str, Any]]:
        """Mean depth per priority in each bucket that has samples."""
        return [{"at": b.at, **{p.value: b.get(f"depth:{p.value}") / b.get("depth_n") for p in Priority}}
                for b in self.buckets if b.get("depth_n")]

    def throughput(self) -> list[dict[str, Any]]:
        return [{"at": b.at, "completed": b.get("completed"), "failed": b.get("failed")} for b in self.buckets]

    def success_over_time(self) -> list[dict[str, Any]]:
        rows = []
        for b in self.buckets:
            done, failed = b.get("completed"), b.get("failed")
            rows.append({"at": b.at, "success_rate": done / (done + failed) if done + failed else None})
        return rows

    def durations(self) -> list[Percentiles]:
        counts: dict[str, dict[str, float]] = {}
        for name, n in self.totals.items():
            if name.startswith("hist:duration:"):
                job_type, bound = name.removeprefix("hist:duration:").rsplit(":", 1)
                counts.setdefault(job_type, {})[bound] = n
        rows = []
        for job_type, hist in sorted(counts.items()):
            n = self.total(f"duration_n:{job_type}")
            rows.append(Percentiles(
                type=job_type, count=int(sum(hist.values())),
                mean_s=self.total(f"duration_s:{job_type}") / n if n else None,
                p50_s=percentile(hist, DURATION_BOUNDS_S, 0.5), p95_s=percentile(hist, DURATION_BOUNDS_S, 0.95),
            ))
        return rows

    def wait_histogram(self) -> list[dict[str, Any]]:
        labels = [f"{b:g}" for b in WAIT_BOUNDS_S] + ["inf"]
        return [{"le": label, "count": int(self.total(f"hist:wait:{label}"))} for label in labels]

    def by_user(self) -> list[UserRate]:
        totals: dict[str, dict[str, float]] = {}
        for name, n in self.totals.items():
            if name.startswith("user:"):
                _, outcome, user = name.split(":", 2)
                totals.setdefault(user, {})[outcome] = n
        rows = [UserRate(user=user, completed=int(t.get("completed", 0)), failed=int(t.get("failed", 0)),
                         success_rate=rate(t.get("completed", 0), t.get("failed", 0))) for user, t in totals.items()]
        return sorted(rows, key=lambda r: (-(r.completed + r.failed), r.user))


def rate(done: float, failed: float) -> float | None:
    return done / (done + failed) if done + failed else None


def percentile(hist: dict[str, float], bounds: tuple[float, ...], q: float) -> float | None:
    """Linear interpolation inside the bucket that holds the q-th observation; the open last bucket
    reports its lower edge."""
    total = sum(hist.values())
    if not total:
        return None
    edges = [0.0, *bounds, math.inf]
    labels = [f"{b:g}" for b in bounds] + ["inf"]
    seen = 0.0
    for (lower, upper), label in zip(pairwise(edges), labels, strict=True):
        n = hist.get(label, 0)
        if n and seen + n >= q * total:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (q * total - seen) / n
        seen += n
    return edges[-2]


async def window(store: Store, range_: str, now: float | None = None) -> Window:
    """One pipeline: HGETALL of every bucket in the range, and the top errors of every hour in it."""
    resolution, size, count = RANGES[range_]
    now = time.time() if now is None else now
    starts = [int(now // size * size - size * i) for i in reversed(range(count))]
    hours = sorted({int(s // 3600 * 3600) for s in starts})
    async with store.redis.pipeline(transaction=False) as pipe:
        for start in starts:
            pipe.hgetall(store.keys.metrics(resolution, start))
        for hour in hours:
            pipe.zrevrange(error_key(store.keys, hour), 0, TOP_ERRORS_PER_HOUR - 1, withscores=True)
        rows = await pipe.execute()
    buckets = [Bucket.model_construct(at=datetime.fromtimestamp(s, UTC),
                                      counters={k: float(v) for k, v in row.items()})
               for s, row in zip(starts, rows[:len(starts)], strict=True)]  # Redis's numbers: nothing to validate
    errors: dict[str, float] = {}
    for top in rows[len(starts):]:
        for message, n in top:
            errors[message] = errors.get(message, 0) + n
    ranked = sorted(errors.items(), key=lambda item: (-item[1], item[0]))[:20]
    return Window(range=range_, resolution=resolution, buckets=buckets,
                  top_errors=[ErrorCount(message=m, count=int(n)) for m, n in ranked])
