"""Text for the places where Streamlit renders markdown (alerts, toasts, captions, titles, widget labels and
help, metric values, tabs): user text is always shown literally, as a code span, never as a link, image, HTML or
directive.

`Markdown` is text that is safe to hand to those places. Build it with `md()` (a template written in the code,
its values shown literally) or, for text the code itself defines, `trusted()`. tests/test_dashboard_inject.py
fails on any markdown-rendering call in dashboard.py, app_pages/ or ui/ given anything else.
"""
from __future__ import annotations

import re
from datetime import datetime


class Markdown(str):
    """Text safe to render as markdown: built by `literal`, `md` or `trusted`. Anything made from it by string
    operations (`+`, f-strings) is a plain str again."""


ICON_PREFIX = ":material/"
UNBROKEN = ":material\u2060/"
JOB_ID = re.compile(r"[0-9a-f]{32}")


def literal(text: object, limit: int = 200) -> Markdown:
    """`text` as a markdown code span: shown as typed, never as a link, image, HTML or directive.

    Streamlit turns `:material/` into an icon marker before it parses markdown, code spans included; an
    invisible word joiner after `:material` keeps such text as typed."""
    flat = " ".join(str(text).split())
    flat = flat if len(flat) <= limit else flat[: limit - 1] + "…"
    flat = flat.replace(ICON_PREFIX, UNBROKEN)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", flat)), default=0) + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return Markdown(f"{fence}{pad}{flat}{pad}{fence}")


def md(template: str, *values: object, limit: int = 200) -> Markdown:
    """`template`, written in the code, with its `{}` fields filled by `values`: numbers and `Markdown` as they
    are (so `{:,}` works), everything else as `literal` (ids, emails, names, URLs, step names, error messages,
    exceptions)."""
    return Markdown(template.format(*(value if isinstance(value, (int, float, Markdown)) else literal(value, limit)
                                      for value in values)))


def trusted(text: str) -> Markdown:
    """Text the code or the operator's settings define (task type names and descriptions, schema titles, enum
    values, setting names, the local admin's email), rendered as markdown. Never for what a user, a task, a fetched
    page or an LLM endpoint wrote: that takes `md`."""
    return Markdown(text)


def joined(parts: list[Markdown], separator: str = ", ") -> Markdown:
    """`parts` joined by `separator` (written in the code)."""
    return Markdown(separator.join(parts))


def job_link(job_id: str, label: str = "open") -> Markdown:
    """A link to the Job page; only for an id runner made (32 hex digits), anything else gets no link."""
    return Markdown(f"[{label}](job?id={job_id})" if JOB_ID.fullmatch(job_id) else "")


def short(job_id: str) -> str:
    return job_id[:8]


def seconds(value: float | None) -> Markdown:
    return trusted(duration(value))


def duration(value: float | None) -> str:
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


def ago(at: datetime | None, now: datetime) -> Markdown:
    return trusted("—" if at is None else f"{seconds(max(0.0, (now - at).total_seconds()))} ago")


def until(at: datetime | None, now: datetime) -> Markdown:
    return trusted("—" if at is None else f"in {seconds(max(0.0, (at - now).total_seconds()))}")


def percent(value: float | None) -> Markdown:
    return trusted("—" if value is None else f"{value:.0%}")
