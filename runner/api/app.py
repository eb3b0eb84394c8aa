"""The routes: each one a call of runner's AsyncClient, acting as the user the bearer token names."""
from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.exceptions import HTTPException

from .. import tokens
from ..admission import unavailable_reason
from ..client import AsyncClient
from ..errors import TaskdeckError
from ..events import Event, Snapshot
from ..models import Job, JobStatus
from ..settings import Settings
from . import problems
from .limits import BodyLimit

bearer = HTTPBearer(auto_error=False, description="A token from `python -m runner token create`.")
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": problems.Problem, "content": {problems.MEDIA_TYPE: {}}}
    for code in (400, 401, 404, 409, 413, 422, 429, 503)
}


class JobCreate(BaseModel):
    type: str = Field(description="A registered task type (GET /api/types).")
    payload: dict[str, Any] = Field(default_factory=dict, description="The type's payload, as its schema says.")
    priority: Literal["high", "normal", "low"] | None = None
    idempotency_key: str | None = Field(None, max_length=200, description="The same key returns the first job.")


class JobPage(BaseModel):
    jobs: list[Job]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last one.")


class TypeInfo(BaseModel):
    name: str
    description: str
    schema_: dict[str, Any] = Field(alias="schema")
    available: bool = Field(description="False when this deployment lacks what the type needs (see `reason`).")
    reason: str | None = None


class Health(BaseModel):
    redis: bool
    workers_alive: int


router = APIRouter(prefix="/api")


def root(request: Request) -> AsyncClient:
    client: AsyncClient = request.app.state.client
    return client


async def acting(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
                 ) -> AsyncClient:
    """A client acting as the token's user and role."""
    principal = await tokens.verify(root(request).store, credentials.credentials) if credentials else None
    if principal is None:
        raise HTTPException(401, "missing, unknown or revoked bearer token; make one with "
                                 "`python -m runner token create --user EMAIL`", headers={"WWW-Authenticate": "Bearer"})
    return root(request).acting(principal)


Acting = Annotated[AsyncClient, Depends(acting)]


@router.post("/jobs", status_code=202, response_model=Job)
async def create_job(body: JobCreate, ac: Acting) -> Job:
    return await ac.submit(body.type, body.payload, priority=body.priority, idempotency_key=body.idempotency_key)


@router.get("/jobs", response_model=JobPage)
async def list_jobs(ac: Acting, status: JobStatus | Literal["active"] | None = None, type: str | None = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 50, cursor: str | None = None) -> JobPage:
    offset = parse_cursor(cursor)
    jobs = await ac.list(status=status, type=type, limit=limit + 1, offset=offset)
    more = len(jobs) > limit
    return JobPage(jobs=jobs[:limit], next_cursor=make_cursor(offset + limit) if more else None)


@router.get("/jobs/{job_id}", response_model=Job)
async def get_job(job_id: str, ac: Acting) -> Job:
    return await ac.get(job_id)


@router.delete("/jobs/{job_id}", response_model=Job)
async def cancel_job(job_id: str, ac: Acting) -> Job:
    return await ac.cancel(job_id)


@router.post("/jobs/{job_id}/retry", status_code=202, response_model=Job)
async def retry_job(job_id: str, ac: Acting) -> Job:
    return await ac.retry(job_id)


@router.get("/jobs/{job_id}/events", response_class=EventSourceResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`snapshot` (the record), then the job's events until it is final; "
                                            "reconnect with Last-Event-ID to resume."}})
async def job_events(job_id: str, ac: Acting,
                     last_event_id: Annotated[str | None, Header(pattern=r"^\d{1,20}-\d{1,20}$")] = None
                     ) -> EventSourceResponse:
    stream = ac.follow(job_id, after=last_event_id)
    first = await anext(stream)  # an unknown job answers as a problem, before the stream starts
    return EventSourceResponse(sse(first, stream), ping=15)


@router.get("/types", response_model=list[TypeInfo])
async def types(ac: Acting) -> list[TypeInfo]:
    return [TypeInfo(name=t.name, description=t.description, schema=t.schema(),
                     available=(reason := unavailable_reason(t, ac.settings)) is None, reason=reason)
            for t in ac.types()]


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(request: Request) -> Any:
    try:
        alive = (await root(request).stats()).workers_alive
    except TaskdeckError:
        return JSONResponse(Health(redis=False, workers_alive=0).model_dump(), status_code=503)
    return Health(redis=True, workers_alive=alive)


def create_app(settings: Settings | None = None) -> FastAPI:
    client = AsyncClient(settings or Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await client.close()

    app = FastAPI(title="Taskdeck", version="1", lifespan=lifespan, responses=ERRORS,
                  description="Submit and follow long-running jobs. Every route but /api/health needs "
                              "`Authorization: Bearer <token>`.")
    app.state.client = client
    app.include_router(router)
    problems.install(app)
    app.add_middleware(BodyLimit, max_bytes=client.settings.api_max_body_bytes)
    return app


async def sse(first: Snapshot | Event | None, rest: AsyncIterator[Snapshot | Event | None]
              ) -> AsyncIterator[ServerSentEvent | dict[str, Any]]:
    item: Snapshot | Event | None = first
    while True:
        if isinstance(item, Snapshot):
            yield ServerSentEvent(data=item.job.model_dump_json(), event="snapshot", id=item.id)
        elif isinstance(item, Event):
            yield ServerSentEvent(data=item.model_dump_json(), event=item.event, id=item.id)
        try:
            item = await anext(rest)
        except StopAsyncIteration:
            return


def make_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"offset": offset})).decode()


def parse_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        offset = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))["offset"]
        if isinstance(offset, int) and 0 <= offset <= 1_000_000:
            return offset
    except (ValueError, TypeError, KeyError):
        pass
    raise HTTPException(422, "cursor is not one this API gave out; start again without it")
