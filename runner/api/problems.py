"""Errors as RFC 9457 problem details (`application/problem+json`), one status per error kind.

A Taskdeck error's `type` is `urn:taskdeck:problem:<kind>` (e.g. `invalid-payload`), so a client can
tell kinds apart without parsing `detail`; plain HTTP errors are `about:blank` with the status phrase
as `title`, as the RFC asks.
"""
from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pydantic_core import to_jsonable_python
from starlette.exceptions import HTTPException
from starlette.routing import Match, Route

from ..errors import (
    AccessDenied,
    InvalidPayload,
    InvalidTransition,
    JobNotFound,
    LimitExceeded,
    RedisUnavailable,
    TaskdeckError,
    Unavailable,
    UnknownTaskType,
)

MEDIA_TYPE = "application/problem+json"
STATUS: dict[type[TaskdeckError], int] = {
    InvalidPayload: 422, UnknownTaskType: 422, JobNotFound: 404, InvalidTransition: 409, AccessDenied: 403,
    LimitExceeded: 429, Unavailable: 503, RedisUnavailable: 503,
}


class FieldError(BaseModel):
    """One invalid field of a request or payload."""

    loc: list[str | int] = Field(description="The field's path: `[\"body\", \"type\"]` for the request, "
                                             "`[\"duration_s\"]` inside a payload.")
    msg: str = Field(description="What is wrong with it.")
    type: str = Field(description="The kind of error (`less_than_equal`, `missing`...).")
    ctx: dict[str, Any] | None = Field(None, description="For a limit, the limit (`{\"le\": 3600}`).")


class Problem(BaseModel):
    """An error, as RFC 9457 problem details."""

    type: str = Field("about:blank", description="`urn:taskdeck:problem:<kind>` for Taskdeck's own errors.")
    title: str
    status: int
    detail: str = Field(description="What went wrong and what to do about it.")
    errors: list[FieldError] | None = Field(None, description="Each invalid field, for a 422.")


PROBLEM_REF = "#/components/schemas/Problem"
UNAUTHORIZED = "No bearer token, or an unknown or revoked one."
FORBIDDEN = "The token's user is no longer on TASKDECK_ROLES."
REDIS = "Redis is unreachable; nothing was done."


def documented(when: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """Route `responses` for the error codes a route can answer, each with when it does: the body is
    a Problem under `application/problem+json`, the one content type these answers have (generators
    type an answer by its first content type). schema.py adds the Problem schema to the components."""
    return {code: {"description": text, "content": {MEDIA_TYPE: {"schema": {"$ref": PROBLEM_REF}}}}
            for code, text in sorted(when.items())}


def problem(status: int, detail: str, kind: str | None = None, errors: list[dict[str, Any]] | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    """`kind` is a CamelCase error name (InvalidPayload); without one, a plain HTTP error."""
    words = re.findall(r"[A-Z][a-z]*", kind or "")
    body = Problem.model_validate({
        "type": f"urn:taskdeck:problem:{'-'.join(words).lower()}" if kind else "about:blank",
        "title": " ".join(words).capitalize() if kind else HTTPStatus(status).phrase,
        "status": status, "detail": detail, "errors": errors,
    }).model_dump(exclude_none=True)
    return JSONResponse(to_jsonable_python(body, fallback=str), status_code=status, media_type=MEDIA_TYPE,
                        headers=headers)


def status_of(error: TaskdeckError) -> int:
    return next((code for kind, code in STATUS.items() if isinstance(error, kind)), 400)


def field_errors(errors: list[Any]) -> list[dict[str, Any]]:
    """Pydantic's errors as {loc, msg, type, ctx}: the field path and, for a limit, the limit."""
    keep = ("loc", "msg", "type", "ctx")
    return [{k: v for k, v in dict(e).items() if k in keep} for e in errors]


async def taskdeck_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, TaskdeckError)
    headers = None
    if isinstance(error, LimitExceeded) and error.retry_after_s is not None:
        headers = {"Retry-After": str(max(1, error.retry_after_s))}
    errors = field_errors(error.errors) if isinstance(error, InvalidPayload) and error.errors else None
    return problem(status_of(error), str(error), type(error).__name__, errors, headers)


async def invalid_request(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return problem(422, "the request does not match the API's schema; see `errors`", "InvalidRequest",
                   field_errors(list(error.errors())))


async def http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    headers = dict(error.headers or {})
    if error.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request))
    return problem(error.status_code, str(error.detail), headers=headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route takes on this path (Starlette names only the first route's)."""
    scope = {**request.scope, "method": ""}
    methods = {m for route in request.app.routes if isinstance(route, Route) and route.methods
               and route.matches(scope)[0] is not Match.NONE for m in route.methods}
    return sorted(methods)


async def unexpected(request: Request, error: Exception) -> JSONResponse:
    return problem(500, "the server failed; its log says why")


def install(app: FastAPI) -> None:
    app.add_exception_handler(Exception, unexpected)
    app.add_exception_handler(TaskdeckError, taskdeck_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(HTTPException, http_error)
