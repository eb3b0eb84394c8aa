"""What a notification is and where it goes: the one shape shared by per-job notices and alerts."""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field


class Channel(StrEnum):
    inbox = "inbox"  # the recipient's in-app inbox (address: their email)
    email = "email"  # SMTP (address: an email)
    webhook = "webhook"  # a signed POST, Standard Webhooks (address: a URL)
    slack = "slack"  # a Slack-compatible incoming webhook (address: a URL)


class Target(BaseModel):
    channel: Channel
    address: str
    secret: str | None = Field(None, repr=False, description="webhook only: the `whsec_` secret its deliveries "
                               "are signed with, or where to find it when sent (`token:<id>`, `user:<email>`); "
                               "none: sent with webhook-id and webhook-timestamp but no signature.")


class Notification(BaseModel):
    id: str = Field(description="uuid hex; the webhook-id of its deliveries, so a receiver can drop repeats.")
    kind: Literal["job", "alert"]
    event: str = Field(description='"completed", "failed" (a job), "firing", "resolved" (an alert).')
    title: str = Field(description="One line: what happened.")
    body: str = Field("", description="Plain text; rendered literally everywhere.")
    link: str = Field("", description="Dashboard path that explains it, e.g. /job?id=<id>.")
    job_id: str | None = None
    since: datetime = Field(description="When what it reports began.")
    created_at: datetime
