"""Spend caps that stop spending. A job's own caps (Job.max_tokens, max_cost_usd: over all its attempts) are
checked by the LLM client before each call and after each streamed piece of a reply, against what the job has
used (TaskContext.usage) plus what the call would add (its prompt, and the reply so far, estimated at 4
characters a token): past one, the call stops and the job fails with "budget exceeded" (BudgetExceeded, a
Fatal: no retry of the same cap can help). Its checkpoints and partial output stay, so a retry with a higher
cap resumes after the last completed step.

Per user and per organisation, per UTC day and month (Settings.user_spend_caps, org_spend_caps): what their
jobs spent is counted in one hash per period (Keys.spend; usage.record adds each call), and a cap that is
spent refuses the next submit (policy.admission, LimitExceeded) and the next call of a running job.
"""
from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Literal

from redis.asyncio import Redis

from ..context import TaskContext
from ..errors import Fatal
from ..models import SpendCap
from ..settings import Settings
from ..storage.keys import Keys
from . import pricing
from .usage import Call, period_label

Period = Literal["day", "month"]
ADJECTIVE = {"day": "daily", "month": "monthly"}
SETTING = {"user": "TASKDECK_USER_SPEND_CAPS", "org": "TASKDECK_ORG_SPEND_CAPS"}


class BudgetExceeded(Fatal):
    """A spend cap stopped the job; `call` is the usage of a reply cut off mid-stream (estimated)."""

    def __init__(self, message: str, call: Call | None = None) -> None:
        super().__init__(message)
        self.call = call


def estimate_tokens(text: str) -> int:
    return len(text) // 4 + 1


def prompt_tokens(messages: Sequence[Mapping[str, str]]) -> int:
    return estimate_tokens(json.dumps(list(messages)))


# A job's own caps.

def job_over(task: TaskContext, prices: pricing.Prices, model: str, tokens_in: int, tokens_out: int) -> str | None:
    """Why a call of `tokens_in` + `tokens_out` more would take `task`'s job past its caps; None if it would not."""
    caps = task.caps
    if not caps.capped:
        return None
    used = task.usage or {"tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0}
    had = int(used["tokens_in"]) + int(used["tokens_out"])
    adding = tokens_in + tokens_out
    fix = "; retry it with a higher cap to resume after its last completed step"
    if caps.max_tokens is not None and had + adding > caps.max_tokens:
        return (f"budget exceeded: the job's max_tokens is {caps.max_tokens:,}; it had used {had:,} tokens and this "
                f"call would take about {adding:,} more{fix}")
    cost = float(used["cost_usd"]) + pricing.cost(prices, model, tokens_in, tokens_out)
    if caps.max_cost_usd is not None and cost > caps.max_cost_usd:
        return (f"budget exceeded: the job's max_cost_usd is ${caps.max_cost_usd:,.4f}; with this call it would "
                f"cost about ${cost:,.4f}{fix}")
    return None


@dataclass
class Meter:
    """One call's watch over its job's caps: before it is sent, and as its reply streams in."""

    task: TaskContext
    prices: pricing.Prices
    model: str
    tokens_in: int
    started: float

    def before(self) -> None:
        problem = job_over(self.task, self.prices, self.model, self.tokens_in, 0)
        if problem:
            raise BudgetExceeded(problem)

    def streamed(self, chars: int) -> None:
        """After each piece of the reply (`chars` of it so far): stop the call once it is past a cap."""
        tokens_out = chars // 4 + 1
        problem = job_over(self.task, self.prices, self.model, self.tokens_in, tokens_out)
        if problem:
            raise BudgetExceeded(f"{problem} (stopped mid-reply)", self.cut_off(tokens_out))

    def cut_off(self, tokens_out: int) -> Call:
        """The usage of a reply stopped here: estimated, since the endpoint reports it only at the end."""
        return Call(model=self.model, tokens_in=self.tokens_in, tokens_out=tokens_out,
                    cost_usd=pricing.cost(self.prices, self.model, self.tokens_in, tokens_out),
                    seconds=round(time.monotonic() - self.started, 3), estimated=True, finish_reason="budget",
                    priced=pricing.price(self.prices, self.model) is not None)


# Per user and per org, per day and month.

@dataclass(frozen=True)
class Scope:
    kind: str  # user or org
    name: str
    period: str  # day or month
    cap: SpendCap


def period_end(period: str, at: float) -> datetime:
    moment = datetime.fromtimestamp(at, UTC)
    if period == "day":
        return datetime(moment.year, moment.month, moment.day, tzinfo=UTC) + timedelta(days=1)
    return datetime(moment.year + moment.month // 12, moment.month % 12 + 1, 1, tzinfo=UTC)


def first_match(table: Mapping[str, Mapping[Period, SpendCap]], name: str) -> Mapping[Period, SpendCap]:
    for pattern, caps in table.items():
        if fnmatchcase(name.lower(), pattern.strip().lower()):
            return caps
    return {}


def scopes(settings: Settings, user: str, org: str) -> list[Scope]:
    """The capped (scope, period)s a job of `user` in `org` counts against: the first pattern that matches
    each, in Settings.user_spend_caps and org_spend_caps."""
    found = []
    for kind, name, table in (("user", user, settings.user_spend_caps), ("org", org, settings.org_spend_caps)):
        if name:
            found += [Scope(kind, name, period, cap) for period, cap in first_match(table, name).items() if cap.capped]
    return found


async def spent(redis: Redis, prefix: str, found: Sequence[Scope], at: float) -> list[tuple[float, float]]:
    """(tokens, USD) each scope has spent in its current period: one round trip."""
    keys = Keys(prefix)
    async with redis.pipeline(transaction=False) as pipe:
        for scope in found:
            pipe.hmget(keys.spend(period_label(scope.period, at)),
                       [f"tokens:{scope.kind}:{scope.name}", f"cost_usd:{scope.kind}:{scope.name}"])
        rows = await pipe.execute()
    return [(float(tokens or 0), float(cost or 0)) for tokens, cost in rows]


@dataclass(frozen=True)
class Spent:
    """A scope whose cap is spent: what to tell the user, and when its period ends."""

    message: str
    until: datetime


async def first_spent(redis: Redis, settings: Settings, user: str, org: str, at: float | None = None) -> Spent | None:
    """The first per-user or per-org cap that `user`'s (and `org`'s) spend this day or month has reached."""
    found = scopes(settings, user, org)
    if not found:
        return None
    at = at or time.time()
    for scope, (tokens, cost) in zip(found, await spent(redis, settings.prefix, found, at), strict=True):
        cap, whose = scope.cap, (scope.name if scope.kind == "user" else f"organisation {scope.name}")
        if cap.max_tokens is not None and tokens >= cap.max_tokens:
            used = f"{int(tokens):,} of the {cap.max_tokens:,} LLM tokens"
        elif cap.max_cost_usd is not None and cost >= cap.max_cost_usd:
            used = f"${cost:,.4f} of the ${cap.max_cost_usd:,.2f}"
        else:
            continue
        until = period_end(scope.period, at)
        return Spent(f"budget exceeded: {whose} has spent {used} allowed per {scope.period} "
                     f"({ADJECTIVE[scope.period]} cap, {SETTING[scope.kind]}) until {until:%Y-%m-%d %H:%M} UTC; "
                     "ask an admin to raise it", until)
    return None
