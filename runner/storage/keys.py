"""Redis key names: Taskdeck's own under one prefix, and the ARQ 0.28 keys that Taskdeck touches.

The Lua scripts spell no key name either: store.render writes these same names into every script at
load time (a builder such as `K.job(id)` as a concatenation, `lua_concat`), so a name changes here or nowhere.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from arq.constants import (
    abort_jobs_ss,
    default_queue_name,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)

from ..models import JobStatus
from ..queues import DEFAULT as DEFAULT_QUEUE

BUCKET_SECONDS = {"1m": 60, "1h": 3600}  # metric bucket resolutions: `metrics(resolution, start)`
BUCKET_TTL_S = {"1m": 3 * 86400, "1h": 35 * 86400}
PENDING = (JobStatus.queued, JobStatus.retrying)  # the statuses that `pending(priority)` holds


class Keys:
    def __init__(self, prefix: str, queue: str = default_queue_name) -> None:
        self.prefix = prefix
        self.queue = queue
        self.all = f"{prefix}idx:all"
        self.dead = f"{prefix}idx:dead"
        self.expiry = f"{prefix}idx:expiry"
        self.events = f"{prefix}events"
        self.audit = f"{prefix}audit"
        self.limits = f"{prefix}limits"
        self.wake = f"{prefix}wake"
        self.workers = f"{prefix}workers"  # worker id -> the time until which it counts as alive
        self.llm_endpoints = f"{prefix}llm:endpoints"  # every LLM endpoint a worker has called
        self.tokens = f"{prefix}tokens"  # API bearer tokens: SHA-256 of the token -> its record (policy.tokens)
        self.schedules = f"{prefix}schedules"  # schedule name -> the schedule (client.schedules)
        self.schedules_seeded = f"{prefix}schedules:seeded"  # default schedules created once (deleted stay so)
        self.sources_all = f"{prefix}sources:all"  # every owner's sources, each a member(owner, url) (web.sources)
        self.alert_rules = f"{prefix}alerts:rules"  # rule id -> the alert rule's JSON (notify.alerts)
        self.token_secrets = f"{prefix}tokens:secrets"  # API token id -> its webhook signing secret (policy.tokens)
        self.notify_due = f"{prefix}notify:due"  # delivery id -> when it is due (or its claim's lease ends)
        self.notify_deliveries = f"{prefix}notify:deliveries"  # delivery id -> the delivery waiting to be sent
        self.notify_failing = f"{prefix}notify:failing"  # ids of deliveries whose last attempt failed
        self.notify_health = f"{prefix}notify:health"  # the last delivery error, and deliveries given up

    def arq_queue(self, name: str) -> str:
        """ARQ's queue of the named queue `name` (queues.py): `queue` itself for `default`."""
        return self.queue if name == DEFAULT_QUEUE else self.named_queue(name)

    def named_queue(self, name: str) -> str:
        return f"{self.queue}:{name}"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def artifact(self, job_id: str) -> str:
        return f"{self.prefix}artifact:{job_id}"

    def status(self, status: str) -> str:
        return f"{self.prefix}idx:status:{status}"

    def type(self, name: str) -> str:
        return f"{self.prefix}idx:type:{name}"

    def user(self, user: str) -> str:
        return f"{self.prefix}idx:user:{user}"

    def pending(self, priority: str) -> str:
        return f"{self.prefix}idx:pending:{priority}"

    def metrics(self, resolution: str, bucket: int) -> str:
        return f"{self.prefix}m:{resolution}:{bucket}"

    def errors(self, hour: int) -> str:
        """The error messages of one hour's failed attempts, counted (a sorted set)."""
        return f"{self.prefix}m:errors:1h:{hour}"

    def idempotency(self, user: str, key: str) -> str:
        """A submitter's own namespace: another user's key of the same text is another key."""
        return f"{self.prefix}idem:user:{user}:{key}"

    def schedule_slot(self, name: str, slot: str) -> str:
        """A schedule run's key: in a namespace that no submit reaches (see idempotency)."""
        return f"{self.prefix}idem:schedule:{name}:{slot}"

    def rate(self, user: str) -> str:
        return f"{self.prefix}rate:{user}"

    def parked(self, kind: str, name: str) -> str:
        """The jobs held back by one running limit (kind user, org, type or global), by queue score."""
        return f"{self.prefix}parked:{kind}:{name}"

    def running(self, kind: str, name: str) -> str:
        """The processing jobs of one limit's scope (global has none: it counts `status(processing)`)."""
        return f"{self.prefix}running:{kind}:{name}"

    @staticmethod
    def limit_field(kind: str, name: str) -> str:
        """A running limit's field in the `limits` hash: "user:a@x.io"."""
        return f"{kind}:{name}"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}worker:{worker_id}"

    def duty(self, name: str) -> str:
        """A lock that one worker of all takes for a while to do `name` (sample the depth, sweep...)."""
        return f"{self.prefix}duty:{name}"

    def llm_breaker(self, endpoint: str) -> str:
        return f"{self.prefix}llm:breaker:{endpoint}"

    def llm_probe(self, endpoint: str) -> str:
        """Held by the one call that tries a half-open breaker's endpoint again."""
        return f"{self.llm_breaker(endpoint)}:probe"

    def llm_budget(self, endpoint: str) -> str:
        return f"{self.prefix}llm:budget:{endpoint}"

    def llm_modes(self, endpoint: str) -> str:
        """Per model: the structured-output mode an `auto` endpoint turned out to need ("text")."""
        return f"{self.prefix}llm:modes:{endpoint}"

    def llm_usage(self, job_id: str) -> str:
        """A job's LLM usage per step (a hash: "<step>\\t<measure>" -> total)."""
        return f"{self.prefix}llm:usage:{job_id}"

    def llm_calls(self, job_id: str) -> str:
        """A job's LLM call log (a list of Call JSON)."""
        return f"{self.prefix}llm:calls:{job_id}"

    def checkpoints(self, job_id: str) -> str:
        """A job's completed steps (ctx.run): name -> context.Checkpoint JSON, so that a re-run resumes after
        them; expires with the job's record and is deleted with it."""
        return f"{self.prefix}checkpoints:{job_id}"

    def spend(self, period: str) -> str:
        """LLM spend of one UTC day or month ("day:2030-01-07", "month:2030-01") per user and org (a hash:
        "tokens:user:a@x.io" -> total; llm.spend), what the per-user and per-org spend caps are held to."""
        return f"{self.prefix}spend:{period}"

    def source(self, owner: str, url: str) -> str:
        """One owner's record of an outside source (web.sources)."""
        return f"{self.prefix}source:{owner}:{url}"

    def sources(self, owner: str) -> str:
        """An owner's sources (URLs), scored by when each was last checked."""
        return f"{self.prefix}sources:{owner}"

    def feed_seen(self, owner: str, url: str) -> str:
        return f"{self.prefix}feed:seen:{owner}:{url}"

    def feed_items(self, owner: str, url: str) -> str:
        return f"{self.prefix}feed:items:{owner}:{url}"

    def page(self, owner: str, url: str) -> str:
        return f"{self.prefix}page:{owner}:{url}"

    def alert_state(self, rule_id: str) -> str:
        """One alert rule's state: ok, pending, firing or resolved, and since when (notify.alerts)."""
        return f"{self.prefix}alerts:state:{rule_id}"

    def notify_subscription(self, job_id: str) -> str:
        """Who a job's end is told to, how, and its callback (notify.subscriptions); deleted with the job."""
        return f"{self.prefix}notify:sub:{job_id}"

    def notify_log(self, job_id: str) -> str:
        """Every delivery attempt of a job's notices and callbacks (a list, newest last)."""
        return f"{self.prefix}notify:log:{job_id}"

    def notify_lane(self, lane: str) -> str:
        """The deliveries of one job to one address, in order: only the first is ever due (notify.outbox)."""
        return f"{self.prefix}notify:lane:{lane}"

    def inbox(self, user: str) -> str:
        """A user's notifications, by when each was made (a sorted set of ids; notify.inbox)."""
        return f"{self.prefix}inbox:ids:{user}"

    def inbox_notes(self, user: str) -> str:
        """A user's notifications: id -> the Notification's JSON."""
        return f"{self.prefix}inbox:notes:{user}"

    def inbox_unread(self, user: str) -> str:
        """The ids of a user's unread notifications, by when each was made."""
        return f"{self.prefix}inbox:unread:{user}"

    def inbox_failed(self, user: str) -> str:
        """The failed-job notices that came since the user last looked at their inbox."""
        return f"{self.prefix}inbox:failed:{user}"

    def profile(self, user: str) -> str:
        """A user's notification settings (notify.profile)."""
        return f"{self.prefix}profile:{user}"

    abort = abort_jobs_ss

    @staticmethod
    def arq_job(job_id: str) -> str:
        return job_key_prefix + job_id

    @staticmethod
    def arq_in_progress(job_id: str) -> str:
        return in_progress_key_prefix + job_id

    @staticmethod
    def arq_retry(job_id: str) -> str:
        return retry_key_prefix + job_id

    @staticmethod
    def arq_result(job_id: str) -> str:
        return result_key_prefix + job_id


def bucket_start(resolution: str, at: float) -> int:
    """The start of the `resolution` bucket holding time `at` (seconds): the `bucket` of `Keys.metrics`."""
    size = BUCKET_SECONDS[resolution]
    return int(at // size * size)


def lua_concat(key: Callable[..., str], args: Sequence[str]) -> str:
    """A call of a method building keys (`Keys.job`) as a Lua concatenation of its literals and `args`
    (Lua expressions): the method is called with markers for its arguments, and its text between them
    becomes the literals."""
    pieces = re.split("\0(\\d)\0", key(*(f"\0{i}\0" for i in range(len(args)))))
    parts = [f"({args[int(piece)]})" if n % 2 else lua_value(piece)
             for n, piece in enumerate(pieces) if n % 2 or piece]
    return "(" + " .. ".join(parts) + ")"


def lua_string(text: str) -> str:
    """A Lua 5.1 string literal of any text: printable ASCII as itself, every other byte as \\ddd."""
    escaped = "".join(chr(b) if 32 <= b < 127 and b not in b'"\\' else f"\\{b:03d}" for b in text.encode())
    return f'"{escaped}"'


def lua_value(value: object) -> str:
    """A Python constant (str, int, float, bool, list, tuple, frozenset as a set, dict) as a Lua value."""
    if isinstance(value, str):
        return lua_string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, frozenset | set):
        return lua_table(dict.fromkeys(sorted(value), True))
    if isinstance(value, Mapping):
        return lua_table(value)
    if isinstance(value, list | tuple):
        return "{" + ", ".join(lua_value(item) for item in value) + "}"
    raise TypeError(f"no Lua value for {value!r}")


def lua_table(fields: Mapping[str, object]) -> str:
    return "{" + ", ".join(f"[{lua_string(str(k))}] = {lua_value(v)}" for k, v in fields.items()) + "}"


def lua_locals(values: Mapping[str, object]) -> str:
    """`local NAME = value` for each, on one line: how a script gets the constants Python holds."""
    return " ".join(f"local {name} = {lua_value(value)}" for name, value in values.items())
