"""ARQ's own test suite as Taskdeck's compatibility gate (issue 22).

    .venv/bin/python compat/arq_suite.py [--rebuild]

Taskdeck hooks into ARQ (runner/worker/claim.py; runner/worker/arq_settings.py says what else it wires, per worker),
and teams load Taskdeck's worker beside their own ARQ code. This runs the tests of the ARQ version
pinned in requirements.txt, from that version's sdist, against the installed arq, twice:

  bare       ARQ's tests as they are;
  taskdeck   the same, with compat/plugins/taskdeck_loaded.py loaded first: `import runner.worker`
             and one real Taskdeck worker run to the end in the same process.

It fails unless every test that passes bare passes with Taskdeck (a failure is run once more, to
separate flakes). Bumping the arq pin reruns the newer version's suite against our hooks.

The suite runs in a venv of its own, `.venv-arq/` (gitignored; rebuilt when the arq pin, Taskdeck's
runtime requirements or Python change), holding Taskdeck's runtime requirements (requirements.txt up
to its `# Tests` section) and ARQ's test dependencies at the versions ARQ's uv.lock names; those
clash with the project's pytest pins, so they never go in .venv. ARQ's conftest starts Redis through
testcontainers (Docker); compat/stand_in/testcontainers answers with a redis-server this script
starts. ARQ's deprecation and resource warnings are ignored in both runs: ARQ's own fixtures trip
them (redis-py 5.3 deprecates the `close()` they call) and they would hide real differences.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COMPAT = ROOT / "compat"
VENV = ROOT / ".venv-arq"
STAMP = VENV / "taskdeck-compat.json"
SKIPPED_TEST_DEPS = {"coverage", "testcontainers"}  # no coverage here; testcontainers: compat/stand_in
EXTRA_TEST_DEPS = ["watchfiles"]  # arq[watch], which test_cli's --watch tests import
WARNINGS = ["-W", "ignore::DeprecationWarning", "-W", "ignore::ResourceWarning"]

sys.path.insert(0, str(ROOT))
from runner.ops import redis_server  # noqa: E402


@dataclass
class Run:
    name: str
    outcomes: dict[str, str]
    seconds: float
    log: Path

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes.values() if o == outcome)

    def summary(self) -> str:
        return (f"{self.name:<9} {self.count('passed'):>4} passed {self.count('failed'):>4} failed "
                f"{self.count('skipped'):>4} skipped  ({len(self.outcomes)} tests, {self.seconds:.1f} s)")


def name_of(requirement: str) -> str:
    return requirement.split("[")[0].split("=")[0].split("<")[0].split(">")[0].strip().lower().replace("_", "-")


def runtime_requirements() -> list[str]:
    """requirements.txt from its `# Runtime` header up to `# Tests`: what `import runner.worker` may need."""
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    if "# Runtime" not in lines or "# Tests" not in lines:
        raise SystemExit("requirements.txt lost its '# Runtime' / '# Tests' headers: compat/arq_suite.py reads them")
    section = lines[lines.index("# Runtime") + 1:lines.index("# Tests")]
    return [line.strip() for line in section if line.strip() and not line.startswith("#")]


def arq_version(requirements: list[str]) -> str:
    for line in requirements:
        if name_of(line) == "arq" and "==" in line:
            return line.split("==")[1].strip()
    raise SystemExit("requirements.txt pins no arq==<version>")


def stamp(requirements: list[str]) -> dict[str, Any]:
    """What the cached venv was built from; any change rebuilds it."""
    return {"requirements": requirements, "python": platform.python_version(), "format": 1}


def run(*args: str | Path, cwd: Path | None = None) -> None:
    subprocess.run([str(a) for a in args], cwd=cwd, check=True)


def fetch_tests(python: Path, version: str) -> Path:
    """ARQ's sdist, unpacked: its tests/ and uv.lock; its arq/ moved aside so the installed arq is tested."""
    download = VENV / "sdist"
    run(python, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:", f"arq=={version}",
        "-d", download)
    [archive] = download.glob(f"arq-{version}.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(VENV, filter="data")
    suite = VENV / f"arq-{version}"
    (suite / "arq").rename(suite / "arq-from-sdist")
    return suite


def lock_pins(lock: Path, skip: set[str]) -> list[str]:
    """ARQ's `testing` dependency group (and arq[watch]) at the versions its uv.lock resolved."""
    data = tomllib.loads(lock.read_text())
    packages: dict[str, list[dict[str, Any]]] = {}
    for package in data["package"]:
        packages.setdefault(package["name"], []).append(package)
    [arq] = packages["arq"]
    names = [dep["name"] for dep in arq["dev-dependencies"]["testing"]] + EXTRA_TEST_DEPS
    pins: list[str] = []
    for name in dict.fromkeys(names):
        if name in skip:
            continue
        pins.append(f"{name}=={pick_version(packages[name])}")
    return pins


def pick_version(candidates: list[dict[str, Any]]) -> str:
    """The locked version for this interpreter, where the lock resolved several by Python version."""
    if len(candidates) == 1:
        return str(candidates[0]["version"])
    from packaging.markers import Marker
    from packaging.version import Version

    fitting = [c for c in candidates if any(Marker(m).evaluate() for m in c.get("resolution-markers", []))]
    return str(max(fitting or candidates, key=lambda c: Version(c["version"]))["version"])


def build(requirements: list[str], version: str) -> Path:
    print(f"building {VENV.relative_to(ROOT)} (ARQ {version}'s tests and test dependencies) ...", flush=True)
    shutil.rmtree(VENV, ignore_errors=True)
    run(sys.executable, "-m", "venv", VENV)
    python = VENV / "bin" / "python"
    suite = fetch_tests(python, version)
    pins = lock_pins(suite / "uv.lock", SKIPPED_TEST_DEPS | {name_of(r) for r in requirements})
    print(f"  ARQ's test pins: {' '.join(pins)}", flush=True)
    run(python, "-m", "pip", "install", "--quiet", *requirements, *pins)
    STAMP.write_text(json.dumps({**stamp(requirements), "suite": suite.name, "pins": pins}, indent=1))
    return suite


def ensure_venv(rebuild: bool) -> tuple[Path, Path]:
    """The cached venv's python and the unpacked suite, built when missing or out of date."""
    requirements = runtime_requirements()
    version = arq_version(requirements)
    built = json.loads(STAMP.read_text()) if STAMP.exists() else {}
    if rebuild or {k: built.get(k) for k in stamp(requirements)} != stamp(requirements):
        suite = build(requirements, version)
    else:
        suite = VENV / built["suite"]
    return VENV / "bin" / "python", suite


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without Taskdeck's settings or a Python path of its own, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TASKDECK_") and k not in ("REDIS_URL", "PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, **extra}


def run_suite(python: Path, suite: Path, port: int, name: str, work: Path, timeout_s: float,
              only: list[str] | None = None) -> Run:
    """One pytest run of ARQ's tests; `name` "taskdeck" loads Taskdeck first. Output goes to a log file."""
    taskdeck = name.startswith("taskdeck")
    paths = [COMPAT / "stand_in", COMPAT / "plugins"] + ([ROOT] if taskdeck else [])
    outcomes, log = work / f"{name}.json", VENV / f"{name}.log"
    env = clean_env(PYTHONPATH=os.pathsep.join(map(str, paths)), ARQ_COMPAT_REDIS_PORT=str(port),
                    ARQ_COMPAT_OUTCOMES=str(outcomes), REDIS_URL=f"redis://127.0.0.1:{port}/0")
    args = [str(python), "-m", "pytest", "-p", "no:cacheprovider", "-p", "arq_outcomes", *WARNINGS, "-q"]
    args += ["-p", "taskdeck_loaded"] if taskdeck else []
    started = time.monotonic()
    with log.open("wb") as out:
        try:
            subprocess.run(args + (only or ["tests"]), cwd=suite, env=env, stdout=out, stderr=subprocess.STDOUT,
                           timeout=timeout_s)
        except subprocess.TimeoutExpired:
            print(f"{name}: ARQ's suite did not finish in {timeout_s:g} s; stopped (see {log})", flush=True)
    found = json.loads(outcomes.read_text()) if outcomes.exists() else {}
    return Run(name, found, time.monotonic() - started, log)


def regressions(bare: Run, taskdeck: Run) -> list[str]:
    return sorted(t for t, o in bare.outcomes.items() if o == "passed" and taskdeck.outcomes.get(t) != "passed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rebuild", action="store_true", help="rebuild .venv-arq even if it is up to date")
    parser.add_argument("--run-timeout", type=float, default=300, help="seconds one run of the suite may take")
    args = parser.parse_args()
    started = time.monotonic()
    python, suite = ensure_venv(args.rebuild)
    print(f"ARQ {suite.name.removeprefix('arq-')}'s own test suite, bare and with Taskdeck loaded", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work, port = Path(tmp), free_port()
        server = redis_server.start(work / "redis", port, persistent=False)
        try:
            bare = run_suite(python, suite, port, "bare", work, args.run_timeout)
            taskdeck = run_suite(python, suite, port, "taskdeck", work, args.run_timeout)
            failing = [t for t in regressions(bare, taskdeck) if taskdeck.outcomes.get(t) == "failed"]
            again = run_suite(python, suite, port, "taskdeck-rerun", work, args.run_timeout, failing) \
                if failing else None
        finally:
            server.terminate()
            server.wait(10)
    print(bare.summary())
    print(taskdeck.summary())
    lost = [t for t in regressions(bare, taskdeck) if again is None or again.outcomes.get(t) != "passed"]
    flaky = [t for t in failing if t not in lost]
    if flaky:
        print(f"flaky (failed with Taskdeck, passed when run again): {', '.join(flaky)}")
    print(f"gate: {time.monotonic() - started:.0f} s; logs in {VENV.relative_to(ROOT)}/{{bare,taskdeck}}.log")
    if bare.count("passed") == 0:
        print(f"FAIL: no test passed on bare ARQ; the gate proves nothing (see {bare.log})")
        return 1
    if lost:
        print(f"FAIL: {len(lost)} of ARQ's tests pass bare but fail with Taskdeck loaded:")
        print("\n".join(f"  {t}" for t in lost))
        return 1
    print(f"OK: all {bare.count('passed')} tests that pass on bare ARQ pass with Taskdeck loaded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
