"""The OpenAPI document as client generators read it (issue 23).

FastAPI writes most of it from the routes; `complete` adds what the routes cannot say:

- `JobCreate` as a union discriminated on `type`: one schema per task type registered when the app was
  built, with that type's own payload model, so a generated client types each payload (a team's own
  task module shows up with no extra work). The route itself still takes any payload (`JobCreate`
  below) and runner's payloads.validate judges it: its size and depth limits and its field paths
  (relative to the payload) stay the one rule, for the HTTP API as for the CLI and the Python client.
- `Problem` (with `FieldError`), the body of every error a route declares (problems.documented).
- The event stream's frames (`JobStreamFrame`) with their data (`Job`, `JobEvent`), linked from the
  stream's media type as `x-itemSchema` (OpenAPI 3.2's `itemSchema`, which 3.1 lacks).
- No FastAPI default 422 (`HTTPValidationError`) on routes that cannot answer one.
- Every field of what the API only sends marked required, as it is in every answer: clients need not
  treat `progress` or `result` as maybe absent (a field with a default is optional where it is sent in).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from fastapi.encoders import jsonable_encoder
from fastapi.openapi import models as openapi_models
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model
from pydantic.json_schema import JsonSchemaMode

from ..models import Job, Priority
from ..notify.subscriptions import Notify
from ..reads.events import Event
from ..registry import TaskType
from .problems import Problem

Schema = dict[str, Any]
PREFIX = "#/components/schemas/"
# What transitions.py writes as an event's name (the test of the contract checks the list against it).
EVENT_NAMES = ("submitted", "started", "progress", "cancel_requested", "handed_back", "lost", "retrying",
               "retried", "completed", "failed", "cancelled")
FINAL_EVENTS = ("completed", "failed", "cancelled")
SPARSE = frozenset({"Problem", "FieldError"})  # problems.problem() leaves their null fields out


class JobCreate(BaseModel):
    """What POST /api/jobs accepts at run time: any payload, judged by payloads.validate. The spec shows
    the same fields per task type instead (`variant`)."""

    type: str = Field(description="A registered task type (GET /api/types).")
    payload: dict[str, Any] = Field(default_factory=dict, description="The type's payload, as its schema says.")
    priority: Priority | None = Field(None, description="Default: the type's.")
    idempotency_key: str | None = Field(None, max_length=200, description="The same key returns the first job.")
    notify: Notify | None = Field(None, description="Which ends of the job to tell its owner of, and how; "
                                  "default: as their profile says (GET /api/profile).")
    callback_url: str | None = Field(None, max_length=2000, description="POSTed the job's final record when it "
                                     "ends (as GET /api/jobs/{job_id} answers), signed per Standard Webhooks with "
                                     "this token's webhook secret; refused (422) when the outbound policy refuses "
                                     "the URL.")
    max_tokens: int | None = Field(None, ge=1, description="Cap on the job's LLM tokens (in and out, over all "
                                   "attempts); past it the job fails with \"budget exceeded\". Default: the type's.")
    max_cost_usd: float | None = Field(None, gt=0, allow_inf_nan=False, description="Cap on the job's LLM cost in "
                                       "USD, likewise. Default: the type's.")


class JobRetry(BaseModel):
    """What POST /api/jobs/{job_id}/retry may take: without `from_step` and `payload` the job itself runs again
    (failed or cancelled only; it resumes after its last checkpoint); with either, a finished job is rerun as
    a new job, linked to it (`rerun_of`)."""

    model_config = ConfigDict(extra="forbid")

    from_step: str | None = Field(None, max_length=200, description="Rerun from this step (or checkpoint): the "
                                  "new job reuses the checkpoints made before it (`reused_steps`).")
    payload: dict[str, Any] | None = Field(None, description="The new job's payload, validated as a submit's; "
                                           "default: the old job's.")
    max_tokens: int | None = Field(None, ge=1, description="The job's new token cap (default: as it was).")
    max_cost_usd: float | None = Field(None, gt=0, allow_inf_nan=False, description="The job's new cost cap, USD.")


class JobEvent(Event):
    """One of a job's events, as the event stream stores it: the `data` of a frame named after it."""


class SnapshotFrame(BaseModel):
    """`event: snapshot`: the job's whole record. First on every stream; again only where events were
    lost to the stream's cap."""

    event: Literal["snapshot"]
    id: str = Field(description="The stream position the record is as of: send it as Last-Event-ID to resume.")
    data: Job


class EventFrame(BaseModel):
    """`event: <name>`: one of the job's events, named after it. The stream ends after the event that
    makes the job final (completed, failed or cancelled)."""

    event: str = Field(description=f"The event's name: {', '.join(EVENT_NAMES)}.", examples=list(EVENT_NAMES))
    id: str = Field(description="The event's stream position: send it as Last-Event-ID to resume after it.")
    data: JobEvent


class ResumeFrame(BaseModel):
    """The last frame of a stream that reached its time limit (TASKDECK_API_STREAM_MAX_S): no event and no
    data; reconnect after `retry` ms with `id` as Last-Event-ID to read on (an EventSource does)."""

    id: str = Field(description="The position to resume after.")
    retry: int = Field(description="Milliseconds to wait before reconnecting.")


def complete(spec: Schema, task_types: Sequence[TaskType]) -> Schema:
    """FastAPI's document with the additions above (changed in place, and returned)."""
    schemas: Schema = spec.setdefault("components", {}).setdefault("schemas", {})
    models: dict[str, tuple[JsonSchemaMode, type[BaseModel]]] = {
        "Problem": ("serialization", Problem),
        "JobEvent": ("serialization", JobEvent),
        **{f"frame:{m.__name__}": ("serialization", m) for m in (SnapshotFrame, EventFrame, ResumeFrame)},
        **{f"type:{t.name}": ("validation", variant(t)) for t in task_types},
    }
    names, definitions = generate(models)
    tops = {"JobStreamFrame": frames(names)}
    if task_types:
        schemas.pop("JobCreate", None)
        tops["JobCreate"] = union({t.name: names[f"type:{t.name}"] for t in task_types})
    merge(schemas, definitions, tops)
    drop_default_422(spec)
    require_sent_fields(spec)
    spec["components"]["schemas"] = dict(sorted(schemas.items()))
    return spec


def variant(task_type: TaskType) -> type[BaseModel]:
    """JobCreate for one task type: `type` is its name, `payload` its model (required when the model
    has a required field: `{}` would not do)."""
    fields = JobCreate.model_fields
    required = any(f.is_required() for f in task_type.payload.model_fields.values())
    about = f"The {task_type.name} payload." + ("" if required else " Optional: every field has a default.")
    payload = Field(description=about) if required else Field(default_factory=dict, description=about)
    definitions: dict[str, Any] = {
        "type": (str, Field(description="The task type.", json_schema_extra={"const": task_type.name})),
        "payload": (task_type.payload, payload),
        "priority": (fields["priority"].annotation, fields["priority"]),
        "idempotency_key": (fields["idempotency_key"].annotation, fields["idempotency_key"]),
        "notify": (fields["notify"].annotation, fields["notify"]),
        "callback_url": (fields["callback_url"].annotation, fields["callback_url"]),
        "max_tokens": (fields["max_tokens"].annotation, fields["max_tokens"]),
        "max_cost_usd": (fields["max_cost_usd"].annotation, fields["max_cost_usd"]),
    }
    return create_model(f"{camel(task_type.name)}JobCreate", __doc__=task_type.description or None,
                        **definitions)


def camel(name: str) -> str:
    """A task type's name as a class name: GENERATE_MEDIA_PLAN -> GenerateMediaPlan."""
    words = [w for w in re.split(r"[^0-9A-Za-z]+", name) if w]
    joined = "".join(w[:1].upper() + w[1:].lower() for w in words) or "Task"
    return joined if joined[0].isalpha() else f"Task{joined}"


def generate(models: dict[str, tuple[JsonSchemaMode, type[BaseModel]]]) -> tuple[dict[str, str], Schema]:
    """pydantic's schemas of `models` and of all they use, referring into the components: each key's
    component name (unique among them: pydantic qualifies a name two models share) and the schemas."""
    inputs = [(key, mode, TypeAdapter(model)) for key, (mode, model) in models.items()]
    tops, defs = TypeAdapter.json_schemas(inputs, ref_template=PREFIX + "{model}")
    names = {key: str(tops[(key, mode)]["$ref"]).removeprefix(PREFIX) for key, (mode, _) in models.items()}
    return names, {name: normal(name, schema) for name, schema in defs.get("$defs", {}).items()}


def normal(name: str, schema: Schema) -> Schema:
    """`schema` as FastAPI writes its own (through its OpenAPI model, leaving out nulls such as
    `default: null`), so that a model FastAPI has too compares equal and is shared. Its title is its
    component name, which generators name their class after (a form title such as "Demo job" moves to
    the description)."""
    encoded: Schema = jsonable_encoder(openapi_models.Schema.model_validate(schema), by_alias=True,
                                       exclude_none=True)
    if encoded.get("title", name) != name:
        encoded.setdefault("description", encoded["title"])
        encoded["title"] = name
    return encoded


def union(variants: dict[str, str]) -> Schema:
    refs = {name: PREFIX + component for name, component in variants.items()}
    return {"title": "JobCreate", "description": "A job to submit: the fields for its `type`.",
            "oneOf": [{"$ref": ref} for ref in refs.values()],
            "discriminator": {"propertyName": "type", "mapping": refs}}


def frames(names: dict[str, str]) -> Schema:
    return {"title": "JobStreamFrame",
            "description": "One Server-Sent Events frame of GET /api/jobs/{job_id}/events, its fields as an "
                           "object (`data` parsed from JSON). Keep-alive comments are left out.",
            "anyOf": [{"$ref": PREFIX + names[f"frame:{m.__name__}"]}
                      for m in (SnapshotFrame, EventFrame, ResumeFrame)]}


def merge(schemas: Schema, definitions: Schema, tops: Schema) -> None:
    """Add `definitions` and `tops` to the components. A definition FastAPI already has under its name
    is shared when it is the same schema, and renamed (`Name2`) when it is not; `tops` keep theirs."""
    renames: dict[str, str] = {}
    taken = set(schemas) | set(tops)
    changed = True
    while changed:  # a rename can make a definition that refers to it differ from FastAPI's: look again
        changed = False
        for name, schema in definitions.items():
            if name in renames or name not in taken or schemas.get(name) == rewrite(schema, renames):
                continue
            renames[name] = fresh(name, taken | set(definitions) | set(renames.values()))
            changed = True
    for name, schema in definitions.items():
        schemas[renames.get(name, name)] = rewrite(schema, renames)
    for name, schema in tops.items():
        schemas[name] = rewrite(schema, renames)


def fresh(name: str, taken: Iterable[str]) -> str:
    used = set(taken)
    return next(f"{name}{n}" for n in range(2, len(used) + 3) if f"{name}{n}" not in used)


def rewrite(value: Any, renames: dict[str, str]) -> Any:
    """`value` with every reference to a renamed component (a `$ref`, a discriminator's mapping) changed."""
    if not renames:
        return value
    if isinstance(value, dict):
        return {k: rewrite(v, renames) for k, v in value.items()}
    if isinstance(value, list):
        return [rewrite(v, renames) for v in value]
    if isinstance(value, str) and value.startswith(PREFIX) and value.removeprefix(PREFIX) in renames:
        return PREFIX + renames[value.removeprefix(PREFIX)]
    return value


def drop_default_422(spec: Schema) -> None:
    """FastAPI documents a 422 (`HTTPValidationError`) on every route with a parameter; a route that
    declares its own 422 replaces it, so the ones left are on routes that cannot answer one."""
    for path in spec.get("paths", {}).values():
        for operation in path.values():
            responses = operation.get("responses", {})
            if PREFIX + "HTTPValidationError" in references(responses.get("422")):
                del responses["422"]
    schemas = spec["components"]["schemas"]
    for name in ("HTTPValidationError", "ValidationError"):  # the second is used by the first only
        others = {k: v for k, v in schemas.items() if k != name}
        if PREFIX + name not in references([spec.get("paths"), spec.get("webhooks"), others]):
            schemas.pop(name, None)


def references(value: Any) -> set[str]:
    """Every `$ref` in `value`."""
    if isinstance(value, dict):
        found = {value["$ref"]} if isinstance(value.get("$ref"), str) else set()
        return found.union(*(references(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(references(v) for v in value))
    return set()


def require_sent_fields(spec: Schema) -> None:
    """Mark the properties of each schema that only answers use (never a request) as required: the API
    sends every field of its models, null or not; SPARSE ones leave out a field that is null."""
    schemas: Schema = spec["components"]["schemas"]
    operations = [op for path in spec.get("paths", {}).values() for op in path.values()]
    sent = reachable([op.get("responses") for op in operations], schemas)
    received = reachable([[op.get("requestBody"), op.get("parameters")] for op in operations], schemas)
    for name in sorted(sent - received):
        properties: Schema = schemas[name].get("properties", {})
        always = [p for p, schema in properties.items() if name not in SPARSE or not nullable(schema)]
        if always:
            schemas[name]["required"] = always


def nullable(schema: Schema) -> bool:
    return schema.get("type") == "null" or any(s.get("type") == "null" for s in schema.get("anyOf", []))


def reachable(roots: Any, schemas: Schema) -> set[str]:
    """The components `roots` refer to, directly or through others."""
    seen: set[str] = set()
    todo = [ref.removeprefix(PREFIX) for ref in references(roots)]
    while todo:
        name = todo.pop()
        if name not in seen and name in schemas:
            seen.add(name)
            todo += [ref.removeprefix(PREFIX) for ref in references(schemas[name])]
    return seen
