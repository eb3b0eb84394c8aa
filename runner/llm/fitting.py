"""Fitting a chat request to a small local model (the embedded endpoint's front, `runner.llm.serve`): a prompt
longer than the model's context is cut in the middle of its longest message, and a JSON-schema reply is
bounded (items per list, characters per text field) so that the model cannot ramble on until the context
ends. Pure functions, apart from the token counter the caller passes in."""
from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

Message = dict[str, Any]
Count = Callable[[list[Message]], Awaitable[int]]
GAP = "\n[…]\n"
MAX_CUTS = 8
LEFT_AS_THEY_ARE = ("enum", "const", "pattern", "format", "maxLength")  # strings with any of these


class TooLong(ValueError):
    """The prompt cannot be cut to fit (its fixed parts alone are too long)."""


@dataclass(frozen=True)
class Fitted:
    messages: list[Message]
    tokens_before: int
    tokens: int

    @property
    def cut(self) -> bool:
        return self.tokens < self.tokens_before


def text_of(message: Message) -> str:
    content = message.get("content")
    return content if isinstance(content, str) else ""


def cut_longest(messages: Sequence[Message], drop_chars: int) -> list[Message]:
    """`messages` with `drop_chars` characters taken out of the middle of the longest text content (its start
    and end usually hold the brief and the instruction; the middle, context read from sources)."""
    out = [dict(m) for m in messages]
    index = max(range(len(out)), key=lambda i: len(text_of(out[i])))
    text = text_of(out[index])
    keep = max(0, len(text) - drop_chars - len(GAP))
    head = keep // 2
    out[index]["content"] = text[:head] + GAP + text[len(text) - (keep - head):] if keep else GAP.strip()
    return out


async def fit(messages: list[Message], budget: int, count: Count) -> Fitted:
    """`messages` cut until `count` says they take at most `budget` tokens; TooLong if cutting cannot."""
    before = tokens = await count(messages)
    for _ in range(MAX_CUTS):
        if tokens <= budget:
            return Fitted(messages, before, tokens)
        chars = sum(len(text_of(m)) for m in messages)
        longest = max(len(text_of(m)) for m in messages)
        if longest <= len(GAP):
            break
        per_token = chars / max(tokens, 1)
        messages = cut_longest(messages, int((tokens - budget) * per_token * 1.02) + 16)
        tokens = await count(messages)
    if tokens <= budget:
        return Fitted(messages, before, tokens)
    raise TooLong(f"the prompt is {before:,} tokens and cannot be cut to the {budget:,} this model has room for")


def note(fitted: Fitted, context: int) -> str:
    """The line a reply starts with when its prompt was cut: the job's streamed output shows it. No braces,
    so that the JSON after it is still found (structured.parse)."""
    return (f"[note: the prompt ({fitted.tokens_before:,} tokens) was cut to {fitted.tokens:,} to fit the demo "
            f"model's context of {context:,} tokens with room for the reply: the middle of its longest part was "
            "left out]\n")


def bounded(schema: dict[str, Any], max_items: int, max_chars: int) -> dict[str, Any]:
    """A copy of `schema` whose lists hold at most `max_items` and whose free text fields at most `max_chars`
    characters (never below their own minimum): every reply it admits, `schema` admits too."""
    out = copy.deepcopy(schema)
    bound(out, max_items, max_chars)
    return out


def bound(node: Any, max_items: int, max_chars: int) -> None:
    if isinstance(node, list):
        for item in node:
            bound(item, max_items, max_chars)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == "array":
        node["maxItems"] = max(min(node.get("maxItems", max_items), max_items), node.get("minItems", 0))
    elif kind == "string" and not any(key in node for key in LEFT_AS_THEY_ARE):
        node["maxLength"] = max(max_chars, node.get("minLength", 0))
    for key in ("properties", "$defs", "definitions"):
        for sub in (node.get(key) or {}).values():
            bound(sub, max_items, max_chars)
    for key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf", "prefixItems"):
        bound(node.get(key), max_items, max_chars)
