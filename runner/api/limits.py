"""The request body limit, counted as the body arrives (a Content-Length header may lie or be absent)."""
from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .problems import problem


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self.refuse(scope, receive, send)
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return await self.refuse(scope, receive, send)
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        await self.app(scope, replay(messages, receive), send)

    async def refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(413, f"the request body is over {self.max_bytes:,} bytes, the limit "
                           "(TASKDECK_API_MAX_BODY_BYTES)")
        await response(scope, receive, send)


def replay(messages: list[Message], receive: Receive) -> Receive:
    async def next_message() -> Message:
        return messages.pop(0) if messages else await receive()
    return next_message
