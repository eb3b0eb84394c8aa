"""`python -m runner llm serve`: the embedded demo model as an OpenAI-compatible endpoint on loopback.

llama.cpp's server (xllamacpp, in a child process, runner.llm.engine, on an internal loopback port) computes.
Clients call a small front (Starlette on uvicorn, this process) that adds what a 135M-parameter model needs
to serve the task types:
- it accepts connections at once and holds requests until the model has loaded (a second or two); a model
  that cannot load (or crashes while loading) is answered with the reason and the fix (424), and one that
  crashes later is started again on the next request;
- a prompt longer than a slot's context is cut in its middle, and the reply starts with a note saying so
  (the job's streamed output shows it), instead of llama.cpp's 400;
- a reply is bounded: `max_tokens` when the request names none, and a JSON-schema reply's lists and text
  fields (runner.llm.fitting), so that the model cannot ramble on until the context ends;
- the model card's sampling settings (temperature 0.2, top_p 0.9) and a repeat penalty of 1.1, where the
  request names none.
Requests beyond the slots wait in llama.cpp's queue; a client that hangs up frees its slot.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..process import die_with_parent
from . import fitting
from .embedded import INSTALL, EmbeddedOptions, model_name

# SmolLM2's model card, and a mild repeat penalty: without it the model often fills every list with one word.
SAMPLING = {"temperature": 0.2, "top_p": 0.9, "repeat_penalty": 1.1}
FAILED_DEPENDENCY = 424  # a 4xx: the LLM client fails the job at once instead of retrying a broken install


class Unavailable(Exception):
    """The model cannot answer: why, and the fix."""


class Engine:
    """llama.cpp's server (runner.llm.engine) in a child process: started with the front, started again on the
    next request after a crash that followed a good start; a start that fails is reported on every request."""

    def __init__(self, options: EmbeddedOptions) -> None:
        self.options = options
        self.name = model_name(options)
        self.error: str | None = None
        self.http: httpx.AsyncClient | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr: deque[str] = deque(maxlen=5)
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def loaded(self) -> bool:
        return self.http is not None and self._proc is not None and self._proc.returncode is None

    async def ready(self) -> httpx.AsyncClient:
        """The client of a running engine, starting it if needed; Unavailable with the reason if it cannot run."""
        async with self._lock:
            if self.error is None and not self.loaded:
                await self._start()
        if self.error is not None or self.http is None:
            raise Unavailable(self.error or "the embedded demo model is not running")
        return self.http

    async def _start(self) -> None:
        await self.close()
        env = {**os.environ, **{f"TASKDECK_LLM_EMBEDDED_{name.upper()}": str(value) for name, value in
                                self.options.model_dump(exclude_none=True, exclude={"url"}).items()}}
        self._proc = proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runner.llm.engine", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, preexec_fn=die_with_parent)
        assert proc.stdout is not None and proc.stderr is not None
        self._keep(self._tail(proc.stderr))
        line = (await proc.stdout.readline()).decode().strip()
        self._keep(self._drain(proc.stdout))
        if not line.startswith("http://"):
            code = await proc.wait()
            await asyncio.sleep(0.05)  # the last of its stderr
            why = " ".join(self._stderr) or f"exit code {code}"
            self.error = f"the embedded demo model could not be loaded ({crash(code)}{why}); {INSTALL}"
            return
        # No keep-alive: an idle pooled connection would hold one of llama.cpp's HTTP threads.
        self.http = httpx.AsyncClient(base_url=line, timeout=None,
                                      limits=httpx.Limits(max_connections=None, max_keepalive_connections=0))

    async def _tail(self, stream: asyncio.StreamReader) -> None:
        """Pass on what the engine writes to stderr (to the log of whoever started this endpoint), keeping the
        last lines: its reason when it fails."""
        async for raw in stream:
            if line := raw.decode(errors="replace").strip():
                self._stderr.append(line)
                print(f"llama.cpp: {line}", file=sys.stderr, flush=True)

    @staticmethod
    async def _drain(stream: asyncio.StreamReader) -> None:
        while await stream.read(65536):
            pass

    def _keep(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self.http is not None:
            await self.http.aclose()
            self.http = None
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            await self._proc.wait()

    async def count(self, messages: list[fitting.Message]) -> int:
        """Tokens of `messages` once the model's chat template has laid them out."""
        http = await self.ready()
        prompt = (await http.post("/apply-template", json={"messages": messages})).raise_for_status().json()["prompt"]
        tokens = (await http.post("/tokenize", json={"content": prompt, "add_special": True})).raise_for_status()
        return len(tokens.json()["tokens"])


def crash(code: int) -> str:
    """How the engine ended, when a signal ended it (SIGILL: the CPU lacks an instruction the wheel uses)."""
    if code >= 0:
        return ""
    try:
        return f"it crashed with {signal.Signals(-code).name}: "
    except ValueError:
        return f"it crashed with signal {-code}: "


def error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    """An error the OpenAI SDK reads (`error.message`)."""
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


async def shape(body: dict[str, Any], engine: Engine) -> tuple[dict[str, Any], str]:
    """The request as llama.cpp gets it, and the note the reply starts with ('' when nothing was cut)."""
    options = engine.options
    out = {**SAMPLING, **body, "model": engine.name}
    out["max_tokens"] = min(out.pop("max_completion_tokens", None) or out.get("max_tokens") or options.max_tokens,
                            options.context // 2)
    schema_format = out.get("response_format") or {}
    if schema_format.get("type") == "json_schema" and "schema" in (schema_format.get("json_schema") or {}):
        spec = schema_format["json_schema"]
        out["response_format"] = {**schema_format, "json_schema": {
            **spec, "schema": fitting.bounded(spec["schema"], options.max_items, options.max_chars)}}
    fitted = await fitting.fit(list(out.get("messages") or []), options.context - out["max_tokens"], engine.count)
    out["messages"] = fitted.messages
    return out, fitting.note(fitted, options.context) if fitted.cut else ""


def chunk(model: str, content: str) -> bytes:
    """One server-sent event holding `content` as the start of the assistant's reply."""
    event = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()),
             "model": model, "choices": [{"index": 0, "delta": {"role": "assistant", "content": content},
                                          "finish_reason": None}]}
    return b"data: " + orjson.dumps(event) + b"\n\n"


async def relay(upstream: httpx.Response, first: bytes) -> AsyncIterator[bytes]:
    try:
        if first:
            yield first
        async for part in upstream.aiter_raw():
            yield part
    finally:
        with anyio.CancelScope(shield=True):  # also when the client hung up: llama.cpp then frees the slot
            await upstream.aclose()


async def chat_completions(request: Request) -> Response:
    engine: Engine = request.app.state.engine
    try:
        body = orjson.loads(await request.body())
        if not isinstance(body, dict):
            raise ValueError("the body is not a JSON object")
        http = await engine.ready()
        shaped, note = await shape(body, engine)
        upstream = await http.send(http.build_request("POST", "/v1/chat/completions", json=shaped), stream=True)
    except Unavailable as e:
        return error(FAILED_DEPENDENCY, str(e), "model_unavailable")
    except (ValueError, fitting.TooLong) as e:
        return error(400, str(e))
    except httpx.HTTPError as e:  # a 5xx: the LLM client tries again, and the engine is started again
        return error(503, f"the embedded demo model stopped ({type(e).__name__}); it starts again with the next "
                          "request", "model_restarting")
    if upstream.status_code == 200 and shaped.get("stream"):
        return StreamingResponse(relay(upstream, chunk(engine.name, note) if note else b""),
                                 media_type="text/event-stream")
    return await whole(upstream, note)


async def whole(upstream: httpx.Response, note: str) -> Response:
    """A reply that is not streamed (or an error), with the note in front of its text."""
    content = await upstream.aread()
    await upstream.aclose()
    if upstream.status_code == 200 and note:
        reply = orjson.loads(content)
        for choice in reply.get("choices", []):
            choice["message"]["content"] = note + (choice["message"].get("content") or "")
        content = orjson.dumps(reply)
    return Response(content, upstream.status_code, media_type="application/json")


async def models(request: Request) -> Response:
    engine: Engine = request.app.state.engine
    return JSONResponse({"object": "list", "data": [
        {"id": engine.name, "object": "model", "created": 0, "owned_by": "taskdeck-embedded"}]})


async def health(request: Request) -> Response:
    """200 once the model answers (starting it if needed); 424 with the reason when it cannot."""
    engine: Engine = request.app.state.engine
    try:
        await engine.ready()
    except Unavailable as e:
        return JSONResponse({"status": "failed", "error": str(e)}, status_code=FAILED_DEPENDENCY)
    return JSONResponse({"status": "ok", "model": engine.name, "slots": engine.options.parallel,
                         "context": engine.options.context})


async def warm(engine: Engine) -> None:
    """Load the model at once, so that the first request does not wait for it (a failure is kept)."""
    with contextlib.suppress(Unavailable):
        await engine.ready()


def create_app(options: EmbeddedOptions, loaded: Callable[[Engine], None] | None = None) -> Starlette:
    """The front; `loaded` is called once the model has loaded (or failed to)."""
    engine = Engine(options)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loading = asyncio.create_task(warm(engine))
        if loaded is not None:
            loading.add_done_callback(lambda task: None if task.cancelled() else loaded(engine))
        yield
        loading.cancel()
        await engine.close()

    app = Starlette(routes=[
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", models), Route("/health", health),
    ], lifespan=lifespan)
    app.state.engine = engine
    return app


def run(options: EmbeddedOptions, sock: socket.socket, child: bool = False) -> int:
    """Serve on the listening socket `sock` until SIGINT/SIGTERM, printing the URL once the model has loaded
    (exit 1 if it cannot load). As a `child` of a worker or `up`: silently, and a model that cannot load is
    reported on every request, so that the jobs fail with the reason."""
    url = "http://{}:{}/v1".format(*sock.getsockname()[:2])
    failed = False

    def loaded(engine: Engine) -> None:
        nonlocal failed
        if engine.error is not None:
            failed = server.should_exit = True
            print(f"error: {engine.error}", file=sys.stderr, flush=True)
            return
        print(f"{engine.name} (the embedded demo model; {options.parallel} slot(s) of {options.context:,} tokens, "
              f"{options.threads} thread(s)) serves {url}\n  workers on this machine use it with "
              f"TASKDECK_LLM_EMBEDDED_URL={url}, or as any endpoint: TASKDECK_LLM_BASE_URL={url} "
              f"TASKDECK_LLM_MODEL={engine.name}\n  Ctrl-C stops it.", flush=True)

    config = uvicorn.Config(create_app(options, None if child else loaded), log_level="warning",
                            access_log=False, timeout_graceful_shutdown=2, lifespan="on")
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 1 if failed else 0
