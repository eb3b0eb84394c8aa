"""Generated API clients as a test (issue 23): what a team in another language does with Taskdeck's spec.

    .venv/bin/python compat/clients/run.py

1. Tools, cached in .clients/ (gitignored) and rebuilt only when their pins change: a venv of their own,
   .clients/venv (openapi-python-client, openapi-spec-validator and mypy, pinned in requirements.txt
   here: they clash with the project's pins), and .clients/ts/node_modules (`npm ci` from ts/'s
   lock file: openapi-typescript, openapi-fetch, typescript) for the machine's Node.js.
2. redis-server, the HTTP API (`python -m runner api`) and a worker on loopback, started the way
   tests/api/test_app.py starts them, with the default task modules; a token from runner.policy.tokens.create
   for a user on TASKDECK_ROLES.
3. The spec the API serves at /openapi.json: valid (openapi-spec-validator) and the same as the
   committed docs/openapi.json.
4. Python: openapi-python-client generates `taskdeck_client` without a warning; `mypy --strict` passes
   on roundtrip.py, which uses it (and must refuse a payload of the wrong shape); roundtrip.py runs.
5. TypeScript: openapi-typescript generates schema.ts; `tsc --noEmit` passes on ts/roundtrip.ts (whose
   payloads of the wrong shape must not compile); it is emitted and run with node.

Prints a line per check and `N passed, N failed`; exits 1 when a check failed.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "compat" / "clients"
WORK = ROOT / ".clients"
VENV = WORK / "venv"
NODE = WORK / "ts"
PY_OUT = WORK / "py"
SNAPSHOT = ROOT / "docs" / "openapi.json"
USER = "client@x.io"
ROLES = {USER: "staff"}
DEFAULT_MODULES = '["runner.tasks"]'  # the task types docs/openapi.json is made with

sys.path.insert(0, str(ROOT))
from runner import Settings  # noqa: E402
from runner.ops import redis_server  # noqa: E402
from runner.policy import tokens  # noqa: E402
from runner.policy.access import Role  # noqa: E402
from runner.process import die_with_parent  # noqa: E402
from runner.storage.store import Store, connect  # noqa: E402
from tests.api_server import stop  # noqa: E402
from tests.conftest import TEST_SETTINGS, free_port  # noqa: E402
from tests.polling import wait_until  # noqa: E402


class Failed(Exception):
    """A check failed; the message says how (the tail of a tool's output)."""


@dataclass
class Report:
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def run(self, name: str, check: Callable[[], None]) -> bool:
        started = time.monotonic()
        try:
            check()
        except Failed as e:
            self.failed.append(name)
            print(f"FAILED {name} ({time.monotonic() - started:.1f} s)\n{indent(str(e))}", flush=True)
            return False
        self.passed.append(name)
        print(f"ok {name} ({time.monotonic() - started:.1f} s)", flush=True)
        return True

    def skip(self, name: str, because: str) -> None:
        self.failed.append(name)
        print(f"FAILED {name}: not run, {because}", flush=True)


def indent(text: str, tail: int = 60) -> str:
    return "\n".join(f"    {line}" for line in text.strip().splitlines()[-tail:])


def sh(*args: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Run a command; its output, or Failed with it."""
    try:
        done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise Failed(f"{' '.join(map(str, args))} took over {timeout:g} s") from e
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise Failed(f"{' '.join(map(str, args))} exited {done.returncode}:\n{output}")
    return output


def up_to_date(stamp: Path, key: str) -> bool:
    return stamp.exists() and stamp.read_text() == key


def python_tools() -> None:
    """The side venv, rebuilt when requirements.txt or Python changes."""
    requirements = HERE / "requirements.txt"
    key = f"{sys.version}\n{requirements.read_text()}"
    stamp = VENV / "taskdeck-pins.txt"
    if up_to_date(stamp, key):
        return
    shutil.rmtree(VENV, ignore_errors=True)
    sh(sys.executable, "-m", "venv", VENV)
    sh(VENV / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", requirements,
       timeout=600)
    stamp.write_text(key)


def node_tools() -> None:
    """node_modules from ts/'s lock file, installed again when the lock file or Node.js changes."""
    lock = HERE / "ts" / "package-lock.json"
    key = f"{sh('node', '--version')}\n{lock.read_text()}"
    stamp = NODE / "node_modules" / ".taskdeck-pins.txt"
    if up_to_date(stamp, key):
        return
    NODE.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy(HERE / "ts" / name, NODE / name)
    sh("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error", cwd=NODE, timeout=600)
    stamp.write_text(key)


def launch(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=die_with_parent)


@contextmanager
def services() -> Iterator[tuple[str, str]]:
    """Redis, the API and a worker on loopback, as tests/api/test_app.py and tests/conftest.py start them;
    yields the API's URL and a bearer token."""
    logs = WORK / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    with ExitStack() as stack:
        redis_port = free_port()
        redis = redis_server.start(logs / "redis", redis_port, persistent=False)
        stack.callback(stop, redis)
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        env = {**os.environ, **TEST_SETTINGS, "REDIS_URL": redis_url, "TASKDECK_TASK_MODULES": DEFAULT_MODULES,
               "TASKDECK_ROLES": json.dumps(ROLES)}
        port = free_port()
        api = launch([sys.executable, "-m", "runner", "api", "--port", str(port)], env, logs / "api.log")
        stack.callback(stop, api)
        worker = launch([sys.executable, "-m", "arq", "runner.worker.WorkerSettings"], env, logs / "worker.log")
        stack.callback(stop, worker)
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            if api.poll() is not None:
                raise Failed(f"the API exited:\n{(logs / 'api.log').read_text()}")
            try:
                return httpx.get(f"{url}/openapi.json", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(answers, 30, "the API server")
        wait_until(lambda: httpx.get(f"{url}/api/health").json()["workers_alive"] >= 1, 30, "the worker")
        yield url, token(redis_url)


def token(redis_url: str) -> str:
    async def make() -> str:
        settings = Settings(roles=ROLES, redis_url=redis_url)
        store = Store(connect(settings), settings)
        try:
            return (await tokens.create(store, USER, Role.staff))[0]
        finally:
            await store.redis.aclose()
    return asyncio.run(make())


def served_spec(url: str) -> Path:
    path = WORK / "openapi.json"
    path.write_text(httpx.get(f"{url}/openapi.json", timeout=10).text)
    return path


def valid(spec: Path) -> None:
    sh(VENV / "bin" / "openapi-spec-validator", spec)


def same_as_snapshot(spec: Path) -> None:
    if json.loads(spec.read_text()) != json.loads(SNAPSHOT.read_text()):
        raise Failed("the API serves another spec than docs/openapi.json: refresh the snapshot with "
                     "`./taskdeck openapi > docs/openapi.json` (and review what changed)")


def python_client(spec: Path) -> None:
    shutil.rmtree(PY_OUT, ignore_errors=True)
    env = {**os.environ, "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}  # its ruff hook
    output = sh(VENV / "bin" / "openapi-python-client", "generate", "--path", spec, "--output-path",
                PY_OUT / "taskdeck_client", "--meta", "none", env=env)
    if "warning" in output.lower():
        raise Failed(f"openapi-python-client warned:\n{output}")
    shutil.copy(HERE / "roundtrip.py", PY_OUT / "roundtrip.py")


def python_types() -> None:
    sh(VENV / "bin" / "mypy", "--strict", "--warn-unused-ignores", "--follow-imports=silent",
       "--cache-dir", WORK / "mypy-cache", "roundtrip.py", cwd=PY_OUT)


def python_round_trip(url: str, secret: str) -> None:
    print(indent(sh(VENV / "bin" / "python", "roundtrip.py", url, secret, cwd=PY_OUT, timeout=180), tail=100))


def typescript_client(spec: Path) -> None:
    shutil.rmtree(NODE / "out", ignore_errors=True)
    sh("npx", "--no-install", "openapi-typescript", spec, "--output", "schema.ts", "--default-non-nullable", "false",
       cwd=NODE)
    for name in ("roundtrip.ts", "tsconfig.json"):
        shutil.copy(HERE / "ts" / name, NODE / name)


def typescript_types() -> None:
    sh("npx", "--no-install", "tsc", "--noEmit", "-p", ".", cwd=NODE)


def typescript_round_trip(url: str, secret: str) -> None:
    sh("npx", "--no-install", "tsc", "--noCheck", "-p", ".", cwd=NODE)  # checked above: emit only
    print(indent(sh("node", "out/roundtrip.js", url, secret, cwd=NODE, timeout=180), tail=100))


def main() -> int:
    started = time.monotonic()
    WORK.mkdir(exist_ok=True)
    report = Report()
    tools = {"Python tools": python_tools, "Node.js tools": node_tools}
    ready = {name: report.run(f"install {name} (cached in .clients/)", step) for name, step in tools.items()}
    with services() as (url, secret):
        spec = served_spec(url)
        report.run("the served spec is valid OpenAPI", lambda: valid(spec))
        report.run("the served spec is docs/openapi.json", lambda: same_as_snapshot(spec))
        phases = {
            "Python tools": [("python: generate the client", lambda: python_client(spec)),
                             ("python: mypy --strict on the round trip", python_types),
                             ("python: round trip", lambda: python_round_trip(url, secret))],
            "Node.js tools": [("typescript: generate the types", lambda: typescript_client(spec)),
                              ("typescript: tsc --noEmit on the round trip", typescript_types),
                              ("typescript: round trip", lambda: typescript_round_trip(url, secret))],
        }
        for tool, checks in phases.items():
            blocked = None if ready[tool] else f"installing the {tool} failed"
            for name, check in checks:
                if blocked:
                    report.skip(name, blocked)
                elif not report.run(name, check):
                    blocked = f"{name!r} failed"
    print(f"generated clients: {time.monotonic() - started:.0f} s")
    print(f"{len(report.passed)} passed, {len(report.failed)} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
