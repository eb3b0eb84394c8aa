"""The routes: each one a call of runner's AsyncClient, acting as the user the bearer token names."""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse
from starlette.exceptions import HTTPException

from .. import tokens
from ..admission import unavailable_reason
from ..client import AsyncClient
from ..errors import TaskdeckError
from ..models import Job, JobStatus
from ..paging import JobPage
from ..settings import Settings
from . import problems, streams
from .limits import BodyLimit

bearer = HTTPBearer(auto_error=False, description="A token from `python -m runner token create`.")
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": problems.Problem, "content": {problems.MEDIA_TYPE: {}}}
    for code in (400, 401, 403, 404, 409, 413, 422, 429, 503)
}


class JobCreate(BaseModel):
    type: str = Field(description="A registered task type (GET /api/types).")
    payload: dict[str, Any] = Field(default_factory=dict, description="The type's payload, as its schema says.")
    priority: Literal["high", "normal", "low"] | None = None
    idempotency_key: str | None = Field(None, max_length=200, description="The same key returns the first job.")


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
                    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                    cursor: Annotated[str | None, Query(max_length=200)] = None) -> JobPage:
    return await ac.page(status=status, type=type, limit=limit, cursor=cursor)


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
                             "description": "`snapshot` (the record, as of the stream position in its `id`), then "
                                            "the job's events until it is final, when the stream ends (close the "
                                            "EventSource then: a reconnect gets what it missed, if anything, and "
                                            "the final record again). After `TASKDECK_API_STREAM_MAX_S` the stream "
                                            "ends with a `retry:` hint and the position as `id`: reconnect with "
                                            "Last-Event-ID to read on. A snapshot comes again only where events "
                                            "were lost to the stream's cap. 429 past "
                                            "`TASKDECK_API_STREAMS_PER_USER` open streams."}})
async def job_events(job_id: str, ac: Acting, request: Request,
                     last_event_id: Annotated[str | None, Header(max_length=50, description=(
                         "The `id` of the last event received (an EventSource sends it on its own)."))] = None
                     ) -> Response:
    await ac.get(job_id)
    return await streams.open_stream(request.app.state.hub, ac.store, job_id, ac.user, last_event_id)


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
        app.state.hub = hub = streams.Hub(client.store, client.settings.api_streams_per_user,
                                          client.settings.api_stream_max_s)
        hub.start()
        yield
        await hub.stop()
        await client.close()

    app = FastAPI(title="Taskdeck", version="1", lifespan=lifespan, responses=ERRORS,
                  description="Submit and follow long-running jobs. Every route but /api/health needs "
                              "`Authorization: Bearer <token>`.")
    app.state.client = client
    app.include_router(router)
    problems.install(app)
    app.add_middleware(BodyLimit, max_bytes=client.settings.api_max_body_bytes)
    return app

