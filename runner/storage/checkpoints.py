"""A job's checkpoints (TaskContext.run) in Redis: one hash per job, name -> context.Checkpoint JSON.

Written when a step completes and kept for the job's retention: lua/transition.lua sets the hash to expire
with the record when the job ends, and deletes it with the record. A rerun from a step copies the ones made
before that step into the new job's hash, in the same script that creates the job (`copy_calls`).
"""
from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from ..context import Checkpoint
from ..errors import InvalidPayload
from .keys import Keys


class RedisCheckpoints:
    """The worker's CheckpointStore for one job."""

    def __init__(self, redis: Redis, keys: Keys, job_id: str, ttl_s: float) -> None:
        self.redis, self.key, self.ttl_s = redis, keys.checkpoints(job_id), int(ttl_s)

    async def load(self) -> dict[str, str]:
        found: dict[str, str] = await self.redis.hgetall(self.key)  # type: ignore[misc]  # redis-py types replies `Awaitable[T] | T` for both clients
        return found

    async def save(self, name: str, raw: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key, name, raw)
            pipe.expire(self.key, self.ttl_s)
            await pipe.execute()


def ordered(stored: dict[str, str]) -> list[tuple[str, Checkpoint]]:
    """The checkpoints in the order they were made."""
    found = [(name, Checkpoint.model_validate_json(raw)) for name, raw in stored.items()]
    return sorted(found, key=lambda item: item[1].seq)


def before(stored: dict[str, str], from_step: str, steps: list[str]) -> list[str]:
    """The names of the checkpoints made before `from_step`: a checkpoint's name, or a step's (one of
    `steps`, the job's steps in order: then the checkpoints made in the steps before it, and those made
    outside any step before the first checkpoint of that step or a later one). InvalidPayload when it is
    neither, naming what it could be."""
    made = ordered(stored)
    names = [name for name, _ in made]
    if from_step in names:
        return names[: names.index(from_step)]
    if from_step not in steps:
        known = ", ".join(repr(n) for n in dict.fromkeys([*steps, *names])) or "none"
        raise InvalidPayload(f"from_step {from_step!r} is neither a step nor a checkpoint of this job; "
                             f"its steps and checkpoints: {known}")
    later = set(steps[steps.index(from_step):])
    reused: list[str] = []
    for name, checkpoint in made:
        if checkpoint.step in later:
            break
        reused.append(name)
    return reused


def copy_calls(keys: Keys, job_id: str, stored: dict[str, str], names: list[str], ttl_s: float) -> list[list[Any]]:
    """Redis commands that give job `job_id` the checkpoints `names` of `stored`, renumbered from 0."""
    if not names:
        return []
    fields: list[Any] = []
    for seq, name in enumerate(names):
        checkpoint = Checkpoint.model_validate_json(stored[name]).model_copy(update={"seq": seq})
        fields += [name, checkpoint.model_dump_json()]
    key = keys.checkpoints(job_id)
    return [["HSET", key, *fields], ["EXPIRE", key, int(ttl_s)]]
