"""ARQ worker settings: `arq runner.worker.WorkerSettings`.

Every Taskdeck job is one ARQ job of the single function `taskdeck`; workers claim jobs with their
records through claim.py and run the registered task type (execution.execute). Job data is JSON,
never pickle.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from typing import Any

import orjson
from arq.connections import RedisSettings
from arq.worker import func

from . import claim, durability, heartbeat, logs, registry, wake
from .client import AsyncClient
from .execution import WorkerState, run
from .schedules import Scheduler
from .settings import Settings
from .store import RECONNECT_ERRORS, Store, connect, reconnecting
from .transitions import ARQ_FUNCTION

logger = logging.getLogger("taskdeck.worker")
settings = Settings()
registry.load(settings.task_modules)
wake.install()
claim.install()
ARQ_GRACE_S = 60


async def startup(ctx: dict[str, Any]) -> None:
    logs.configure(settings.log_json, settings.log_arq_jobs)
    store = Store(connect(settings, resilient=True), settings)
    if settings.production and (found := await durability.problems(store.redis)):
        logger.error("refusing to start: this Redis can lose jobs: %s (TASKDECK_PRODUCTION is set)", "; ".join(found))
        raise SystemExit(1)
    state = WorkerState(store, f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    ctx["taskdeck"] = state
    state.client = AsyncClient(settings)
    await Scheduler(state.client).seed(settings.schedules)
    await heartbeat.beat(state)
    ctx["taskdeck_tasks"] = [asyncio.create_task(heartbeat.run(state)),
                             asyncio.create_task(wake.listen(store.redis, store.keys.wake))]


async def shutdown(ctx: dict[str, Any]) -> None:
    state: WorkerState | None = ctx.get("taskdeck")
    if state is None:
        return
    await heartbeat.stop(state, ctx.get("taskdeck_tasks", []))
    if state.client is not None:
        await state.client.close()
    await state.store.redis.aclose()


def redis_settings() -> RedisSettings:
    """ARQ's connection, told to wait out a Redis restart instead of ending the worker (ARQ's default)."""
    arq_redis = RedisSettings.from_dsn(settings.url)
    arq_redis.retry, arq_redis.retry_on_error = reconnecting(), RECONNECT_ERRORS
    arq_redis.conn_retries = 30
    arq_redis.ssl_check_hostname = arq_redis.ssl
    return arq_redis


def longest_timeout() -> float:
    return max((t.timeout_s for t in registry.all_types()), default=300.0)


class WorkerSettings:
    functions = [func(run, name=ARQ_FUNCTION, timeout=longest_timeout() + ARQ_GRACE_S, max_tries=1_000_000)]
    redis_settings = redis_settings()
    queue_name = settings.queue_name
    on_startup = startup
    on_shutdown = shutdown
    job_serializer = orjson.dumps
    job_deserializer = orjson.loads
    max_jobs = settings.max_jobs
    poll_delay = settings.poll_delay_s
    job_completion_wait = settings.shutdown_grace_s
    allow_abort_jobs = True
    keep_result = 0
    health_check_interval = 10
