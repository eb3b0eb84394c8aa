"""A small web server on 127.0.0.1 for the context tasks: pages and feeds set per test, failures and
redirects on demand, and ETag answers with 304 like a real feed host."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Route:
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    etag: str | None = None
    location: str | None = None
    declare_length: bool = True  # False: no Content-Length, the body ends when the connection closes
    headers: dict[str, str] = field(default_factory=dict)  # more response headers (Retry-After...)


class FakeWeb:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: dict[str, int] = {}
        self.hosts: list[str] = []  # the Host header of each request
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        web = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                web.hits[self.path] = web.hits.get(self.path, 0) + 1
                web.hosts.append(self.headers.get("Host", ""))
                route = web.routes.get(self.path, Route(b"not found", "text/plain", 404))
                if route.etag and self.headers.get("If-None-Match") == route.etag:
                    self.send_response(304)
                    self.end_headers()
                    return
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                if route.declare_length:
                    self.send_header("Content-Length", str(len(route.body)))
                if route.etag:
                    self.send_header("ETag", route.etag)
                if route.location:
                    self.send_header("Location", route.location)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                with suppress(ConnectionError):  # a client that stops reading an oversized body
                    self.wfile.write(route.body)

        return Handler


@pytest.fixture
def web() -> Iterator[FakeWeb]:
    server = FakeWeb()
    yield server
    server.stop()
