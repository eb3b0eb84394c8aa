"""Real receivers for notification tests: an SMTP server (aiosmtpd) that parses what it receives, and a
webhook receiver on 127.0.0.1 that checks Standard Webhooks signatures (with the `standardwebhooks`
package, independent of the sender's code), answers a repeated webhook-id 200 but counts it, refuses a
stale timestamp (a replay) and can fail the first deliveries."""
from __future__ import annotations

import email
import email.policy
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.conftest import free_port


class Mailbox:
    """aiosmtpd's handler: each message parsed; `fail_next` messages answered 451 (try again later)."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.recipients: list[list[str]] = []
        self.fail_next = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802  (aiosmtpd's name)
        with self.lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                return "451 4.3.0 try again later"
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            self.messages.append(message)
            self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"


@dataclass
class SMTPServer:
    host: str
    port: int
    mailbox: Mailbox

    @property
    def settings(self) -> dict[str, str]:
        return {"TASKDECK_SMTP_HOST": self.host, "TASKDECK_SMTP_PORT": str(self.port), "TASKDECK_SMTP_TLS": "none",
                "TASKDECK_SMTP_SENDER": "taskdeck@test.local"}


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield SMTPServer("127.0.0.1", controller.port, mailbox)
    finally:
        controller.stop()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def id(self) -> str | None:
        """The Standard Webhooks message id; a Slack-style post has none."""
        return self.headers.get("webhook-id")


@dataclass
class Receiver:
    """What the webhook receiver saw. `secrets`: path -> the secret that path's deliveries must be signed
    with (a path without one takes unsigned posts); `fail_first`: path -> answers of 503 still to give."""

    url: str
    secrets: dict[str, str] = field(default_factory=dict)
    fail_first: dict[str, int] = field(default_factory=dict)
    accepted: list[Received] = field(default_factory=list)
    duplicates: list[Received] = field(default_factory=list)
    refused: list[tuple[Received, str]] = field(default_factory=list)
    failed: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.accepted if r.path == path]

    def answer(self, got: Received) -> int:
        with self.lock:
            if self.fail_first.get(got.path, 0) > 0:
                self.fail_first[got.path] -= 1
                self.failed.append(got)
                return 503
            secret = self.secrets.get(got.path)
            if secret is not None:
                try:
                    Webhook(secret).verify(got.body, got.headers)
                except WebhookVerificationError as e:
                    self.refused.append((got, str(e)))
                    return 400
            if got.id and any(seen.id == got.id and seen.path == got.path for seen in self.accepted):
                self.duplicates.append(got)
                return 200
            self.accepted.append(got)
            return 204


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    port = free_port()
    found = Receiver(url=f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802  (http.server's name)
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            got = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(found.answer(got))
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
