"""Stand-in for `testcontainers.redis.RedisContainer`, the only thing ARQ's conftest takes from it.

ARQ's session fixtures start a Redis container and ask it for its host and mapped port. This answers
with the redis-server that compat/arq_suite.py started (its port in ARQ_COMPAT_REDIS_PORT), so ARQ's
tests and conftest run unmodified, with no Docker.
"""
from __future__ import annotations

import os
from types import TracebackType


class RedisContainer:
    port = 6379

    def __init__(self, image: str = "redis:latest", **kwargs: object) -> None:
        self.image = image

    def __enter__(self) -> RedisContainer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None

    def get_container_host_ip(self) -> str:
        return "127.0.0.1"

    def get_exposed_port(self, port: int) -> int:
        return int(os.environ["ARQ_COMPAT_REDIS_PORT"])
