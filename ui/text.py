"""Job text in markdown-rendering places (toasts, captions): always as literal code spans."""
from __future__ import annotations

import re
from datetime import datetime


def literal(text: object, limit: int = 200) -> str:
    """`text` as a markdown code span: shown as typed, never as a link, image, HTML or directive."""
    flat = " ".join(str(text).split())
    flat = flat if len(flat) <= limit else flat[: limit - 1] + "…"
    fence = "`" * (max((len(run) for run in re.findall(r"`+", flat)), default=0) + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def short(job_id: str) -> str:
    return job_id[:8]


def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 10:
        return f"{value:.1f} s"
    if value < 60:
        return f"{value:.0f} s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def ago(at: datetime | None, now: datetime) -> str:
    return "—" if at is None else f"{seconds(max(0.0, (now - at).total_seconds()))} ago"


def until(at: datetime | None, now: datetime) -> str:
    return "—" if at is None else f"in {seconds(max(0.0, (at - now).total_seconds()))}"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"
