"""An OpenAI-compatible chat-completions server on 127.0.0.1 for tests: streams SSE chunks with usage,
and replays scripted trouble (429 with Retry-After, 5xx, slow or malformed replies) in order.

Replies are built from the request: a JSON instance of the schema in response_format (or in the prompt's
<schema> block, fenced as a chat model would), so every task type can run against it unchanged.
"""
from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

SCHEMA_IN_PROMPT = re.compile(r"<schema>\s*(.*?)\s*</schema>", re.DOTALL)


@dataclass
class Trouble:
    """What one request gets instead of a normal reply."""

    status: int = 200
    retry_after: str | None = None
    code: str | None = None
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    malformed_stream: bool = False
    content: str | None = None
    no_usage: bool = False
    refuse_schema: bool = False


@dataclass
class Request:
    body: dict[str, Any]
    at: float = field(default_factory=time.monotonic)

    @property
    def prompt(self) -> str:
        return "\n".join(m["content"] for m in self.body["messages"])

    @property
    def task(self) -> str:
        return self.body["messages"][-1]["content"]


def instance(schema: dict[str, Any], name: str = "value") -> Any:
    """A small valid instance of a (strict, inlined) JSON schema."""
    if "anyOf" in schema:
        return instance(next(s for s in schema["anyOf"] if s.get("type") != "null"), name)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {key: instance(sub, key) for key, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [instance(schema["items"], name) for _ in range(max(schema.get("minItems", 0), 2))]
    if kind in ("integer", "number"):
        return schema.get("minimum", 1) + (0 if kind == "integer" else 0.5)
    if kind == "boolean":
        return True
    return f"{name} {int(time.monotonic_ns() % 1_000_000)}"


class FakeLLM:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.script: deque[Trouble] = deque()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self) -> FakeLLM:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def then(self, *troubles: Trouble | str) -> None:
        """Script the next requests' replies in order ("ok" for a normal one); afterwards all are normal."""
        with self.lock:
            self.script.extend(Trouble() if t == "ok" else t for t in troubles)  # type: ignore[misc]

    def _next(self, body: dict[str, Any]) -> Trouble:
        with self.lock:
            self.requests.append(Request(body))
            return self.script.popleft() if self.script else Trouble()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/v1/chat/completions":
                    return self.error(404, "no such route")
                fake.respond(self, body, fake._next(body))

            def error(self, status: int, message: str, code: str | None = None,
                      retry_after: str | None = None) -> None:
                payload = json.dumps({"error": {"message": message, "type": "test", "code": code}}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.end_headers()
                self.wfile.write(payload)

        return Handler

    def reply_text(self, body: dict[str, Any]) -> str:
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema":
            return json.dumps(instance(fmt["json_schema"]["schema"]))
        found = SCHEMA_IN_PROMPT.search("\n".join(m["content"] for m in body["messages"]))
        if found:
            return "Here it is:\n```json\n" + json.dumps(instance(json.loads(found.group(1)))) + "\n```"
        return "Hello from the fake model."

    def respond(self, handler: BaseHTTPRequestHandler, body: dict[str, Any], trouble: Trouble) -> None:
        time.sleep(trouble.delay_s)
        if trouble.refuse_schema and body.get("response_format", {}).get("type") == "json_schema":
            return handler.error(400, "response_format json_schema is not supported")  # type: ignore[attr-defined]
        if trouble.status != 200:
            return handler.error(trouble.status, f"scripted {trouble.status}", trouble.code,  # type: ignore[attr-defined]
                                 trouble.retry_after)
        text = trouble.content if trouble.content is not None else self.reply_text(body)
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        model = body["model"]

        def send(data: dict[str, Any] | str) -> None:
            raw = data if isinstance(data, str) else json.dumps(data)
            handler.wfile.write(f"data: {raw}\n\n".encode())
            handler.wfile.flush()

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": int(time.time()),
                    "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        try:
            send(chunk({"role": "assistant", "content": ""}))
            pieces = [text[i:i + 40] for i in range(0, len(text), 40)]
            for n, piece in enumerate(pieces):
                if trouble.malformed_stream and n == len(pieces) // 2:
                    send("{this is not json")
                    return
                send(chunk({"content": piece}))
                time.sleep(trouble.chunk_delay_s)
            send(chunk({}, "stop"))
            if body.get("stream_options", {}).get("include_usage") and not trouble.no_usage:
                prompt_tokens = sum(len(m["content"]) for m in body["messages"]) // 4
                send({"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": int(time.time()),
                      "model": model, "choices": [],
                      "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(text) // 4 + 1,
                                "total_tokens": prompt_tokens + len(text) // 4 + 1}})
            send("[DONE]")
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    server = FakeLLM().start()
    yield server
    server.stop()


@pytest.fixture
def llm_env(fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point this process's Settings (and workers started after it) at the fake endpoint."""
    env = {"TASKDECK_LLM_BASE_URL": fake_llm.base_url, "TASKDECK_LLM_MODEL": "gpt-4o-mini",
           "TASKDECK_LLM_API_KEY": "test-key", "TASKDECK_LLM_TIMEOUT_S": "5"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env
