"""Sending one delivery: email over SMTP (aiosmtplib), a Slack-compatible incoming webhook, a signed
webhook (Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature `v1,<base64 HMAC-SHA256 of
id.timestamp.body>` with a `whsec_` secret, made by the `standardwebhooks` package).

Every URL goes through the outbound policy (web.outbound.post): no private addresses unless
TASKDECK_FETCH_ALLOW names them. A failure is a Failed, never anything else: the caller retries or gives
up, and nothing reaches a job.
"""
from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage

import aiosmtplib
from standardwebhooks import Webhook

from ..settings import Settings
from ..storage.store import Store
from ..web.outbound import Refused, Unreachable, post
from . import profile as profiles
from .model import Channel
from .outbox import Delivery

SEND_TIMEOUT_S = 15.0
USER_AGENT = "Taskdeck-Webhooks/1"


class Failed(Exception):
    """A delivery attempt failed: `detail` says how (for the job's owner, in its delivery log), `public` the
    same without any address or host (for the Workers page, which every role sees); `final` when another
    attempt cannot help (the policy refuses the URL, the secret is gone, no SMTP server)."""

    def __init__(self, detail: str, final: bool = False, public: str | None = None) -> None:
        super().__init__(detail)
        self.detail, self.final, self.public = detail, final, public or detail


async def send(store: Store, delivery: Delivery) -> str:
    """Send `delivery` once; what the receiver answered ("HTTP 204", "250 OK"), or Failed."""
    if delivery.channel is Channel.email:
        return await send_email(store.settings, delivery)
    if delivery.channel is Channel.slack:
        return await send_http(store, delivery, {"content-type": "application/json"})
    if delivery.channel is Channel.webhook:
        return await send_http(store, delivery, await signed(store, delivery))
    raise Failed(f"no way to send to channel {delivery.channel}", final=True)


async def send_http(store: Store, delivery: Delivery, headers: dict[str, str]) -> str:
    try:
        status = await post(delivery.address, delivery.body.encode(), {"user-agent": USER_AGENT, **headers},
                            store.settings.fetch_allow, timeout_s=SEND_TIMEOUT_S)
    except Refused as e:
        raise Failed(str(e), final=True, public="refused by the outbound policy") from None
    except Unreachable:
        raise Failed("no answer (the connection failed or timed out)") from None
    if not 200 <= status < 300:
        raise Failed(f"HTTP {status}")
    return f"HTTP {status}"


async def signed(store: Store, delivery: Delivery) -> dict[str, str]:
    """The Standard Webhooks headers of this attempt: a fresh timestamp (receivers refuse old ones), the
    same webhook-id on every attempt (receivers drop repeats by it)."""
    now = datetime.now(UTC)
    headers = {"content-type": "application/json", "webhook-id": delivery.message_id,
               "webhook-timestamp": str(int(now.timestamp()))}
    secret = await secret_of(store, delivery.secret)
    if secret:
        headers["webhook-signature"] = Webhook(secret).sign(delivery.message_id, now, delivery.body)
    return headers


async def secret_of(store: Store, ref: str | None) -> str | None:
    """The secret a delivery names: itself (`whsec_...`), an API token's (`token:<id>`), a user's profile's
    (`user:<email>`); Failed (final) when its token has been revoked since."""
    if not ref or ref.startswith(profiles.SECRET_PREFIX):
        return ref
    kind, _, name = ref.partition(":")
    if kind == "token":
        found: str | None = await store.redis.hget(store.keys.token_secrets, name)  # type: ignore[misc]  # redis-py types replies `Awaitable[T] | T` for both clients
        if found is None:
            raise Failed("the API token that submitted the job was revoked: its callbacks are not sent", final=True)
        return found
    if kind == "user":
        return (await profiles.load(store, name)).webhook_secret
    raise Failed(f"unknown kind of secret {kind!r}", final=True)


async def send_email(settings: Settings, delivery: Delivery) -> str:
    if not settings.smtp_host:
        raise Failed("no SMTP server is set (TASKDECK_SMTP_HOST)", final=True)
    message = EmailMessage()
    message["From"] = settings.smtp_sender
    message["To"] = delivery.address
    message["Subject"] = delivery.subject
    message["Auto-Submitted"] = "auto-generated"
    message["X-Taskdeck-Message-Id"] = delivery.message_id
    message.set_content(delivery.body)
    try:
        _, answer = await aiosmtplib.send(
            message, hostname=settings.smtp_host, port=settings.smtp_port, username=settings.smtp_user,
            password=settings.smtp_password, use_tls=settings.smtp_tls == "tls",
            start_tls=settings.smtp_tls == "starttls", timeout=SEND_TIMEOUT_S)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as e:
        raise Failed(f"SMTP: {first_line(e) or type(e).__name__}", public=f"SMTP: {type(e).__name__}") from None
    return f"SMTP {answer}"[:200]


def first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
