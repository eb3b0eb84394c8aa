"""The HTTP API as a real server process for tests: start and stop one, make tokens, read problems.
The `api` and `own_api` fixtures (tests/conftest.py) use it."""
from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from runner import Settings
from runner.policy import tokens
from runner.policy.access import Role
from runner.storage.store import Store, connect
from tests.conftest import ROOT, free_port
from tests.polling import wait_until

PROBLEM = "application/problem+json"
ROLES = {"boss@x.io": "admin", "ann@x.io": "analyst", "*@x.io": "staff"}  # a token's user must be on the allow-list
ServerFactory = Callable[..., str]


def serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {"TASKDECK_ROLES": json.dumps(ROLES), **env}
    port = free_port()
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "runner", "api", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert proc.poll() is None, log.read_text()[-2000:]
        try:
            return httpx.get(f"{url}/openapi.json", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(answers, 30, "the API server")
    return proc, url


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s; a process that already ended is only reaped."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def token(user: str = "staff@x.io", role: Role = Role.staff, url: str | None = None) -> dict[str, str]:
    async def make() -> str:
        settings = Settings(roles=ROLES, **({"redis_url": url} if url else {}))
        store = Store(connect(settings), settings)
        try:
            return (await tokens.create(store, user, role))[0]
        finally:
            await store.redis.aclose()
    return {"Authorization": f"Bearer {asyncio.run(make())}"}


def is_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body
