"""Holding replies to a pydantic result model: the JSON schema sent as response_format where the endpoint
takes it, the same schema in the prompt where it does not, and parsing JSON out of whatever came back."""
from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from .errors import OutputInvalid

M = TypeVar("M", bound=BaseModel)
KEEP = frozenset({"type", "properties", "required", "items", "enum", "const", "description", "anyOf",
                  "minimum", "maximum", "minItems", "maxItems"})
FENCED = re.compile(r"```(?:json)?\s*\n(.*?)```", re.DOTALL)


def response_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON schema as strict structured output accepts it: references inlined, every object
    closed with all its properties required, and only keywords that OpenAI, Gemini and Ollama all take.
    Pydantic still checks the full model (lengths, patterns) on the reply."""
    schema = model.model_json_schema()
    return strict(schema, schema.get("$defs", {}))


def strict(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        inlined = strict(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        return inlined | ({"description": node["description"]} if "description" in node else {})
    if len(node.get("allOf", [])) == 1:
        return strict(node["allOf"][0] | {k: v for k, v in node.items() if k != "allOf"}, defs)
    out = {k: v for k, v in node.items() if k in KEEP}
    if "properties" in node:
        out["properties"] = {name: strict(sub, defs) for name, sub in node["properties"].items()}
        out["required"] = list(node["properties"])
        out["additionalProperties"] = False
    if isinstance(node.get("items"), dict):
        out["items"] = strict(node["items"], defs)
    if "anyOf" in node:
        out["anyOf"] = [strict(sub, defs) for sub in node["anyOf"]]
    return out


def response_format(mode: str, model: type[BaseModel]) -> dict[str, Any] | None:
    if mode == "json_schema":
        return {"type": "json_schema",
                "json_schema": {"name": model.__name__[:64], "schema": response_schema(model), "strict": True}}
    if mode == "json_object":
        return {"type": "json_object"}
    return None


def instruction(mode: str, model: type[BaseModel]) -> str:
    """What the system prompt adds: the schema itself unless the endpoint enforces it."""
    if mode == "json_schema":
        return "Reply with one JSON object that follows the response schema, and nothing else."
    schema = orjson.dumps(response_schema(model)).decode()
    return ("Reply with one JSON object and nothing else (no prose, no code fences) that follows this "
            f"JSON schema:\n<schema>\n{schema}\n</schema>")


def candidates(text: str) -> Iterator[str]:
    stripped = text.strip()
    yield stripped
    yield from (block.strip() for block in FENCED.findall(text))
    start, end = stripped.find("{"), stripped.rfind("}")
    if 0 <= start < end:
        yield stripped[start:end + 1]


def parse(text: str, model: type[M]) -> M:
    """The first JSON object in `text` that validates as `model`; else OutputInvalid saying what was wrong."""
    error: ValidationError | None = None
    for candidate in candidates(text):
        try:
            return model.model_validate_json(candidate)
        except ValidationError as e:
            if error is None or not invalid_json(e):
                error = e
    if error is None or invalid_json(error):
        raise OutputInvalid("the reply held no JSON object" if not text.strip() else "the reply was not valid JSON")
    raise OutputInvalid(describe(error))


def invalid_json(error: ValidationError) -> bool:
    return any(e["type"] == "json_invalid" for e in error.errors())


def describe(error: ValidationError, limit: int = 6) -> str:
    problems = [f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in error.errors()[:limit]]
    more = error.error_count() - limit
    return "; ".join(problems) + (f"; and {more} more" if more > 0 else "")
