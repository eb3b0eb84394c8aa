"""Payload validation at the edge: size, JSON syntax, depth and non-finite numbers before the
type's own pydantic model, so every refusal names the field and the limit and nothing is written."""
from __future__ import annotations

import json
import math
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from ..errors import InvalidPayload
from ..registry import TaskType


def validate(task_type: TaskType, payload: Any, max_bytes: int, max_depth: int) -> dict[str, Any]:
    """The type's model, validated and dumped to JSON-ready data."""
    name = task_type.name
    if isinstance(payload, BaseModel):
        payload = payload.model_dump(mode="json")
    if isinstance(payload, (str, bytes)):
        raw = payload.encode() if isinstance(payload, str) else payload
        check_size(name, len(raw), max_bytes)
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise InvalidPayload(f"payload for {name} is not valid JSON: {e}") from None
    else:
        parsed = {} if payload is None else payload
        check_shape(name, parsed, max_depth)
        raw = serialise(name, parsed)
        check_size(name, len(raw), max_bytes)
    if not isinstance(parsed, dict):
        raise InvalidPayload(f"payload for {name} must be a JSON object, not {type(parsed).__name__}")
    check_shape(name, parsed, max_depth)
    try:
        return task_type.payload.model_validate_json(raw).model_dump(mode="json")
    except ValidationError as e:
        errors = [dict(error) for error in e.errors(include_url=False)]
        raise InvalidPayload(f"invalid payload for {name}: {describe(e)}", errors=errors) from None


def serialise(name: str, value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        pass
    try:
        return json.dumps(value, allow_nan=False).encode()  # integers past 64 bits, which orjson refuses
    except (TypeError, ValueError) as e:
        raise InvalidPayload(f"payload for {name} is not JSON-serialisable: {e}") from None


def check_size(name: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise InvalidPayload(f"payload for {name} is {size:,} bytes; the limit is {max_bytes:,} "
                             "(TASKDECK_MAX_PAYLOAD_BYTES)")


def check_shape(name: str, value: Any, max_depth: int) -> None:
    """Nesting within `max_depth`, and no NaN or infinity (which JSON cannot carry)."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        item, depth, path = stack.pop()
        if depth > max_depth:
            where = path if len(path) <= 60 else path[:60] + "…"
            raise InvalidPayload(f"payload for {name} nests deeper than {max_depth} levels at {where or 'the top'} "
                                 "(TASKDECK_MAX_PAYLOAD_DEPTH)")
        if isinstance(item, dict):
            stack += [(v, depth + 1, f"{path}.{k}" if path else str(k)) for k, v in item.items()]
        elif isinstance(item, list):
            stack += [(v, depth + 1, f"{path}[{i}]") for i, v in enumerate(item)]
        elif isinstance(item, float) and not math.isfinite(item):
            raise InvalidPayload(f"invalid payload for {name}: {path}: NaN and infinity are not allowed")


def describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "payload"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)
