"""Payload forms built from a task type's JSON schema (pydantic's), so a new task type needs no page
change: numbers with their limits, text, booleans, enums as selects, lists, lists of small models as
an editable table, nested models as a bordered group; anything else is edited as JSON.

Widgets keep their values in session state under `{prefix}.{path}`; `Form.render` returns the payload
(fields left empty are omitted so the model's defaults apply) and shows errors next to their field.
"""
from __future__ import annotations

import json
import math
from datetime import date
from typing import Any

import pandas as pd
import streamlit as st

from .alerts import message
from .text import Markdown, md, trusted

OMIT = object()
TEXT_AREA_CHARS = 300
SCALARS = {"string", "integer", "number", "boolean"}
Errors = dict[str, list[str]]


def errors_by_field(errors: list[dict[str, Any]]) -> Errors:
    """pydantic's error list (InvalidPayload.errors) keyed by dotted field path ("" for the payload)."""
    found: Errors = {}
    for item in errors:
        found.setdefault(".".join(str(part) for part in item.get("loc", ())), []).append(str(item.get("msg", "")))
    return found


def label_of(name: str, schema: dict[str, Any]) -> Markdown:
    """The field's label, from the task type's payload model (code, so markdown is allowed)."""
    title = schema.get("title")
    if title and title != name.replace("_", " ").title():
        return trusted(str(title))
    words = name.replace("_", " ").strip()
    for suffix, unit in ((" s", "s"), (" ms", "ms"), (" usd", "USD")):
        if words.endswith(suffix):
            words = f"{words[: -len(suffix)]} ({unit})"
    return trusted(words[:1].upper() + words[1:])


class Form:
    def __init__(self, schema: dict[str, Any], prefix: str, errors: Errors | None = None,
                 initial: dict[str, Any] | None = None) -> None:
        self.root = schema
        self.defs = schema.get("$defs", {})
        self.prefix = prefix
        self.errors = errors or {}
        self.initial = initial or {}
        self.shown: set[str] = set()
        self.invalid: Errors = {}

    def render(self) -> dict[str, Any]:
        values = self.object(self.resolve(self.root), ())
        self.show_rest()
        return values

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            target = self.defs.get(schema["$ref"].split("/")[-1], {})
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        if len(schema.get("allOf", [])) == 1:
            schema = {**self.resolve(schema["allOf"][0]), **{k: v for k, v in schema.items() if k != "allOf"}}
        return schema

    def nullable(self, schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        options = schema.get("anyOf") or schema.get("oneOf")
        if options and any(o.get("type") == "null" for o in options):
            rest = [o for o in options if o.get("type") != "null"]
            if len(rest) == 1:
                merged = {**{k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}, **self.resolve(rest[0])}
                return merged, True
        return schema, False

    def object(self, schema: dict[str, Any], path: tuple[str | int, ...]) -> dict[str, Any]:
        required = set(schema.get("required", []))
        values = {}
        for name, prop in schema.get("properties", {}).items():
            value = self.field(name, prop, (*path, name), name in required)
            if value is not OMIT:
                values[name] = value
        return values

    def field(self, name: str, prop: dict[str, Any], path: tuple[str | int, ...], required: bool) -> Any:
        schema, nullable = self.nullable(self.resolve(prop))
        kind = widget_kind(schema, self)
        label = trusted(label_of(name, schema) + (" *" if required else ""))
        help_text = trusted(schema["description"]) if schema.get("description") else None
        start = self.start_value(path, schema)
        value: Any
        if kind == "object":
            with st.container(border=True):
                st.markdown(md("**{}**", label))
                if help_text:
                    st.caption(help_text)
                value = self.object(schema, path)
        else:
            value = getattr(self, kind)(schema, self.key(path), label, help_text, start, nullable)
        self.show_errors(path, deep=kind in ("lines", "table", "json", "choices"))
        if value is None:
            return None if nullable else OMIT
        if value == "" and not required and schema.get("default", "") != "":
            return None if nullable else OMIT
        return value

    def key(self, path: tuple[str | int, ...]) -> str:
        return ".".join([self.prefix, *map(str, path)])

    def start_value(self, path: tuple[str | int, ...], schema: dict[str, Any]) -> Any:
        value: Any = self.initial
        for part in path:
            if not isinstance(value, dict) or part not in value:
                return schema.get("default")
            value = value[part]
        return value

    def seed(self, key: str, value: Any) -> None:
        if key not in st.session_state:
            st.session_state[key] = value

    def choice(self, schema: dict[str, Any], key: str, label: Markdown, help_text: Markdown | None, start: Any,
               nullable: bool) -> Any:
        options = list(schema["enum"]) if "enum" in schema else [schema["const"]]
        if nullable:
            options = [None, *options]
        self.seed(key, start if start in options else options[0])
        return st.selectbox(label, options, key=key, help=help_text,
                            format_func=lambda v: "—" if v is None else str(v))

    def boolean(self, schema: dict[str, Any], key: str, label: Markdown, help_text: Markdown | None, start: Any,
                nullable: bool) -> bool:
        self.seed(key, bool(start))
        return st.checkbox(label, key=key, help=help_text)

    def integer(self, schema: dict[str, Any], key: str, label: Markdown, help_text: Markdown | None, start: Any,
                nullable: bool) -> int | None:
        low, high = bounds(schema, 1)
        self.seed(key, int(start) if isinstance(start, (int, float)) else None)
        value = st.number_input(label, min_value=as_int(low), max_value=as_int(high), step=1, key=key, help=help_text,
                                placeholder="empty")
        return None if value is None else int(value)

    def number(self, schema: dict[str, Any], key: str, label: Markdown, help_text: Markdown | None, start: Any,
               nullable: bool) -> float | None:
        low, high = bounds(schema, 0)
        step = 0.1 if high is not None and high - (low or 0) <= 10 else 0.5
        self.seed(key, float(start) if isinstance(start, (int, float)) else None)
        return st.number_input(label, min_value=as_float(low), max_value=as_float(high), step=step, format="%g",
                               key=key, help=help_text, placeholder="empty")

    def text(self, schema: dict[str, Any], key: str, label: Markdown, help_text: Markdown | None, start: Any,
             nullable: bool) -> str:
        limit = schema.get("maxLength")
        self.seed(key, "" if start is None else str(start))
        if limit and limit > TEXT_AREA_CHARS:
            return st.text_area(label, key=key, max_chars=limit, help=help_text)
        return st.text_input(label, key=key, max_chars=limit, help=help_text)

    def day(self, schema: dict[str, Any], key: str, label: Markdown, help_text: Markdown | None, start: Any,
            nullable: bool) -> str | None:
        self.seed(key, date.fromisoformat(start) if isinstance(start, str) else None)
        value = st.date_input(label, key=key, help=help_text)
        return value.isoformat() if isinstance(value, date) else None

    def choices(self, schema: dict[str, Any], key: str, label: Markdown, help_text: Markdown | None, start: Any,
                nullable: bool) -> list[Any]:
        options = list(self.resolve(schema["items"])["enum"])
        self.seed(key, [v for v in (start or []) if v in options])
        return st.multiselect(label, options, key=key, help=help_text)

    def lines(self, schema: dict[str, Any], key: str, label: Markdown, help_text: Markdown | None, start: Any,
              nullable: bool) -> list[Any]:
        item_type = self.resolve(schema["items"]).get("type", "string")
        self.seed(key, "\n".join(str(v) for v in (start or [])))
        raw = st.text_area(md("{} — one per line", label), key=key, help=help_text, height=100)
        return [convert(line.strip(), item_type) for line in raw.splitlines() if line.strip()]

    def table(self, schema: dict[str, Any], key: str, label: Markdown, help_text: Markdown | None, start: Any,
              nullable: bool) -> list[dict[str, Any]]:
        item = self.resolve(schema["items"])
        columns = list(item.get("properties", {}))
        rows_key = f"{key}:rows"
        self.seed(rows_key, pd.DataFrame(list(start or []), columns=columns))
        st.markdown(md("**{}**", label))
        if help_text:
            st.caption(help_text)
        edited = st.data_editor(st.session_state[rows_key], key=key, num_rows="dynamic", hide_index=True,
                                width="stretch")
        rows = []
        for record in edited.to_dict("records"):
            row = {k: v for k, v in record.items() if not is_blank(v)}
            if row:
                rows.append(row)
        return rows

    def json(self, schema: dict[str, Any], key: str, label: Markdown, help_text: Markdown | None, start: Any,
             nullable: bool) -> Any:
        self.seed(key, "" if start is None else json.dumps(start, indent=2))
        raw = st.text_area(md("{} (JSON)", label), key=key, help=help_text, height=120)
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError as e:
            path = key.removeprefix(self.prefix + ".")
            self.invalid.setdefault(path, []).append(f"not valid JSON: {e}")
            return raw

    def show_errors(self, path: tuple[str | int, ...], deep: bool) -> None:
        here = ".".join(map(str, path))
        for where, messages in {**self.errors, **self.invalid}.items():
            if where == here or (deep and where.startswith(here + ".")):
                self.shown.add(where)
                inner = where[len(here) + 1:]
                for text in messages:
                    st.error(message(f"{inner}: {text}" if inner else text), icon=":material/error:")

    def show_rest(self) -> None:
        for where, messages in self.errors.items():
            if where not in self.shown:
                for text in messages:
                    st.error(message(f"{where or 'payload'}: {text}"), icon=":material/error:")


def widget_kind(schema: dict[str, Any], form: Form) -> str:
    kind = schema.get("type")
    if "enum" in schema or "const" in schema:
        return "choice"
    if kind == "boolean":
        return "boolean"
    if kind == "integer":
        return "integer"
    if kind == "number":
        return "number"
    if kind == "string":
        return "day" if schema.get("format") == "date" else "text"
    if kind == "array" and isinstance(schema.get("items"), dict):
        return array_kind(form.resolve(schema["items"]), form)
    if kind == "object" and schema.get("properties"):
        return "object"
    return "json"


def array_kind(item: dict[str, Any], form: Form) -> str:
    """A list of `item`s: picked from a set, typed one per line, edited as a table of scalar fields, else JSON."""
    if "enum" in item:
        return "choices"
    if item.get("type") in SCALARS:
        return "lines"
    properties = item.get("properties", {})
    if item.get("type") == "object" and properties and all(
            form.resolve(p).get("type") in SCALARS for p in properties.values()):
        return "table"
    return "json"


def bounds(schema: dict[str, Any], step: float) -> tuple[float | None, float | None]:
    low = schema.get("minimum", schema["exclusiveMinimum"] + step if "exclusiveMinimum" in schema else None)
    high = schema.get("maximum", schema["exclusiveMaximum"] - step if "exclusiveMaximum" in schema else None)
    return low, high


def as_int(value: float | None) -> int | None:
    return None if value is None else int(value)


def as_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def convert(text: str, item_type: str) -> Any:
    """A list item typed as the schema says; left as text when it does not parse (the model then says why)."""
    try:
        if item_type == "integer":
            return int(text)
        if item_type == "number":
            return float(text)
        if item_type == "boolean":
            return {"true": True, "false": False}.get(text.lower(), text)
    except ValueError:
        return text
    return text


def is_blank(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))
