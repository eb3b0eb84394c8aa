"""Each named queue's load: what waits in its ARQ queue, and the slots the live workers give it (their
heartbeats say which queues they serve and how many of each one's slots are busy)."""
from __future__ import annotations

import time

import orjson

from .. import queues, registry
from ..models import QueueLoad
from ..storage.store import Store


def names() -> list[str]:
    """Every named queue: the seed's and the ones registered types name."""
    return sorted({*queues.SEED, *registry.queue_names()})


async def loads(store: Store) -> dict[str, QueueLoad]:
    keys, now = store.keys, time.time()
    found = names()
    async with store.redis.pipeline(transaction=False) as pipe:
        for name in found:
            pipe.zcount(keys.arq_queue(name), "-inf", int(now * 1000))
        pipe.zrangebyscore(keys.workers, now, "+inf")
        rows = await pipe.execute()
    waiting, alive = rows[:-1], rows[-1]
    async with store.redis.pipeline(transaction=False) as pipe:
        for worker_id in alive:
            pipe.hget(keys.worker(worker_id), "queues")
        served = [orjson.loads(raw) if raw else {} for raw in await pipe.execute()]
    load = {name: QueueLoad(waiting=n, running=0, capacity=0, workers=0)
            for name, n in zip(found, waiting, strict=True)}
    for worker in served:
        for name, (busy, slots) in worker.items():
            entry = load.setdefault(name, QueueLoad(waiting=0, running=0, capacity=0, workers=0))
            entry.running += busy
            entry.capacity += slots
            entry.workers += 1
    return load
