"""The routes: each one a call of runner's AsyncClient, acting as the user the bearer token names."""
from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse
from starlette.exceptions import HTTPException

from ..archive import operations
from ..archive.operations import ArchiveHealth
from ..client.facade import AsyncClient
from ..client.schedules import Schedule
from ..errors import TaskdeckError
from ..models import Job, JobStatus, QueueLoad
from ..notify import alerts
from ..notify.alerts import Alert
from ..notify.inbox import InboxPage
from ..notify.outbox import DeliveryAttempt
from ..notify.profile import Profile, ProfileUpdate
from ..notify.rules import AlertRule
from ..policy import tokens
from ..policy.admission import unavailable_reason
from ..reads.paging import JobPage
from ..registry import TaskType
from ..settings import Settings
from . import problems, schema, streams
from .limits import BodyLimit
from .problems import FORBIDDEN, REDIS, UNAUTHORIZED, documented
from .schema import JobCreate, JobRetry

bearer = HTTPBearer(auto_error=False, description="A token from `python -m runner token create`.")
TAGS = [
    {"name": "jobs", "description": "Submit jobs, follow them, read their results, cancel and retry them."},
    {"name": "types", "description": "The task types this deployment runs, with their payload schemas."},
    {"name": "system", "description": "Whether Redis, the workers and the archive are up."},
    {"name": "alerts", "description": "Alert rules and their state (admins only)."},
    {"name": "schedules", "description": "Cron schedules: everyone reads them, admins change them."},
    {"name": "notifications", "description": "The token user's inbox and notification profile (their own only)."},
]
NOT_FOUND = "No job with this id that the token's user may see: another user's job answers exactly like a missing one."
STREAM = ("Server-Sent Events, each frame one of `JobStreamFrame`: `snapshot` (the record, as of the stream "
          "position in its `id`), then the job's events, each named after itself "
          f"({', '.join(schema.EVENT_NAMES)}), until it is final ({', '.join(schema.FINAL_EVENTS)}), when the "
          "stream ends (close the EventSource then: a reconnect gets what it missed, if anything, and the final "
          "record again). After `TASKDECK_API_STREAM_MAX_S` the stream ends with a frame of only `retry` and the "
          "position as `id`: reconnect with Last-Event-ID to read on. A snapshot comes again only where events "
          "were lost to the stream's cap. A job that only the archive holds (Redis no longer does) is final: its "
          "stream is the archived record as the snapshot, then the end.")


class TypeInfo(BaseModel):
    name: str
    description: str
    schema_: dict[str, Any] = Field(alias="schema")
    available: bool = Field(description="False when this deployment lacks what the type needs (see `reason`).")
    reason: str | None = None


class Health(BaseModel):
    redis: bool
    workers_alive: int
    queues: dict[str, QueueLoad] = Field(default_factory=dict, description="Each named queue: waiting, running, "
                                         "and the slots live workers give it (empty when Redis is down).")
    archive: ArchiveHealth | None = Field(None, description="The archive: null when it is off "
                                          "(TASKDECK_ARCHIVE=false). A down archive shows `ok` false; it never "
                                          "makes health fail (Redis is what runs the jobs).")


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


@router.post("/jobs", status_code=202, response_model=Job, operation_id="create_job", tags=["jobs"],
             response_description="The job, queued; or the first job submitted with the same idempotency key.",
             responses=documented({
                 400: "The body cannot be read as text (it is not UTF-8).",
                 401: UNAUTHORIZED,
                 403: "The token's role may not submit jobs (analyst), or its user is no longer on TASKDECK_ROLES.",
                 413: "The body is over TASKDECK_API_MAX_BODY_BYTES.",
                 422: "The body is not JSON, the type is unknown, or a field or the payload does not validate: "
                      "`errors` names each field (its path inside the payload) and the limit.",
                 429: "Over the hourly submit limit or LLM token quota; `Retry-After` says when to try again.",
                 503: "Redis is unreachable, or the type needs what this deployment lacks (an LLM endpoint); "
                      "nothing was submitted.",
             }))
async def create_job(body: JobCreate, ac: Acting) -> Job:
    """Validate a job and queue it; the same `idempotency_key` from the same user returns the first job."""
    return await ac.submit(body.type, body.payload, priority=body.priority, idempotency_key=body.idempotency_key,
                           notify=body.notify, callback_url=body.callback_url, max_tokens=body.max_tokens,
                           max_cost_usd=body.max_cost_usd)


@router.get("/jobs", response_model=JobPage, operation_id="list_jobs", tags=["jobs"],
            response_description="A page of jobs, newest first.",
            responses=documented({
                401: UNAUTHORIZED, 403: FORBIDDEN, 503: REDIS,
                422: "A parameter out of range, or a cursor this API did not give out.",
            }))
async def list_jobs(ac: Acting, status: Annotated[JobStatus | Literal["active"] | None, Query(
                        description="One status, or `active` (queued, processing or retrying).")] = None,
                    type: Annotated[str | None, Query(description="One task type.")] = None,  # noqa: A002  (public query parameter name)
                    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                    cursor: Annotated[str | None, Query(max_length=200, description=(
                        "A page's `next_cursor`, for the page after it."))] = None) -> JobPage:
    """The jobs the token's user may see, newest first, a page at a time."""
    return await ac.page(status=status, type=type, limit=limit, cursor=cursor)


@router.get("/jobs/{job_id}", response_model=Job, operation_id="get_job", tags=["jobs"],
            response_description="The job's record: status, progress, steps, attempts and, once completed, its result.",
            responses=documented({401: UNAUTHORIZED, 403: FORBIDDEN, 404: NOT_FOUND, 503: REDIS}))
async def get_job(job_id: str, ac: Acting) -> Job:
    """One job's record."""
    return await ac.get(job_id)


@router.delete("/jobs/{job_id}", response_model=Job, operation_id="cancel_job", tags=["jobs"],
               response_description="The job once cancelled (a running one is interrupted at its next await), "
                                    "or as it is after TASKDECK_CANCEL_WAIT_S.",
               responses=documented({
                   401: UNAUTHORIZED, 404: NOT_FOUND, 503: REDIS,
                   403: "The token's role may not cancel jobs (analyst), or its user is no longer on TASKDECK_ROLES.",
                   409: "The job is final already (completed, failed or cancelled).",
               }))
async def cancel_job(job_id: str, ac: Acting) -> Job:
    """Cancel a queued job (it never starts) or abort a running one."""
    return await ac.cancel(job_id)


@router.post("/jobs/{job_id}/retry", status_code=202, response_model=Job, operation_id="retry_job", tags=["jobs"],
             response_description="The job, queued again under the same id with a fresh set of attempts; or, with "
                                  "`from_step` or `payload`, the new job that reruns it.",
             responses=documented({
                 400: "The body cannot be read as text (it is not UTF-8).",
                 401: UNAUTHORIZED, 404: NOT_FOUND,
                 403: "The token's role may not retry jobs (analyst), or its user is no longer on TASKDECK_ROLES.",
                 413: "The body is over TASKDECK_API_MAX_BODY_BYTES.",
                 409: "The job is not failed or cancelled (for a rerun: not finished), or is still finishing its "
                      "last attempt.",
                 422: "The job's type is not registered on this server any more, `from_step` names no step or "
                      "checkpoint of the job, or the payload or a cap does not validate.",
                 429: "Over the owner's hourly submit limit or LLM token quota; `Retry-After` says when to try "
                      "again.",
                 503: "Redis is unreachable, or the type needs what this deployment lacks; nothing was retried.",
             }))
async def retry_job(job_id: str, ac: Acting, body: Annotated[JobRetry, Body(default_factory=JobRetry)]) -> Job:
    """Run a failed or cancelled job again (it resumes after its last checkpoint), or with `from_step` or
    `payload` rerun a finished one as a new job; admitted like a new submit."""
    # no body is an empty JobRetry: the schema then names JobRetry alone, which generated clients can leave out
    # (an optional `JobRetry | null` body made openapi-python-client send its UNSET marker as JSON)
    return await ac.retry(job_id, from_step=body.from_step, payload=body.payload, max_tokens=body.max_tokens,
                          max_cost_usd=body.max_cost_usd)


@router.get("/jobs/{job_id}/events", response_class=EventSourceResponse, operation_id="job_events", tags=["jobs"],
            responses={200: {"description": STREAM, "content": {"text/event-stream": {
                "schema": {"type": "string", "description": "Server-Sent Events; each frame a `JobStreamFrame`."},
                "x-itemSchema": {"$ref": "#/components/schemas/JobStreamFrame"}}}},
                **documented({
                    401: UNAUTHORIZED, 403: FORBIDDEN, 404: NOT_FOUND,
                    422: "Last-Event-ID is not an event id, or one this stream has not given out.",
                    429: "The user has TASKDECK_API_STREAMS_PER_USER streams open on this server; `Retry-After` "
                         "says when one ends at the latest.",
                    503: "Redis is unreachable; nothing was streamed.",
                })})
async def job_events(job_id: str, ac: Acting, request: Request,
                     last_event_id: Annotated[str | None, Header(max_length=50, description=(
                         "The `id` of the last event received (an EventSource sends it on its own)."))] = None
                     ) -> Response:
    """Follow a job as it runs, until it is final; resume without loss with Last-Event-ID."""
    if (found := await ac.job_or_archived(job_id)).archived:
        return await streams.archived_stream(ac.store, found.job, last_event_id)
    return await streams.open_stream(request.app.state.hub, ac.store, job_id, ac.user, last_event_id)


@router.get("/jobs/{job_id}/deliveries", response_model=list[DeliveryAttempt], operation_id="job_deliveries",
            tags=["jobs"], response_description="Every attempt to deliver the job's notices and callbacks, oldest "
                                                "first.",
            responses=documented({401: UNAUTHORIZED, 403: FORBIDDEN, 503: REDIS, 404: NOT_FOUND + " The delivery "
                                  "log names addresses: it is for the job's owner and admins only."}))
async def job_deliveries(job_id: str, ac: Acting) -> list[DeliveryAttempt]:
    """The job's delivery log: each attempt at its notices (inbox, email, webhook) and its callback."""
    return await ac.deliveries(job_id)


BAD_BODY = "The body cannot be read as text (it is not UTF-8)."
TOO_LARGE = "The body is over TASKDECK_API_MAX_BODY_BYTES."


class MarkRead(BaseModel):
    ids: list[str] | Literal["all"] = Field(description='Notification ids, or "all" (which also resets '
                                                        '`failed_since_looked`).')


class Unread(BaseModel):
    unread: int = Field(description="Unread notifications left.")


@router.get("/profile", response_model=Profile, operation_id="get_profile", tags=["notifications"],
            response_description="The token user's notification profile, with their webhook secret.",
            responses=documented({401: UNAUTHORIZED, 403: FORBIDDEN, 503: REDIS}))
async def get_profile(ac: Acting) -> Profile:
    """Where the user's notices go and, when a submit does not say, which job ends and channels."""
    return await ac.profile()


@router.put("/profile", response_model=Profile, operation_id="update_profile", tags=["notifications"],
            response_description="The profile as saved.",
            responses=documented({401: UNAUTHORIZED, 403: FORBIDDEN, 503: REDIS, 400: BAD_BODY, 413: TOO_LARGE,
                                  422: "A field does not fit: not an email address, a webhook URL the outbound "
                                       "policy refuses, webhook among `via` without a webhook URL."}))
async def update_profile(body: ProfileUpdate, ac: Acting) -> Profile:
    """Change the profile: each field given replaces the saved one (\"\" clears email or webhook_url)."""
    return await ac.set_profile(**body.model_dump(exclude_unset=True))


@router.get("/notifications", response_model=InboxPage, operation_id="list_notifications", tags=["notifications"],
            response_description="A page of the user's inbox, newest first, with the unread count.",
            responses=documented({401: UNAUTHORIZED, 403: FORBIDDEN, 503: REDIS,
                                  422: "A parameter out of range, or a cursor this API did not give out."}))
async def list_notifications(ac: Acting, limit: Annotated[int, Query(ge=1, le=500)] = 50,
                             cursor: Annotated[str | None, Query(max_length=200, description=(
                                 "A page's `next_cursor`, for the page after it."))] = None,
                             unread: Annotated[bool, Query(description="Only unread ones.")] = False) -> InboxPage:
    """The inbox; reading its first page counts as looking (`failed_since_looked` starts again from 0)."""
    return await ac.notifications(limit=limit, cursor=cursor, unread=unread)


@router.post("/notifications/read", response_model=Unread, operation_id="mark_notifications_read",
             tags=["notifications"], response_description="How many are still unread.",
             responses=documented({401: UNAUTHORIZED, 403: FORBIDDEN, 503: REDIS, 400: BAD_BODY, 413: TOO_LARGE,
                                   422: "Neither a list of ids nor \"all\", or over 1,000 ids."}))
async def mark_notifications_read(body: MarkRead, ac: Acting) -> Unread:
    """Mark notifications read."""
    return Unread(unread=await ac.mark_read(body.ids))


@router.get("/types", response_model=list[TypeInfo], operation_id="list_types", tags=["types"],
            response_description="Every registered task type.",
            responses=documented({401: UNAUTHORIZED, 403: FORBIDDEN, 503: REDIS}))
async def list_types(ac: Acting) -> list[TypeInfo]:
    """The task types, with their payload JSON schemas and whether they can run here."""
    return [TypeInfo(name=t.name, description=t.description, schema=t.schema(),
                     available=(reason := unavailable_reason(t, ac.settings)) is None, reason=reason)
            for t in ac.types()]


@router.get("/health", response_model=Health, operation_id="health", tags=["system"],
            response_description="Redis answers; how many workers are alive; the archive's state.",
            responses={503: {"model": Health, "description": "Redis is unreachable (`redis` is false)."}})
async def health(request: Request) -> Any:
    """Whether Redis answers, how many workers are alive, and whether the archive answers and what its
    feed has still to write; needs no token."""
    store = root(request).store
    try:
        stats = await root(request).stats()
    except TaskdeckError:
        down = Health(redis=False, workers_alive=0, archive=await operations.health(store))
        return JSONResponse(down.model_dump(mode="json"), status_code=503)
    return Health(redis=True, workers_alive=stats.workers_alive, queues=stats.queues,
                  archive=await operations.health(store))


ADMINS_ONLY = ("The token's role may not read or change alert rules (only admins may), or its user is no longer "
               "on TASKDECK_ROLES.")


@router.get("/alerts/rules", response_model=list[AlertRule], operation_id="list_alert_rules", tags=["alerts"],
            response_description="Every alert rule, by name.",
            responses=documented({401: UNAUTHORIZED, 403: ADMINS_ONLY, 503: REDIS}))
async def list_alert_rules(ac: Acting) -> list[AlertRule]:
    """The alert rules: kind, parameters, targets, how long the condition must hold, the repeat interval."""
    return await ac.alert_rules()


@router.post("/alerts/rules", response_model=AlertRule, operation_id="set_alert_rule", tags=["alerts"],
             response_description="The rule as saved.",
             responses=documented({
                 401: UNAUTHORIZED, 403: ADMINS_ONLY, 503: REDIS, 400: BAD_BODY, 413: TOO_LARGE,
                 422: "A field or parameter does not fit the rule's kind, or a target is refused: not an email "
                      "address, or a URL the outbound policy refuses (a private address) or that does not resolve.",
             }))
async def set_alert_rule(body: AlertRule, ac: Acting) -> AlertRule:
    """Add an alert rule, or replace the one with its `id`."""
    return await ac.set_alert_rule(body)


@router.delete("/alerts/rules/{rule_id}", status_code=204, response_class=Response,
               operation_id="delete_alert_rule", tags=["alerts"], response_description="Deleted, with its state.",
               responses=documented({401: UNAUTHORIZED, 403: ADMINS_ONLY, 404: "No alert rule with this id.",
                                     503: REDIS}))
async def delete_alert_rule(rule_id: str, ac: Acting) -> Response:
    """Delete an alert rule and its state."""
    await ac.delete_alert_rule(rule_id)
    return Response(status_code=204)


@router.get("/alerts", response_model=list[Alert], operation_id="list_alerts", tags=["alerts"],
            response_description="Every rule with its state.",
            responses=documented({401: UNAUTHORIZED, 403: ADMINS_ONLY, 503: REDIS}))
async def list_alerts(ac: Acting) -> list[Alert]:
    """Each alert rule's state: ok, pending, firing or resolved, since when, and what the last evaluation saw."""
    return await ac.alerts()


SETTINGS_ONLY = "The token's role may not change schedules (only admins may)."
NO_SCHEDULE = "No schedule with this name."


@router.get("/schedules", response_model=list[Schedule], operation_id="list_schedules", tags=["schedules"],
            response_description="Every schedule, by name; payloads only for admins.",
            responses=documented({401: UNAUTHORIZED, 503: REDIS}))
async def list_schedules(ac: Acting) -> list[Schedule]:
    """The cron schedules, with their next run and the outcome of their last one."""
    return await ac.schedules()


@router.post("/schedules", response_model=Schedule, operation_id="save_schedule", tags=["schedules"],
             response_description="The schedule as saved, with its next run.",
             responses=documented({401: UNAUTHORIZED, 403: SETTINGS_ONLY, 503: REDIS, 400: BAD_BODY, 413: TOO_LARGE,
                                   422: "A field does not fit: an unknown type, a payload the type refuses, a cron "
                                        "expression that is not one."}))
async def save_schedule(body: Schedule, ac: Acting) -> Schedule:
    """Add a schedule, or replace the one with its `name`."""
    return await ac.save_schedule(body)


@router.post("/schedules/{name}/{action}", response_model=Schedule, operation_id="change_schedule",
             tags=["schedules"], response_description="The schedule after the change.",
             responses=documented({401: UNAUTHORIZED, 403: SETTINGS_ONLY, 404: NO_SCHEDULE, 503: REDIS,
                                   409: "run: its previous run is still active (runs never overlap).",
                                   422: "The action is not pause, resume or run."}))
async def change_schedule(name: str, action: Literal["pause", "resume", "run"], ac: Acting) -> Schedule:
    """Pause or resume a schedule, or run it now (its run's job id is its `last_job_id`)."""
    if action == "run":
        await ac.run_schedule(name)
        return next(found for found in await ac.schedules() if found.name == name)
    return await ac.pause_schedule(name, paused=action == "pause")


@router.delete("/schedules/{name}", status_code=204, response_class=Response, operation_id="delete_schedule",
               tags=["schedules"], response_description="Deleted; it stays deleted.",
               responses=documented({401: UNAUTHORIZED, 403: SETTINGS_ONLY, 404: NO_SCHEDULE, 503: REDIS}))
async def delete_schedule(name: str, ac: Acting) -> Response:
    """Delete a schedule."""
    await ac.delete_schedule(name)
    return Response(status_code=204)


class App(FastAPI):
    """FastAPI, with the OpenAPI document completed by schema.py for the task types it was built with."""

    task_types: tuple[TaskType, ...] = ()

    def openapi(self) -> dict[str, Any]:
        if not self.openapi_schema:
            try:
                self.openapi_schema = schema.complete(super().openapi(), self.task_types)
            except BaseException:
                self.openapi_schema = None
                raise
        return self.openapi_schema


def create_app(settings: Settings | None = None) -> FastAPI:
    client = AsyncClient(settings or Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.hub = hub = streams.Hub(client.store, client.settings.api_streams_per_user,
                                          client.settings.api_stream_max_s)
        hub.start()
        evaluating = asyncio.create_task(alerts.run(client.store, f"api-{os.getpid()}"))  # no_worker needs a non-worker
        yield
        evaluating.cancel()
        with suppress(asyncio.CancelledError):
            await evaluating
        await hub.stop()
        await client.close()

    app = App(title="Taskdeck", version="1", lifespan=lifespan, openapi_tags=TAGS,
              description="Submit and follow long-running jobs. Every route but /api/health needs "
                          "`Authorization: Bearer <token>`. Errors are `application/problem+json` (a `Problem`).")
    app.task_types = tuple(client.types())  # the registry as loaded by the client: the spec's task types
    app.state.client = client
    app.include_router(router)
    problems.install(app)
    app.add_middleware(BodyLimit, max_bytes=client.settings.api_max_body_bytes)
    return app

