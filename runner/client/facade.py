"""AsyncClient, the Python API for async code (blocking.py makes Client, the same methods blocking, of it).

The methods `list` and `events` shadow the builtin and the module inside the class body, so annotations
after them say `builtins.list` and name events' classes directly."""
from __future__ import annotations

import asyncio
import builtins
import math
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel

from .. import registry
from ..errors import AccessDenied, InvalidPayload, InvalidTransition, JobNotFound, LimitExceeded
from ..models import ACTIVE, TERMINAL, Job, JobStatus, Priority, SpendCap, Stats, WorkerInfo, utcnow
from ..notify import alerts as alerting
from ..notify import rules as rulebook
from ..notify.alerts import Alert
from ..notify.delivery import DeliveryHealth
from ..notify.inbox import InboxCounts, InboxPage
from ..notify.outbox import DeliveryAttempt
from ..notify.profile import JobEnd, Profile, Via
from ..notify.rules import AlertRule
from ..notify.subscriptions import Notify, at_submit, subscription_calls
from ..policy import access, admission
from ..policy.access import Action
from ..reads import events, history, live, metrics, paging
from ..reads import queues as queue_reads
from ..reads.events import Event, Snapshot
from ..reads.history import HistoryPage, HistoryQuery
from ..reads.live import LiveView
from ..registry import TaskType
from ..settings import Settings
from ..storage import transitions
from ..storage.store import Outcome, Store, TransitionSpec, connect
from . import bulk, notices, oversight, payloads, reruns
from .archived import ArchiveReader, Found
from .bulk import BulkResult
from .schedules import Schedule, Scheduler

if TYPE_CHECKING:
    from datetime import date

    from ..archive.operations import ArchiveReport
    from ..reads.llm_status import BreakerState, JobUsage, LlmStatus
    from ..web.sources import Source


class AsyncClient:
    """Submit, read and act on jobs. `user` is who acts (the local admin by default)."""

    def __init__(self, settings: Settings | None = None, user: str | None = None,
                 principal: access.Principal | None = None) -> None:
        self.settings = settings or Settings()
        self.principal = principal or access.principal(self.settings, user)
        self.user = self.principal.email
        registry.load(self.settings.task_modules)
        self._store: Store | None = None
        self.archive = ArchiveReader(self.settings)  # opened by the first read that needs it (archived.py)

    def acting(self, principal: access.Principal) -> AsyncClient:
        """The same client (and connection pool) acting as `principal`: one per request in a server."""
        other = AsyncClient(self.settings, principal=principal)
        other._store, other.archive = self.store, self.archive
        return other

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(connect(self.settings), self.settings)
        return self._store

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self.archive.close()
        if self._store is not None:
            await self._store.redis.aclose()
            self._store = None

    async def submit(
        self,
        type: str,  # noqa: A002  (public keyword, part of the contract)
        payload: dict[str, Any] | BaseModel | str | bytes | None = None,
        *,
        user: str | None = None,
        org: str = "",
        priority: Priority | str | None = None,
        idempotency_key: str | None = None,
        notify: Notify | dict[str, Any] | None = None,
        callback_url: str | None = None,
        max_tokens: int | None = None,
        max_cost_usd: float | None = None,
    ) -> Job:
        """Validate and enqueue a job; nothing is written unless all of it is. The job belongs to the
        acting user (or `user`, for an admin) and their org (or `org`, for an admin); the same
        `idempotency_key` from the same submitter within its window returns the first job.
        `notify` ({"events": ["completed", "failed"], "via": ["inbox", "email", "webhook"]}) says which ends
        of the job its owner is told of, and how (default: as their profile says); `callback_url` is POSTed
        the final record, signed (Standard Webhooks) with the API token's secret, else the submitter's.
        `max_tokens` / `max_cost_usd` cap the job's LLM spend over all its attempts (default: the type's);
        past one it fails with "budget exceeded"."""
        owner = access.normal_email(user) if user else self.user
        key = self.store.keys.idempotency(owner, idempotency_key) if idempotency_key else None
        return await self.submit_keyed(type, payload, owner, org, priority, key, notify=notify,
                                       callback_url=callback_url, max_tokens=max_tokens, max_cost_usd=max_cost_usd)

    async def submit_keyed(self, type: str, payload: Any, owner: str, org: str,  # noqa: A002  (public keyword, part of the contract)
                           priority: Priority | str | None, key: str | None, *,
                           notify: Notify | dict[str, Any] | None = None, callback_url: str | None = None,
                           tell: str | None = None, max_tokens: int | None = None,
                           max_cost_usd: float | None = None, lineage: reruns.Lineage | None = None) -> Job:
        """submit() with the idempotency key as a whole Redis key: runner's own submitters (the scheduler)
        use keys in namespaces that no user's submit can reach; `tell`: who hears of the job's end instead
        of its owner (a schedule's run: the admin who saved the schedule); `lineage`: the job a rerun comes
        from (reruns.py)."""
        self.principal.require(Action.submit)
        if not self.principal.acts_on(owner):
            raise AccessDenied(f"{self.user} may not submit on behalf of {owner} (role {self.principal.role})")
        org = self.org_for(owner, org.strip())
        task_type = registry.get(type)
        await admission.check(self.store, task_type, owner, org)
        data = payloads.validate(task_type, payload, self.settings.max_payload_bytes, self.settings.max_payload_depth)
        caps = reruns.job_caps(task_type, max_tokens, max_cost_usd, lineage.caps if lineage else None)
        async with self.store.guard("nothing was submitted"):
            subscription = await at_submit(self.store, self.principal, owner, notify, callback_url, tell)
        now = utcnow()
        job = Job(
            id=uuid.uuid4().hex, type=type, payload=data, user_id=owner, org_id=org,
            status=JobStatus.queued, priority=parse_priority(priority, task_type), max_attempts=task_type.max_attempts,
            steps=transitions.fresh_steps(task_type.steps), queued_at=now, updated_at=now, queue=task_type.queue,
            max_tokens=caps.max_tokens, max_cost_usd=caps.max_cost_usd,
            rerun_of=lineage.rerun_of if lineage else None, reused_steps=lineage.reused if lineage else [],
        )
        spec = transitions.create(job, self.store.keys, self.settings.priority_aging_s, by=self.user)
        spec["calls"] += subscription_calls(self.store, job.id, subscription)
        if lineage:
            spec["calls"] += lineage.calls(self.store.keys, job.id, self.settings.retention_days * 86400)
            spec["audit"]["action"] = "rerun"
        if key:
            spec["create"]["idempotency"] = [key, self.settings.idempotency_window_s]
        async with self.store.guard("nothing was submitted"):
            outcome = (await self.store.apply(job.id, self.rated(spec, owner), now, replicated=True)).confirmed(job.id)
        if outcome.applied:
            return job
        self.refuse_rate(outcome, owner)
        return await self.get(outcome.first_id or outcome.status)

    def org_for(self, owner: str, org: str) -> str:
        """The org a job is submitted for: the owner's own unless an admin names another."""
        own = self.principal.org if owner == self.user else access.org_of(self.settings, owner)
        if org and org != own and not self.principal.acts_for_org(org):
            raise AccessDenied(f"{self.user} may not submit for organisation {org!r}; only admins act for "
                               "another organisation")
        return org or own

    def rated(self, spec: TransitionSpec, owner: str) -> TransitionSpec:
        """`spec` admitted against the owner's hourly submit limit, when one is set."""
        if self.settings.max_submits_per_user_per_hour:
            spec["rate"] = [self.store.keys.rate(owner), self.settings.max_submits_per_user_per_hour, 3600]
        return spec

    def refuse_rate(self, outcome: Outcome, owner: str) -> None:
        if outcome.retry_after_s is not None:
            wait = outcome.retry_after_s
            raise LimitExceeded(f"{owner} has submitted {self.settings.max_submits_per_user_per_hour} jobs in the "
                                "last hour, the limit (TASKDECK_MAX_SUBMITS_PER_USER_PER_HOUR; retries count too); "
                                f"try again in {math.ceil(wait / 60)} min", retry_after_s=wait)

    async def get(self, job_id: str) -> Job:
        """One job's record, read from the archive once Redis no longer holds it; another user's job
        answers like a missing one."""
        return (await self.job_or_archived(job_id)).job

    async def job_or_archived(self, job_id: str) -> Found:
        """get(), saying whether the record came from the archive (`archived`: Redis no longer holds the
        job, which is then read-only), with the archived audit trail and LLM usage."""
        self.principal.require(Action.read)
        async with self.store.guard():
            job = await self.store.load(job_id) if valid_id(job_id) else None
        if job is None and valid_id(job_id) and (found := await self.archive.find(job_id, self.principal)):
            return found
        if job is None or not self.principal.sees(job.user_id):
            raise JobNotFound(f"job {job_id!r} not found; `python -m runner list` shows recent jobs")
        return Found(job=job)

    async def list(
        self,
        status: JobStatus | str | Iterable[JobStatus | str] | None = None,
        type: str | None = None,  # noqa: A002  (public keyword, part of the contract)
        user: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Job]:
        """Jobs newest first, from the indexes; `status` may be one status or several."""
        visible = self.visible(HistoryQuery(user=user))
        if visible is None:
            return []
        query = HistoryQuery(status=parse_statuses(status), type=type, user=visible.user)
        limit, offset = max(1, min(limit, 1000)), max(0, offset)

        async def alone() -> builtins.list[Job]:
            return await self.store.load_many(await history.select(self.store, query, limit, offset))

        async with self.store.guard():
            return await self.archive.either(self.store, self.principal,
                                             lambda reads: reads.listed(query, limit, offset), alone)

    async def page(
        self,
        status: JobStatus | str | Iterable[JobStatus | str] | None = None,
        type: str | None = None,  # noqa: A002  (public keyword, part of the contract)
        user: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> paging.JobPage:
        """Like list(), a page at a time: pass the page's `next_cursor` for the next one. Unlike an
        offset, a cursor does not shift when jobs are submitted in between."""
        visible = self.visible(HistoryQuery(status=parse_statuses(status), type=type, user=user))
        after = paging.Cursor.decode(cursor) if cursor else None
        if visible is None:
            return paging.JobPage(jobs=[], next_cursor=None)
        limit = max(1, min(limit, 1000))
        async with self.store.guard():
            return await self.archive.either(self.store, self.principal,
                                             lambda reads: reads.page(visible, limit, after),
                                             lambda: paging.page(self.store, visible, limit, after))

    async def cancel(self, job_id: str, by: str | None = None) -> Job:
        """Cancel a queued job (it never starts) or abort a running one; returns within cancel_wait_s."""
        self.principal.require(Action.cancel)
        by = by or self.user
        async with self.store.guard():
            for _ in range(5):
                job = await self.owned(job_id)
                if job.status in TERMINAL:
                    raise InvalidTransition(f"job {job_id} is already {job.status}; only queued or running jobs "
                                            "can be cancelled")
                now = utcnow()
                if job.status is JobStatus.processing:
                    spec = transitions.cancel_request(job, by, now, self.store.keys)
                else:
                    spec = transitions.cancelled(job, now, self.store.keys, by=by)
                outcome = (await self.store.apply(job_id, spec, now, replicated=True)).confirmed(job_id)
                if outcome.applied or (outcome.status == JobStatus.processing and job.cancel_requested_by):
                    return await self.wait_terminal(job_id, self.settings.cancel_wait_s)
        raise InvalidTransition(f"job {job_id} kept changing state; try cancelling again")

    async def retry(self, job_id: str, by: str | None = None, *, from_step: str | None = None,
                    payload: dict[str, Any] | BaseModel | str | bytes | None = None, max_tokens: int | None = None,
                    max_cost_usd: float | None = None) -> Job:
        """Run a failed or cancelled job again, under the same id, with a fresh set of attempts; it resumes
        after its last completed checkpoint (ctx.run). Admitted like a submit: the type must be available
        and the owner within their hourly, token and spend limits. `max_tokens` / `max_cost_usd` raise (or
        set) its spend caps: a job that failed with "budget exceeded" resumes with more.

        With `from_step` (a step's or checkpoint's name) or an edited `payload`, a finished job (completed
        too) is rerun as a NEW job instead, returned: linked to this one (`rerun_of`), reusing the
        checkpoints this one made before `from_step` (`reused_steps`; none without it), its payload
        validated as a submit's (reruns.py)."""
        if from_step is not None or payload is not None:
            return await reruns.rerun(self, job_id, from_step, payload, max_tokens, max_cost_usd)
        self.principal.require(Action.retry)
        deadline = time.monotonic() + self.settings.cancel_wait_s
        async with self.store.guard("nothing was retried"):
            while True:
                job = await self.owned(job_id)
                if job.status not in (JobStatus.failed, JobStatus.cancelled):
                    raise InvalidTransition(f"job {job_id} is {job.status}; only failed or cancelled jobs can be "
                                            "retried")
                task_type = registry.get(job.type)
                await admission.check(self.store, task_type, job.user_id, job.org_id)
                caps = reruns.job_caps(task_type, max_tokens, max_cost_usd,
                                       SpendCap(max_tokens=job.max_tokens, max_cost_usd=job.max_cost_usd))
                now = utcnow()
                spec = transitions.retry(job, by or self.user, now, self.store.keys, task_type.steps,
                                         task_type.max_attempts, self.settings.priority_aging_s, caps)
                applied = await self.store.apply(job_id, self.rated(spec, job.user_id), now, replicated=True)
                outcome = applied.confirmed(job_id)
                if outcome.applied:
                    return await self.get(job_id)
                self.refuse_rate(outcome, job.user_id)
                if time.monotonic() > deadline:
                    raise InvalidTransition(f"job {job_id} is still finishing its last attempt; retry it in a moment")
                await asyncio.sleep(0.02)

    async def owned(self, job_id: str) -> Job:
        """A job the acting user may act on (their own, or any for an admin); else not found."""
        found = await self.job_or_archived(job_id)
        if not self.principal.acts_on(found.job.user_id):
            raise JobNotFound(f"job {job_id!r} not found; `python -m runner list` shows recent jobs")
        if found.archived:
            raise InvalidTransition(f"job {job_id} is archived (Redis no longer holds it), so it is read-only: "
                                    "submit it again as a new job (the Job page's \"Retry with edited inputs\")")
        return found.job

    async def limits(self) -> dict[str, int]:
        """Running limits set by admins ("user:a@x.io" -> 3): every one for roles that read everyone's
        jobs, else those that apply to the acting user (their own, their org's, the types')."""
        self.principal.require(Action.read)
        async with self.store.guard():
            rows = await self.store.redis.hgetall(self.store.keys.limits)  # type: ignore[misc]  # redis-py types replies `Awaitable[T] | T` for both clients
        found = {k: int(v) for k, v in rows.items()}
        if self.principal.can(Action.read_all):
            return found
        mine = {f"user:{self.user}", f"org:{self.principal.org}"}
        return {k: v for k, v in found.items() if k in mine or k.startswith("type:")}

    async def set_limit(self, kind: str, name: str, value: int | None) -> None:
        """Override a running limit for one user, org or task type (None removes the override).
        Jobs waiting on that scope go back to the queue and take the free slots."""
        self.principal.require(Action.settings)
        name = limit_name(kind, name, value)
        keys, field = self.store.keys, f"{kind}:{name}"
        async with self.store.guard("the limit was not changed"), self.store.redis.pipeline() as pipe:
            pipe.hdel(keys.limits, field) if value is None else pipe.hset(keys.limits, field, str(value))
            await self.store.release_parked(kind, name, client=pipe)
            await pipe.execute()
            await self.audit_entry(f"set limit {field} = {value}")

    async def schedules(self) -> builtins.list[Schedule]:
        """Every schedule, with the outcome of its last run filled in from that job."""
        self.principal.require(Action.read)
        async with self.store.guard():
            found = await Scheduler(self).all()
            for schedule in found:
                if schedule.last_job_id and schedule.last_outcome is None:
                    status = await self.store.status(schedule.last_job_id)
                    schedule.last_outcome = status.value if status else "expired"
        if not self.principal.can(Action.settings):
            # a schedule's payload may name customers, keys or internal URLs: for admins only
            found = [schedule.model_copy(update={"payload": {}}) for schedule in found]
        return found

    async def save_schedule(self, schedule: Schedule) -> Schedule:
        """Add or replace a schedule (admins); its type and payload are validated like a submit."""
        self.principal.require(Action.settings)
        task_type = registry.get(schedule.type)
        schedule.payload = payloads.validate(task_type, schedule.payload, self.settings.max_payload_bytes,
                                             self.settings.max_payload_depth)
        async with self.store.guard("the schedule was not saved"):
            saved = await Scheduler(self).save(schedule.model_copy(update={"next_run_at": None, "saved_by": self.user}))
            await self.audit_entry(f"save schedule {schedule.name} ({schedule.cron})")
        return saved

    async def pause_schedule(self, name: str, paused: bool = True) -> Schedule:
        self.principal.require(Action.settings)
        async with self.store.guard("the schedule was not changed"):
            scheduler = Scheduler(self)
            schedule = await self.schedule(scheduler, name)
            saved = await scheduler.save(schedule.model_copy(update={"paused": paused, "next_run_at": None}))
            await self.audit_entry(f"{'pause' if paused else 'resume'} schedule {name}")
        return saved

    async def run_schedule(self, name: str) -> Job:
        """Run a schedule now ("run now"), unless its previous run is still active."""
        self.principal.require(Action.settings)
        async with self.store.guard("nothing was submitted"):
            scheduler = Scheduler(self)
            job_id = await scheduler.fire(await self.schedule(scheduler, name), utcnow(), manual=True)
        if job_id is None:
            raise InvalidTransition(f"schedule {name}'s previous run is still active; runs never overlap")
        return await self.get(job_id)

    async def delete_schedule(self, name: str) -> None:
        self.principal.require(Action.settings)
        async with self.store.guard("the schedule was not deleted"):
            if not await Scheduler(self).delete(name):
                raise JobNotFound(f"no schedule named {name!r}")
            await self.audit_entry(f"delete schedule {name}")

    async def schedule(self, scheduler: Scheduler, name: str) -> Schedule:
        found = await scheduler.get(name)
        if found is None:
            raise JobNotFound(f"no schedule named {name!r}; `schedules()` lists them")
        return found

    async def audit_entry(self, action: str) -> None:
        await self.store.redis.xadd(self.store.keys.audit, {"job": "", "type": "", "owner": "", "action": action,
                                                            "by": self.user},
                                    maxlen=self.settings.events_maxlen, approximate=True)

    async def note(self, action: str) -> None:
        """Add `action` to the audit log, by the acting user."""
        async with self.store.guard("nothing was logged"):
            await self.audit_entry(action)

    async def audit(self, limit: int = 100) -> builtins.list[dict[str, str]]:
        """Newest first: who submitted, cancelled and retried what, and when (admins only)."""
        self.principal.require(Action.audit)
        async with self.store.guard():
            rows = await self.store.redis.xrevrange(self.store.keys.audit, count=limit)
        return [{"at": entry_id.split("-")[0], **fields} for entry_id, fields in rows]

    async def wait_terminal(self, job_id: str, timeout: float) -> Job:
        """Poll the record until it is final or `timeout` seconds pass; returns it as it then is."""
        deadline = time.monotonic() + timeout
        while True:
            job = await self.get(job_id)
            if job.status in TERMINAL or time.monotonic() >= deadline:
                return job
            await asyncio.sleep(0.02)

    async def stats(self) -> Stats:
        self.principal.require(Action.read)
        keys, now = self.store.keys, time.time()
        minutes = [int(now // 60 * 60 - 60 * i) for i in range(60)]
        async with self.store.guard(), self.store.redis.pipeline(transaction=False) as pipe:
            for p in Priority:
                pipe.zcard(keys.pending(p))
            for s in JobStatus:
                pipe.zcard(keys.status(s))
            for m in minutes:
                pipe.hmget(keys.metrics("1m", m), ["completed", "failed", "lost"])
            pipe.zcount(keys.workers, now, "+inf")
            pipe.zcard(keys.dead)
            rows = await pipe.execute()
        async with self.store.guard():
            loads = await queue_reads.loads(self.store)
        depth, by_status = rows[:3], rows[3:9]
        buckets = [[float(v or 0) for v in row] for row in rows[9:69]]
        done, failed, lost = (sum(b[i] for b in buckets) for i in range(3))
        recent = sum(b[0] + b[1] for b in buckets[:5])
        return Stats(
            queue_depth=dict(zip(Priority, depth, strict=True)), by_status=dict(zip(JobStatus, by_status, strict=True)),
            success_rate_1h=done / (done + failed) if done + failed else None,
            throughput_per_min=recent / 5, workers_alive=rows[69], dead_letter=rows[70], lost_1h=int(lost),
            queues=loads,
        )

    async def workers(self) -> builtins.list[WorkerInfo]:
        self.principal.require(Action.read)
        keys, now = self.store.keys, time.time()
        async with self.store.guard():
            ids = await self.store.redis.zrevrange(keys.workers, 0, 199)
            async with self.store.redis.pipeline(transaction=False) as pipe:
                for worker_id in ids:
                    pipe.hgetall(keys.worker(worker_id))
                rows = await pipe.execute()
        return [worker_info(row, now, self.settings.lease_s) for row in rows if row]

    def types(self) -> builtins.list[TaskType]:
        return registry.all_types()

    async def ping(self) -> None:
        """Raise RedisUnavailable unless Redis answers."""
        async with self.store.guard():
            await self.store.redis.ping()

    def visible(self, query: HistoryQuery) -> HistoryQuery | None:
        """`query` narrowed to the acting user's own jobs unless their role reads everyone's; None
        when it asks for someone else's."""
        self.principal.require(Action.read)
        if query.user:
            try:
                query = query.model_copy(update={"user": access.normal_email(query.user)})
            except AccessDenied:
                return None  # no job belongs to an address that is not plain
        if self.principal.can(Action.read_all):
            return query
        if query.user and query.user != self.user:
            return None
        return query.model_copy(update={"user": self.user})

    async def history(self, query: HistoryQuery | None = None, limit: int = 50, offset: int = 0) -> HistoryPage:
        """Finished jobs (by default) newest first, filtered and paginated from the indexes (history.py),
        and from the archive beyond what Redis holds (seamless.py; `archived` names those rows)."""
        visible = self.visible(query or HistoryQuery())
        if visible is None:
            return HistoryPage(jobs=[], total=0)
        limit, offset = max(0, min(limit, 1000)), max(0, offset)
        async with self.store.guard():
            return await self.archive.either(self.store, self.principal,
                                             lambda reads: reads.history(visible, limit, offset),
                                             lambda: history.search(self.store, visible, limit, offset))

    async def count(self, status: JobStatus | str | Iterable[JobStatus | str] | None = None,
                    type: str | None = None,  # noqa: A002  (public keyword, part of the contract)
                    user: str | None = None) -> int:
        visible = self.visible(HistoryQuery(status=parse_statuses(status), type=type, user=user))
        if visible is None:
            return 0
        async with self.store.guard():
            return await self.archive.either(self.store, self.principal, lambda reads: reads.count(visible),
                                             lambda: history.count(self.store, visible))

    async def get_many(self, ids: Iterable[str]) -> builtins.list[Job]:
        """The records (without attempt_log and partial) of those jobs the acting user may see."""
        self.principal.require(Action.read)
        async with self.store.guard():
            jobs = await self.store.load_many([job_id for job_id in ids if valid_id(job_id)])
        return [job for job in jobs if self.principal.sees(job.user_id)]

    async def live(self, user: str | None = None, limit: int = 500, include: Iterable[str] = ()) -> LiveView:
        """Active jobs oldest first with queue position and stalled flag, then the `include`d jobs."""
        visible = self.visible(HistoryQuery(user=user))
        if visible is None:
            return LiveView(jobs=[], queue_depth=dict.fromkeys(Priority, 0), workers_alive=0)
        async with self.store.guard():
            view = await live.view(self.store, visible.user, limit, list(include), self.settings.stalled_after_s)
        view.jobs = [row for row in view.jobs if self.principal.sees(row.job.user_id)]
        return view

    async def metrics(self, span: str = "24h") -> metrics.Window:
        """Metric buckets of the last 1h or 24h (per minute) or 7d or 30d (per hour)."""
        self.principal.require(Action.read_all)
        if span not in metrics.RANGES:
            raise InvalidPayload(f"span must be one of {', '.join(metrics.RANGES)}; got {span!r}")
        async with self.store.guard():
            return await metrics.window(self.store, span)

    async def events(self, after: str = events.START, count: int = 500) -> events.Feed:
        """Events after position `after` (e.g. last_event_id()), oldest first, of jobs the user may see."""
        self.principal.require(Action.read)
        async with self.store.guard():
            feed = await events.after(self.store, after, count)
        feed.events = [event for event in feed.events if self.principal.sees(event.user)]
        return feed

    async def follow(self, job_id: str, after: str | None = None) -> AsyncIterator[Snapshot | Event | None]:
        """One job as it changes (events.Follow): its record as a Snapshot, unless resuming from event
        `after` loses nothing, then each of its events until it is final; None after each quiet second.
        A resume on a final job gets its final record; an `after` that is no event id, or newer than
        the newest, is InvalidPayload. Blocks a Redis connection of its own (the HTTP API shares one)."""
        await self.get(job_id)
        async with self.store.guard():
            start = await events.resume_point(self.store, after)
            async for item in events.Follow(self.store, job_id, start, events.Direct(self.store, job_id)):
                yield item

    async def last_event_id(self) -> str:
        async with self.store.guard():
            return await events.last_id(self.store)

    async def artifact(self, job_id: str) -> str | None:
        """The full JSON of a result kept as an artifact (the job's result is then {"artifact": key, ...})."""
        await self.get(job_id)
        async with self.store.guard():
            found: str | None = await self.store.redis.get(self.store.keys.artifact(job_id))
        return found

    async def export_csv(self, query: HistoryQuery | None = None) -> AsyncIterator[str]:
        """Every job matching `query` as CSV text, chunk by chunk, read from the indexes (and the archive,
        beyond what Redis holds) as it goes."""
        visible = self.visible(query or HistoryQuery())
        if visible is None:
            yield history.csv_text([history.CSV_COLUMNS])
            return
        async with self.store.guard():
            reads = await self.archive.reads(self.store, self.principal)
            chunks = reads.csv_chunks(visible) if reads else history.csv_chunks(self.store, visible)
            async for chunk in chunks:
                yield chunk

    async def cancel_many(self, ids: Iterable[str], by: str | None = None) -> BulkResult:
        return await bulk.each(ids, lambda job_id: self.cancel(job_id, by))

    async def retry_many(self, ids: Iterable[str], by: str | None = None) -> BulkResult:
        return await bulk.each(ids, lambda job_id: self.retry(job_id, by))

    async def retry_matching(self, query: HistoryQuery | None = None, by: str | None = None,
                             limit: int = 1000) -> BulkResult:
        """Retry the failed jobs among those matching `query` (newest first, at most `limit`)."""
        self.principal.require(Action.retry)
        visible = self.visible(query or HistoryQuery())
        if visible is None or (visible.status and JobStatus.failed not in visible.status):
            return BulkResult()
        failed = visible.model_copy(update={"status": [JobStatus.failed]})
        async with self.store.guard():
            ids = [job_id async for batch in history.matching(self.store, failed, limit=limit) for job_id in batch]
        return await self.retry_many(ids, by)

    # The LLM endpoint, its circuit breakers, the scrape/RSS sources and one job's LLM usage: oversight.py.
    async def job_usage(self, job_id: str) -> JobUsage:
        """One job's LLM usage per step and per call; JobNotFound unless the acting user may see the job."""
        return await oversight.job_usage(self, job_id)

    async def llm_status(self) -> LlmStatus:
        """Which model answers, how replies are held to schemas, and its circuit breaker."""
        return await oversight.llm_status(self)

    async def breakers(self) -> builtins.list[BreakerState]:
        """Every endpoint the workers have called, with its circuit breaker."""
        return await oversight.breakers(self)

    async def reset_breaker(self, endpoint: str) -> None:
        """Close an open breaker by hand (after fixing the endpoint); admins only."""
        await oversight.reset_breaker(self, endpoint)

    async def sources(self) -> builtins.list[Source]:
        """The sources of the acting user and of their organisation; an admin's: everyone's."""
        return await oversight.sources(self)

    async def enable_source(self, url: str, owner: str | None = None) -> builtins.list[Source]:
        """Re-enable `owner`'s source `url` (None: every owner's source of that name); admins only."""
        return await oversight.enable_source(self, url, owner)

    # The archive's operations (runner.archive.operations): what it holds and what the feed has left; backfill, prune.
    async def archive_status(self) -> ArchiveReport:
        """The archive's backend, schema revision, rows, newest job and size, with the feed's backlog; `ok`
        false (with `problem`) when it does not answer. For roles that read everyone's jobs; Unavailable
        when the archive is off (TASKDECK_ARCHIVE=false)."""
        from ..archive import operations

        self.principal.require(Action.read_all)
        async with self.store.guard():
            return await operations.status(self.store)

    async def archive_backfill(self) -> int:
        """Archive every finished job still in Redis (those finished before the archive was on, or whose
        events the stream's cap dropped); idempotent. Returns the jobs written; admins only."""
        from ..archive import operations

        self.principal.require(Action.settings)
        async with self.store.guard("the backfill may be partly done; run it again"):
            written = await operations.backfill(self.store)
            await self.audit_entry(f"archive backfill: {written} jobs written")
        return written

    async def archive_prune(self, before: datetime | date | str) -> int:
        """Delete the archived jobs that finished before `before` (a date is its midnight UTC; not in the
        future), and older audit entries. Returns the jobs deleted; admins only."""
        from ..archive import operations

        self.principal.require(Action.settings)
        cutoff = operations.cutoff(before)
        async with self.store.guard("the prune may be partly done; run it again"):
            deleted = await operations.prune(self.store, cutoff)
            await self.audit_entry(f"archive prune before {cutoff:%Y-%m-%d %H:%M} UTC: {deleted} jobs deleted")
        return deleted

    # The acting user's notifications (runner.notify, client/notices.py): their own profile and inbox only.
    async def profile(self) -> Profile:
        """The acting user's notification settings: email for notices, webhook URL, default job ends and
        channels, and the secret their webhook notices and token-less callbacks are signed with."""
        return await notices.profile(self)

    async def set_profile(self, email: str | None = None, webhook_url: str | None = None,
                          events: builtins.list[JobEnd] | None = None, via: builtins.list[Via] | None = None,
                          rotate_secret: bool = False) -> Profile:
        """Change the acting user's profile: each argument given replaces its field ("" clears email or
        webhook_url); a webhook URL must pass the outbound policy. Returns the profile as saved."""
        given = {"email": email, "webhook_url": webhook_url, "events": events, "via": via}
        change = {k: v for k, v in given.items() if v is not None} | {"rotate_secret": rotate_secret}
        return await notices.set_profile(self, change)

    async def notifications(self, limit: int = 50, cursor: str | None = None, unread: bool = False) -> InboxPage:
        """The acting user's inbox, newest first, a page at a time (`unread`: only unread ones); the first
        page counts as looking (the failed-since-looked count starts again)."""
        return await notices.notifications(self, limit, cursor, unread)

    async def mark_read(self, ids: builtins.list[str] | str) -> int:
        """Mark these notifications read, or "all" of them (which also counts as looking); the unread
        count after."""
        return await notices.mark_read(self, ids)

    async def unread_count(self) -> int:
        """How many of the acting user's notifications are unread."""
        return (await notices.counts(self)).unread

    async def inbox_counts(self) -> InboxCounts:
        """Unread notifications, and failed-job notices since the user last looked (the bell)."""
        return await notices.counts(self)

    async def deliveries(self, job_id: str) -> builtins.list[DeliveryAttempt]:
        """Every attempt to deliver a job's notices and callbacks, oldest first; for its owner and admins
        (another user's job answers like a missing one)."""
        return await notices.deliveries(self, job_id)

    async def delivery_health(self) -> DeliveryHealth:
        """The outbox: deliveries waiting, failing and given up, and the last failure (no addresses)."""
        return await notices.delivery_health(self)

    # Alert rules (runner.notify.alerts): admins only, since a rule's targets name addresses and webhook URLs.
    async def alert_rules(self) -> builtins.list[AlertRule]:
        """Every alert rule, by name; admins only."""
        self.principal.require(Action.settings)
        async with self.store.guard():
            return await rulebook.all_rules(self.store)

    async def set_alert_rule(self, rule: AlertRule) -> AlertRule:
        """Add an alert rule, or replace the one with its id; its targets are checked now (webhook and Slack
        URLs by the outbound policy, TASKDECK_FETCH_ALLOW). Returns it as saved; admins only."""
        self.principal.require(Action.settings)
        rule = await rulebook.checked(rule, self.settings)
        async with self.store.guard("the alert rule was not saved"):
            await rulebook.save(self.store, rule)
            await self.audit_entry(f"set alert rule {rule.id} ({rule.kind})")
        return rule

    async def delete_alert_rule(self, rule_id: str) -> None:
        """Delete an alert rule and its state; admins only."""
        self.principal.require(Action.settings)
        async with self.store.guard("the alert rule was not deleted"):
            if not await rulebook.delete(self.store, rule_id):
                raise JobNotFound(f"no alert rule {rule_id!r}; `alert_rules()` lists them")
            await self.audit_entry(f"delete alert rule {rule_id}")

    async def alerts(self) -> builtins.list[Alert]:
        """Every alert rule with its state (ok, pending, firing or resolved), since when, and what the last
        evaluation saw; admins only."""
        self.principal.require(Action.settings)
        async with self.store.guard():
            return await alerting.current(self.store)


def worker_info(row: dict[str, str], now: float, lease_s: float) -> WorkerInfo:
    beat = float(row["last_heartbeat"])
    return WorkerInfo(
        id=row["id"], host=row["host"], pid=int(row["pid"]), started_at=utc_time(float(row.get("started_at", beat))),
        last_heartbeat=utc_time(beat), alive=row.get("alive") == "1" and now - beat < lease_s,
        running=int(row.get("running", 0)), done=int(row.get("done", 0)), failed=int(row.get("failed", 0)),
        queues=orjson.loads(row["queues"]) if row.get("queues") else {},
    )


def utc_time(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def limit_name(kind: str, name: str, value: object) -> str:
    """The scope a limit is set on, in its one spelling; InvalidPayload for a value that is not a whole
    number from 0 to 1,000,000 (a float or NaN would break every later read of the limits)."""
    if kind not in ("user", "org", "type"):
        raise InvalidPayload(f"a limit is set on user, org or type; got {kind!r}")
    if value is not None and (type(value) is not int or not 0 <= value <= 1_000_000):
        raise InvalidPayload(f"a limit is a whole number from 0 to 1,000,000 (or none); got {value!r}")
    if kind == "user":
        return access.normal_email(name)
    if kind == "type":
        return registry.get(name).name
    if not name.strip() or len(name) > 200 or not name.isprintable():
        raise InvalidPayload(f"an organisation's name is 1 to 200 printable characters; got {name!r}")
    return name.strip()


def valid_id(job_id: str) -> bool:
    return len(job_id) == 32 and all(c in "0123456789abcdef" for c in job_id)


def parse_priority(priority: Priority | str | None, task_type: TaskType) -> Priority:
    if priority is None:
        return task_type.priority
    try:
        return Priority(priority)
    except ValueError:
        raise InvalidPayload(f"priority {priority!r} is not one of: high, normal, low") from None


def parse_statuses(status: JobStatus | str | Iterable[JobStatus | str] | None) -> list[JobStatus]:
    values = [status] if isinstance(status, str) else list(status or [])
    if values == ["active"]:
        return sorted(ACTIVE)
    try:
        return [JobStatus(v) for v in values]
    except ValueError:
        raise InvalidPayload(f"status must be one of: {', '.join(JobStatus)} (or 'active'); got {status!r}") from None

