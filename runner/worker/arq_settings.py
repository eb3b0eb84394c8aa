"""ARQ worker settings: `arq runner.worker.WorkerSettings`.

Every Taskdeck job is one ARQ job of the single function `taskdeck`; workers claim jobs with their
records through claim.py and run the registered task type (execution.execute). Job data is JSON,
never pickle.

A good citizen in ARQ's process: importing this module replaces one ARQ attribute,
`Worker._poll_iteration` (claim.py), which hands every worker that is not Taskdeck's to ARQ's own.
Everything else is wired per worker in `startup`, in that worker's ctx and its main task's context:
its wake-ups (wake.py) and the quieting of ARQ's per-job lines (logs.py). A plain ARQ worker in the
same process, before, beside or after a Taskdeck worker, runs exactly as ARQ made it.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from arq.connections import RedisSettings
from arq.worker import func

from .. import queues, registry
from ..client.facade import AsyncClient
from ..client.schedules import DEFAULTS, Scheduler
from ..notify.service import Notifying
from ..settings import Settings
from ..storage import durability, sentinel
from ..storage.store import RECONNECT_ERRORS, Store, connect, reconnecting
from ..storage.transitions import ARQ_FUNCTION
from . import claim, heartbeat, logs, wake
from .archiving import Archiving
from .execution import WorkerState, run

logger = logging.getLogger("taskdeck.worker")
settings = Settings()
registry.load(settings.task_modules)
claim.install()
ARQ_GRACE_S = 60


async def startup(ctx: dict[str, Any]) -> None:
    """on_startup of `WorkerSettings`: a worker configured from the environment."""
    await start(ctx, settings)


async def start(ctx: dict[str, Any], s: Settings) -> None:
    """Wire one Taskdeck worker: everything it adds to ARQ lives in its ctx and in this, its main
    task's, context (wake.attach, logs.hide_arq_job_lines), never in ARQ's module."""
    logs.configure(s.log_json)
    ctx["taskdeck_quiet"] = logs.hide_arq_job_lines(job_lines=not s.log_arq_jobs)
    wakeup = wake.attach(ctx, s.poll_delay_s)
    if s.redis_sentinels:
        await sentinel.arm(ctx["redis"], retry=reconnecting(), retry_on_error=RECONNECT_ERRORS)
    store = Store(connect(s, resilient=True), s)
    if s.production and (found := await durability.problems(store.redis)):
        logger.error("refusing to start: this Redis can lose jobs: %s (TASKDECK_PRODUCTION is set)", "; ".join(found))
        raise SystemExit(1)
    state = WorkerState(store, f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    state.queues = queues.served(s, registry.queue_names())
    logger.info("serving queues %s", ", ".join(f"{name} ({slots} slots)" for name, slots in state.queues.items()))
    ctx["taskdeck"] = state
    state.client = AsyncClient(s)
    await Scheduler(state.client).seed(s.schedules)
    if s.default_schedules:
        await Scheduler(state.client).seed_defaults(DEFAULTS)
    await heartbeat.beat(state)
    ctx["taskdeck_archiving"] = await Archiving.start(store, state.id)
    ctx["taskdeck_notifying"] = await Notifying.start(store, state.id)
    ctx["taskdeck_tasks"] = [asyncio.create_task(heartbeat.run(state)),
                             asyncio.create_task(wake.listen(store.redis, store.keys.wake, wakeup))]


async def shutdown(ctx: dict[str, Any]) -> None:
    quiet: logs.Quiet | None = ctx.pop("taskdeck_quiet", None)
    if quiet is not None:
        quiet.close()
    state: WorkerState | None = ctx.get("taskdeck")
    if state is None:
        return
    await heartbeat.stop(state, ctx.get("taskdeck_tasks", []))
    archiving: Archiving | None = ctx.pop("taskdeck_archiving", None)
    if archiving is not None:
        await archiving.stop()
    notifying: Notifying | None = ctx.pop("taskdeck_notifying", None)
    if notifying is not None:
        await notifying.stop()
    if state.client is not None:
        await state.client.close()
    await state.store.redis.aclose()


def redis_settings(s: Settings) -> RedisSettings:
    """ARQ's connection, told to wait out a Redis restart instead of ending the worker (ARQ's default)."""
    if s.redis_sentinels:
        return sentinel.arq_settings(s)
    arq_redis = RedisSettings.from_dsn(s.url)
    arq_redis.retry, arq_redis.retry_on_error = reconnecting(), RECONNECT_ERRORS
    arq_redis.conn_retries = 30
    arq_redis.ssl_check_hostname = arq_redis.ssl
    return arq_redis


def longest_timeout() -> float:
    return max((t.timeout_s for t in registry.all_types()), default=300.0)


def worker_settings(s: Settings, on_startup: Callable[[dict[str, Any]], Awaitable[None]] | None = None
                    ) -> dict[str, Any]:
    """ARQ worker settings of a Taskdeck worker configured by `s`: `arq.worker.create_worker(worker_settings(s))`
    runs several in one process (one per queue, or in tests), each with its own wake-ups."""
    async def startup_with_settings(ctx: dict[str, Any]) -> None:
        await start(ctx, s)

    return {
        "functions": [func(run, name=ARQ_FUNCTION, timeout=longest_timeout() + ARQ_GRACE_S, max_tries=1_000_000)],
        "redis_settings": redis_settings(s),
        "queue_name": s.queue_name,
        "on_startup": on_startup or startup_with_settings,
        "on_shutdown": shutdown,
        "job_serializer": orjson.dumps,
        "job_deserializer": orjson.loads,
        "max_jobs": sum(queues.served(s, registry.queue_names()).values()),  # per queue: claim.free_slots
        "poll_delay": 0,  # ARQ's timer only yields; claim.py waits s.poll_delay_s or for a wake-up (wake.py)
        "job_completion_wait": s.shutdown_grace_s,
        "allow_abort_jobs": True,
        "keep_result": 0,
        "health_check_interval": 10,
    }


WorkerSettings = type("WorkerSettings", (), {
    "__doc__": "`arq runner.worker.WorkerSettings`: a Taskdeck worker configured from the environment.",
    "__module__": __name__,
    **worker_settings(settings, startup),
})
