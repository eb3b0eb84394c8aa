"""Cron schedules: a task type with a fixed payload, submitted on a cron string by the workers.

One worker at a time runs the due check (a heartbeat duty); each run is submitted with an
idempotency key for its slot, so two workers can never submit the same slot twice; and a slot whose
previous run is still active is skipped, so runs of one schedule never overlap. Slot keys live in a
namespace of their own (Keys.schedule_slot): no user's submit can take a slot over.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from croniter import croniter
from pydantic import BaseModel, Field, field_validator

from ..models import Priority, utcnow
from ..storage.keys import Keys

SCHEDULER = "scheduler@local"  # the account a schedule's runs belong to unless it names another
DEFAULTS: list[dict[str, Any]] = [  # the house's own work, created once (TASKDECK_DEFAULT_SCHEDULES)
    {"name": "refresh-sources", "type": "REFRESH_SOURCES", "cron": "0 */6 * * *", "priority": "low"},
]


class Schedule(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    type: str
    payload: dict[str, Any] = Field(default_factory=dict)
    cron: str = Field(description='Five fields, or six with seconds last: "0 */6 * * *" is every 6 hours.')
    priority: Priority = Priority.normal
    paused: bool = False
    owner: str = SCHEDULER
    saved_by: str | None = Field(None, description="The admin who saved it last: told of its runs' ends when "
                                 "`owner` is the scheduler's own account.")
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None
    last_job_id: str | None = None
    last_outcome: str | None = None

    @field_validator("cron")
    @classmethod
    def valid_cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (e.g. '0 */6 * * *')")
        return value

    def following(self, after: datetime) -> datetime:
        return croniter(self.cron, after).get_next(datetime)

    def due(self, now: datetime) -> bool:
        return not self.paused and self.next_run_at is not None and self.next_run_at <= now

    def told(self, local_user: str) -> str:
        """Who hears of its runs' ends: its owner, unless that is the scheduler's own account, which nobody
        reads; then the admin who saved it (the local admin, for one from TASKDECK_SCHEDULES)."""
        return self.owner if self.owner != SCHEDULER else self.saved_by or local_user

    def slot_key(self) -> str:
        return str(self.next_run_at.timestamp() if self.next_run_at else "now")


def planned(schedule: Schedule, now: datetime | None = None) -> Schedule:
    """The schedule with its next run worked out, if it has none yet."""
    if schedule.next_run_at is None:
        return schedule.model_copy(update={"next_run_at": schedule.following(now or utcnow())})
    return schedule


class Scheduler:
    """Reads and writes schedules, and submits the due ones (called from one worker's heartbeat)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.key = Keys(client.settings.prefix).schedules

    async def all(self) -> list[Schedule]:
        rows = await self.client.store.redis.hgetall(self.key)
        return sorted((Schedule.model_validate_json(v) for v in rows.values()), key=lambda s: s.name)

    async def get(self, name: str) -> Schedule | None:
        raw = await self.client.store.redis.hget(self.key, name)
        return Schedule.model_validate_json(raw) if raw else None

    async def save(self, schedule: Schedule) -> Schedule:
        schedule = planned(schedule)
        await self.client.store.redis.hset(self.key, schedule.name, schedule.model_dump_json())
        return schedule

    async def delete(self, name: str) -> bool:
        return bool(await self.client.store.redis.hdel(self.key, name))

    async def seed(self, configured: list[dict[str, Any]]) -> None:
        """Add the schedules named in settings that Redis does not have yet."""
        for data in configured:
            schedule = Schedule.model_validate(data)
            if await self.get(schedule.name) is None:
                await self.save(schedule)

    async def seed_defaults(self, defaults: list[dict[str, Any]]) -> list[str]:
        """Create each default schedule the first time only: one an admin paused stays paused, one deleted
        stays deleted (the names created are remembered in Keys.schedules_seeded). Returns the ones created."""
        seeded = Keys(self.client.settings.prefix).schedules_seeded
        created = []
        for data in defaults:
            schedule = Schedule.model_validate(data)
            if await self.client.store.redis.sadd(seeded, schedule.name):
                await self.save(schedule)
                created.append(schedule.name)
        return created

    async def run_due(self) -> list[str]:
        now, submitted = utcnow(), []
        for schedule in await self.all():
            if schedule.due(now):
                submitted += [job_id] if (job_id := await self.fire(schedule, now)) else []
        return submitted

    async def fire(self, schedule: Schedule, now: datetime, manual: bool = False) -> str | None:
        """Submit one run unless the previous one is still active; always move next_run_at on."""
        update: dict[str, Any] = {"next_run_at": schedule.following(now)} if not manual else {}
        job_id = None
        if await self.active(schedule.last_job_id):
            if manual:
                return None
            update["last_outcome"] = f"skipped at {now:%Y-%m-%d %H:%M:%S}: previous run still active"
        else:
            slot = f"manual:{now.isoformat()}" if manual else schedule.slot_key()
            key = self.client.store.keys.schedule_slot(schedule.name, slot)
            job = await self.client.submit_keyed(schedule.type, schedule.payload, schedule.owner, "",
                                                 schedule.priority, key,
                                                 tell=schedule.told(self.client.principal.email))
            job_id = job.id
            update |= {"last_run_at": now, "last_job_id": job.id, "last_outcome": None}
        saved = schedule.model_copy(update=update).model_dump_json()
        await self.client.store.redis.hset(self.key, schedule.name, saved)
        return job_id

    async def active(self, job_id: str | None) -> bool:
        if job_id is None:
            return False
        status = await self.client.store.status(job_id)
        return status is not None and not status.terminal
