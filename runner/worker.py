"""ARQ worker settings: `arq runner.worker.WorkerSettings`.

Every Taskdeck job is one ARQ job of the single function `taskdeck` (execution.run), which reads
the job's record and runs its registered task type. Job data is JSON, never pickle.
"""
from __future__ import annotations

import asyncio
import os
import socket
import uuid
from typing import Any

import orjson
from arq.connections import RedisSettings
from arq.worker import func

from . import heartbeat, logs, registry
from .execution import WorkerState, run
from .settings import Settings
from .store import Store, connect
from .transitions import ARQ_FUNCTION

settings = Settings()
registry.load(settings.task_modules)
ARQ_GRACE_S = 60


async def startup(ctx: dict[str, Any]) -> None:
    logs.configure(settings.log_json)
    state = WorkerState(Store(connect(settings), settings), f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    ctx["taskdeck"] = state
    await heartbeat.beat(state)
    ctx["taskdeck_heartbeat"] = asyncio.create_task(heartbeat.run(state))


async def shutdown(ctx: dict[str, Any]) -> None:
    state: WorkerState | None = ctx.get("taskdeck")
    if state is None:
        return
    await heartbeat.stop(state, ctx["taskdeck_heartbeat"])
    await state.store.redis.aclose()


def longest_timeout() -> float:
    return max((t.timeout_s for t in registry.all_types()), default=300.0)


class WorkerSettings:
    functions = [func(run, name=ARQ_FUNCTION, timeout=longest_timeout() + ARQ_GRACE_S, max_tries=1_000_000)]
    redis_settings = RedisSettings.from_dsn(settings.url)
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
