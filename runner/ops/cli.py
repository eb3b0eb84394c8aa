"""`python -m runner COMMAND`: the operator's and script's way in (DESIGN.md §5)."""
from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ParamSpec, TypeVar

import click
import orjson
from pydantic import ValidationError

from ..client.blocking import Client
from ..client.schedules import Schedule
from ..errors import InvalidPayload, TaskdeckError
from ..models import Job, Priority
from ..policy import tokens
from ..policy.access import Role
from ..policy.admission import env_name, missing, unavailable_reason
from ..settings import Settings
from ..storage.store import Store, connect

if TYPE_CHECKING:
    from ..archive.operations import ArchiveReport

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
P = ParamSpec("P")


def emit(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def handle_errors(command: Callable[P, T]) -> Callable[P, T]:
    """Errors become one line on stderr: exit 2 for bad input or an unknown id, 1 when Redis is away."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return command(*args, **kwargs)
        except TaskdeckError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)

    return wrapper


def as_user(command: F) -> F:
    return click.option("--as", "acting", metavar="EMAIL", help="Act as this user (default: the local admin).")(command)


def json_flag(command: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(command)


def spend_caps(command: F) -> F:
    command = click.option("--max-cost-usd", type=float, help="Cap on the job's LLM cost, USD (default: the "
                           "type's); past it the job fails with \"budget exceeded\".")(command)
    return click.option("--max-tokens", type=int, help="Cap on the job's LLM tokens, in and out "
                        "(default: the type's).")(command)


def client(acting: str | None = None) -> Client:
    return Client(user=acting)


def read_payload(value: str, limit: int) -> bytes:
    """The payload's JSON as given: inline, `@FILE` or `-` (stdin). A file or stream is read no further
    than `limit` bytes, so `@/dev/zero` is refused instead of filling memory."""
    if value == "-":
        return read_capped(sys.stdin.buffer, "stdin", limit)
    if value.startswith("@"):
        try:
            with Path(value[1:]).open("rb") as f:
                return read_capped(f, repr(value[1:]), limit)
        except OSError as e:
            raise InvalidPayload(f"cannot read payload file {value[1:]!r}: {e.strerror}") from None
    return value.encode()


def read_capped(stream: BinaryIO, name: str, limit: int) -> bytes:
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise InvalidPayload(f"the payload in {name} is over {limit:,} bytes, the limit (TASKDECK_MAX_PAYLOAD_BYTES)")
    return data


def describe(job: Job) -> str:
    lines = [f"{job.id}  {job.type}  {job.status}  {job.progress:.0f}%  attempts {job.attempts}/{job.max_attempts}",
             f"  user {job.user_id}{'  org ' + job.org_id if job.org_id else ''}  priority {job.priority}",
             f"  queued {job.queued_at:%Y-%m-%d %H:%M:%S}  started {job.started_at or '-'}  "
             f"finished {job.completed_at or '-'}"]
    if job.current_step:
        lines.append(f"  step: {job.current_step}")
    lines += [f"    [{s.status}] {s.name}" for s in job.steps]
    if job.max_tokens is not None or job.max_cost_usd is not None:
        lines.append(f"  spend {job.tokens_in + job.tokens_out:,} tokens, ${job.cost_usd:.4f}  caps "
                     f"{job.max_tokens if job.max_tokens is not None else '-'} tokens, "
                     f"${job.max_cost_usd if job.max_cost_usd is not None else '-'}")
    if job.rerun_of:
        lines.append(f"  rerun of {job.rerun_of}, reusing: {', '.join(job.reused_steps) or 'nothing'}")
    if job.last_error:
        lines.append(f"  last error: {job.last_error}")
    if job.cancel_requested_by:
        lines.append(f"  cancel requested by {job.cancel_requested_by}")
    if job.result is not None:
        lines.append(f"  result: {orjson.dumps(job.result).decode()[:2000]}")
    return "\n".join(lines)


@click.group()
def cli() -> None:
    """Taskdeck: long AI generation jobs in the background, watched from a browser."""


@cli.command()
@click.argument("type")
@click.option("--payload", default="{}", help="JSON object, @FILE to read it from a file, or - for stdin.")
@click.option("--user", help="Submitter (default: the acting user).")
@click.option("--org", default="", help="Organisation to submit for (admins only; default: the submitter's).")
@click.option("--priority", type=click.Choice(["high", "normal", "low"]), help="Default: the type's.")
@click.option("--idempotency-key", help="The same key within its window returns the first job.")
@click.option("--notify", "notify_on", metavar="EVENTS", help="Tell the owner when the job is completed, failed "
              "(comma-separated, `both`, or `none`); default: as their profile says.")
@click.option("--notify-via", metavar="CHANNELS", help="inbox, email, webhook (comma-separated); default: inbox.")
@click.option("--callback-url", metavar="URL", help="POST the final record there when the job ends, signed.")
@spend_caps
@as_user
@json_flag
@handle_errors
def submit(type: str, payload: str, user: str | None, org: str,  # noqa: A002  (click passes the TYPE argument as `type`)
           priority: str | None, idempotency_key: str | None, notify_on: str | None, notify_via: str | None,
           callback_url: str | None, max_tokens: int | None, max_cost_usd: float | None, acting: str | None,
           as_json: bool) -> None:
    """Validate and enqueue a job; prints its id."""
    with client(acting) as c:
        job = c.submit(type, read_payload(payload, c.settings.max_payload_bytes), user=user, org=org, priority=priority,
                       idempotency_key=idempotency_key, notify=notify_option(notify_on, notify_via),
                       callback_url=callback_url, max_tokens=max_tokens, max_cost_usd=max_cost_usd)
    emit(job.model_dump(mode="json")) if as_json else click.echo(job.id)


def words(text: str) -> list[str]:
    return [word.strip() for word in text.split(",") if word.strip()]


def notify_option(events: str | None, via: str | None) -> dict[str, Any] | None:
    """--notify and --notify-via as submit's `notify` (None: neither given, the profile decides)."""
    if events is None and via is None:
        return None
    if events is None:
        raise InvalidPayload("--notify-via needs --notify EVENTS (completed, failed, both or none)")
    named = {"both": ["completed", "failed"], "none": []}.get(events.strip(), words(events))
    return {"events": named, **({"via": words(via)} if via is not None else {})}


@cli.command()
@click.argument("job_id")
@as_user
@json_flag
@handle_errors
def show(job_id: str, acting: str | None, as_json: bool) -> None:
    """One job's record."""
    with client(acting) as c:
        job = c.get(job_id)
    emit(job.model_dump(mode="json")) if as_json else click.echo(describe(job))


@cli.command("list")
@click.option("--status", help="queued, processing, retrying, completed, failed, cancelled, or active.")
@click.option("--type", "type_", metavar="TYPE")
@click.option("--user")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@as_user
@json_flag
@handle_errors
def list_jobs(status: str | None, type_: str | None, user: str | None, limit: int, acting: str | None,
              as_json: bool) -> None:
    """Jobs, newest first."""
    with client(acting) as c:
        jobs = c.list(status=status, type=type_, user=user, limit=limit)
    if as_json:
        emit([job.model_dump(mode="json", exclude={"attempt_log", "partial"}) for job in jobs])
        return
    for job in jobs:
        click.echo(f"{job.id}  {job.queued_at:%m-%d %H:%M:%S}  {job.type:<22} {job.status:<10} "
                   f"{job.progress:>5.0f}%  {job.user_id}")


@cli.command()
@click.argument("job_id")
@as_user
@json_flag
@handle_errors
def cancel(job_id: str, acting: str | None, as_json: bool) -> None:
    """Cancel a queued job, or abort a running one."""
    with client(acting) as c:
        job = c.cancel(job_id)
    if as_json:
        emit(job.model_dump(mode="json"))
    else:
        click.echo(f"{job.id} {job.status}" + ("" if job.status.terminal else " (cancel requested)"))


@cli.command()
@click.argument("job_id")
@click.option("--from-step", metavar="NAME", help="Rerun a finished job as a new one from this step (or "
              "checkpoint), reusing what the job made before it.")
@click.option("--payload", help="An edited payload for the new job: JSON, @FILE or - (stdin).")
@spend_caps
@as_user
@json_flag
@handle_errors
def retry(job_id: str, from_step: str | None, payload: str | None, max_tokens: int | None,
          max_cost_usd: float | None, acting: str | None, as_json: bool) -> None:
    """Run a failed or cancelled job again (it resumes after its last checkpoint); with --from-step or
    --payload, a finished job as a new job (prints the new id)."""
    with client(acting) as c:
        edited = read_payload(payload, c.settings.max_payload_bytes) if payload is not None else None
        job = c.retry(job_id, from_step=from_step, payload=edited, max_tokens=max_tokens, max_cost_usd=max_cost_usd)
    emit(job.model_dump(mode="json")) if as_json else click.echo(f"{job.id} {job.status}")


@cli.command()
@json_flag
@handle_errors
def types(as_json: bool) -> None:
    """Registered task types and their payload schema."""
    with client() as c:
        found = [(t, unavailable_reason(t, c.settings)) for t in c.types()]
    if as_json:
        emit([{"name": t.name, "description": t.description, "schema": t.schema(), "unavailable": reason}
              for t, reason in found])
        return
    for t, reason in found:
        unset = ", ".join(env_name(name) for name in missing(t, c.settings))
        click.echo(f"{t.name:<28} {t.description}" + (f"  [unavailable: set {unset}]" if reason else ""))


@cli.command()
@json_flag
@handle_errors
def stats(as_json: bool) -> None:
    """Queue depth per priority, jobs by status, success rate, throughput, workers alive, and each named queue."""
    with client() as c:
        s = c.stats()
    if as_json:
        emit(s.model_dump(mode="json"))
        return
    click.echo("queue depth: " + ", ".join(f"{p} {n}" for p, n in s.queue_depth.items()))
    click.echo("jobs: " + ", ".join(f"{st} {n}" for st, n in s.by_status.items()))
    rate = "-" if s.success_rate_1h is None else f"{s.success_rate_1h:.1%}"
    click.echo(f"success rate (1 h): {rate}   throughput: {s.throughput_per_min:.1f}/min   "
               f"workers alive: {s.workers_alive}   dead letters: {s.dead_letter}   "
               f"re-runs after a lost worker (1 h): {s.lost_1h}")
    for name, load in s.queues.items():
        click.echo(f"queue {name}: {load.waiting} waiting, {load.running} running of {load.capacity} slots "
                   f"({load.workers} worker{'s' if load.workers != 1 else ''})")


@cli.command()
@click.option("--port", default=8501, show_default=True, help="Dashboard port.")
@click.option("--api-port", type=int, help="HTTP API port (default: TASKDECK_API_PORT, 8000).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Worker processes.")
@click.option("--ha", is_flag=True, help="Start a Redis primary, a replica and three sentinels (ports "
              "TASKDECK_LOCAL_REDIS_PORT to +4) instead of one Redis, to try a failover.")
@handle_errors
def up(port: int, api_port: int | None, workers: int, ha: bool) -> None:
    """Start Redis (unless REDIS_URL is set), workers, the dashboard and the HTTP API; Ctrl-C stops them all."""
    from .up import run

    sys.exit(run(port=port, workers=workers, api_port=api_port or Settings().api_port, ha=ha))


@cli.command()
@click.option("--host", help="Interface to serve on (default: TASKDECK_API_HOST, 127.0.0.1).")
@click.option("--port", type=int, help="Port (default: TASKDECK_API_PORT, 8000).")
def api(host: str | None, port: int | None) -> None:
    """Serve the HTTP API (docs at /docs, schema at /openapi.json)."""
    import uvicorn

    from ..api import create_app

    settings = Settings()
    uvicorn.run(create_app(settings), host=host or settings.api_host, port=port or settings.api_port,
                log_level="info", proxy_headers=False)


@cli.group()
def token() -> None:
    """Bearer tokens for the HTTP API."""


def on_store(work: Callable[[Store], Awaitable[T]]) -> T:
    async def run() -> T:
        settings = Settings()
        store = Store(connect(settings), settings)
        try:
            return await work(store)
        finally:
            await store.redis.aclose()
    return asyncio.run(run())


@token.command("create")
@click.option("--user", required=True, help="Whose jobs the token acts on.")
@click.option("--role", type=click.Choice([r.value for r in Role]),
              help="Default: the role TASKDECK_ROLES gives; never more than that, on every use.")
@click.option("--org", default="", help="The token's organisation, when TASKDECK_ORGS names none for its user.")
@json_flag
@handle_errors
def token_create(user: str, role: str | None, org: str, as_json: bool) -> None:
    """Make a token; it is shown once, only its hash is kept."""
    secret, record = on_store(lambda store: tokens.create(store, user, Role(role) if role else None, org))
    signing = on_store(lambda store: tokens.webhook_secret(store, record.id))
    if as_json:
        emit({"token": secret, "webhook_secret": signing, **record.model_dump(mode="json")})
        return
    click.echo(secret)
    click.echo(f"id {record.id}, for {record.user} as {record.role}; keep it safe: it is not shown again", err=True)
    click.echo(f"webhook secret {signing}: it signs the callbacks of jobs this token submits (callback_url); "
               "it is not shown again either", err=True)


@token.command("revoke")
@click.argument("token_id")
@handle_errors
def token_revoke(token_id: str) -> None:
    """Revoke the token with this id (see `token list`)."""
    record = on_store(lambda store: tokens.revoke(store, token_id))
    click.echo(f"revoked {record.id} ({record.user})")


@token.command("list")
@json_flag
@handle_errors
def token_list(as_json: bool) -> None:
    """Tokens by id, user and role (never the tokens themselves)."""
    records = sorted(on_store(tokens.all_tokens).values(), key=lambda t: t.created_at)
    if as_json:
        emit([t.model_dump(mode="json") for t in records])
        return
    for t in records:
        click.echo(f"{t.id}  {t.user}  {t.role}  {t.created_at:%Y-%m-%d %H:%M}")


def main() -> None:
    cli(prog_name="python -m runner")


@cli.group()
def llm() -> None:
    """The LLM that answers the generative types; the embedded demo model."""


@llm.command("serve")
@click.option("--port", type=click.IntRange(1, 65535), help="Port on 127.0.0.1 (default: the first free from 6392).")
@click.option("--threads", type=click.IntRange(1, 256), help="CPU threads (default: TASKDECK_LLM_EMBEDDED_THREADS).")
@click.option("--parallel", type=click.IntRange(1, 64),
              help="Requests computed at once; more wait their turn (default: TASKDECK_LLM_EMBEDDED_PARALLEL).")
@click.option("--fd", type=int, hidden=True, help="Serve on this inherited listening socket (workers, `up`).")
def llm_serve(port: int | None, threads: int | None, parallel: int | None, fd: int | None) -> None:
    """Serve the embedded demo model alone, an OpenAI-compatible endpoint on loopback; prints its URL."""
    import socket

    from ..llm import embedded
    from ..llm.serve import run

    overrides = {name: value for name, value in (("threads", threads), ("parallel", parallel)) if value}
    options = embedded.EmbeddedOptions(**overrides)  # type: ignore[arg-type]  # int options only; unset: the environment's
    if fd is None and (reason := embedded.not_installed(options)):
        click.echo(f"error: {reason}", err=True)
        sys.exit(1)
    try:
        sock = socket.socket(fileno=fd) if fd is not None else embedded.listen([port]) if port else embedded.listen()
    except OSError as e:
        click.echo(f"error: cannot listen on 127.0.0.1:{port or embedded.PORTS.start}: {e.strerror}; pass another "
                   "--port", err=True)
        sys.exit(1)
    sys.exit(run(options, sock, child=fd is not None))


@llm.command("status")
@json_flag
@handle_errors
def llm_status(as_json: bool) -> None:
    """Which model answers the generative types here, and how to point Taskdeck at another."""
    with client() as c:
        found = c.llm_status()
    if as_json:
        emit(found.model_dump(mode="json"))
        return
    click.echo(f"LLM: {found.description}")
    for line in (found.problem, found.hint):
        if line:
            click.echo(f"  {line}")


def llm_footer(settings: Settings) -> str:
    """The lines `types` ends with: which model answers the generative types, and how to change it."""
    from ..reads import llm_status as status

    found = status.source(settings)
    return "\n".join([f"\nLLM: {found.description}", *(f"  {line}" for line in (found.problem, found.hint) if line)])


def with_llm_footer(command: click.Command) -> None:
    """`types` (text output) also says which model answers the generative types (issue 21)."""
    listing = command.callback
    assert listing is not None

    @functools.wraps(listing)
    def callback(as_json: bool) -> None:
        listing(as_json=as_json)
        if not as_json:
            click.echo(llm_footer(Settings()))

    command.callback = callback


with_llm_footer(types)


@cli.group()
def archive() -> None:
    """The archive: every finished job kept in SQL (SQLite, or Postgres with TASKDECK_ARCHIVE_URL)."""


def archive_report(found: ArchiveReport) -> list[str]:
    """`archive status` as text: one line per fact."""
    size = "-" if found.size_bytes is None else f"{found.size_bytes / 1e6:,.1f} MB"
    revision = found.revision or "not migrated yet"
    lines = [f"archive: {found.backend} at {found.url}",
             f"  schema {revision}" + ("" if found.revision in (None, found.head) else f" (code's: {found.head})"),
             f"  jobs {found.rows:,}  audit entries {found.audit_rows:,}  size {size}",
             f"  oldest submitted {found.oldest_created or '-'}  newest finished {found.newest_finished or '-'}"]
    lag = "?" if found.backlog.lag is None else f"{found.backlog.lag:,}"
    lines.append(f"  backlog: {lag} events unread, {found.backlog.pending:,} pending")
    return lines


@archive.command("status")
@as_user
@json_flag
@handle_errors
def archive_status(acting: str | None, as_json: bool) -> None:
    """Backend, URL, schema revision, jobs archived, newest, size, and the feed's backlog."""
    with client(acting) as c:
        found = c.archive_status()
    if not found.ok:
        click.echo(f"error: {found.problem}", err=True)
        sys.exit(1)
    if as_json:
        emit(found.model_dump(mode="json"))
        return
    click.echo("\n".join(archive_report(found)))


@archive.command("backfill")
@as_user
@json_flag
@handle_errors
def archive_backfill(acting: str | None, as_json: bool) -> None:
    """Archive every finished job still in Redis (idempotent); prints how many were written."""
    with client(acting) as c:
        written = c.archive_backfill()
    emit({"archived": written}) if as_json else click.echo(f"archived {written} jobs")


@archive.command("prune")
@click.option("--before", required=True, metavar="YYYY-MM-DD", help="Delete the jobs finished before this day "
              "(UTC midnight).")
@as_user
@json_flag
@handle_errors
def archive_prune(before: str, acting: str | None, as_json: bool) -> None:
    """Delete archived jobs finished before a date (admins); prints how many."""
    with client(acting) as c:
        deleted = c.archive_prune(before)
    emit({"deleted": deleted, "before": before}) if as_json else click.echo(f"deleted {deleted} archived jobs "
                                                                             f"finished before {before}")


@cli.group("notifications", invoke_without_command=True)
@click.option("--unread", is_flag=True, help="Only unread ones.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500))
@click.option("--cursor", help="The `next_cursor` of the page before (with --json).")
@as_user
@json_flag
@click.pass_context
def notifications(ctx: click.Context, unread: bool, limit: int, cursor: str | None, acting: str | None,
                  as_json: bool) -> None:
    """Your inbox, newest first (reading it counts as looking); `notifications read` marks read."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(notifications_list, unread=unread, limit=limit, cursor=cursor, acting=acting, as_json=as_json)


@handle_errors
def notifications_list(unread: bool, limit: int, cursor: str | None, acting: str | None, as_json: bool) -> None:
    with client(acting) as c:
        found = c.notifications(limit=limit, cursor=cursor, unread=unread)
    if as_json:
        emit(found.model_dump(mode="json"))
        return
    click.echo(f"{found.unread} unread; {found.failed_since_looked} failed since you last looked")
    for item in found.items:
        click.echo(f"{'  ' if item.read else '* '}{item.created_at:%Y-%m-%d %H:%M:%S}  {item.title}  [{item.id}]")
        if item.body:
            click.echo(f"    {item.body}")
        if item.link:
            click.echo(f"    {c.settings.public_url.rstrip('/')}{item.link}")


@notifications.command("read")
@click.argument("ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Mark every notification read.")
@as_user
@json_flag
@handle_errors
def notifications_read(ids: tuple[str, ...], everything: bool, acting: str | None, as_json: bool) -> None:
    """Mark notifications read (their ids, or --all); prints how many are still unread."""
    if not ids and not everything:
        raise InvalidPayload("name the notifications to mark read, or pass --all")
    with client(acting) as c:
        left = c.mark_read("all" if everything else list(ids))
    emit({"unread": left}) if as_json else click.echo(f"{left} unread")


PROFILE_FIELDS = ("email", "webhook_url", "events", "via")


def profile_change(pairs: tuple[str, ...]) -> dict[str, Any]:
    """`--set k=v` pairs as set_profile's arguments: events and via comma-separated, an empty value clears."""
    change: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or name not in PROFILE_FIELDS:
            raise InvalidPayload(f"--set {pair!r}: write NAME=VALUE with NAME one of {', '.join(PROFILE_FIELDS)}")
        change[name] = words(value) if name in ("events", "via") else value.strip()
    return change


@cli.command("profile")
@click.option("--set", "pairs", multiple=True, metavar="NAME=VALUE", help="email=, webhook_url=, events=completed,"
              "failed, via=inbox,email,webhook; an empty value clears email and webhook_url. Repeat for more.")
@click.option("--rotate-secret", is_flag=True, help="Replace the webhook secret with a new one.")
@as_user
@json_flag
@handle_errors
def profile(pairs: tuple[str, ...], rotate_secret: bool, acting: str | None, as_json: bool) -> None:
    """Your notification profile: where notices go, and which job ends and channels by default."""
    with client(acting) as c:
        change = profile_change(pairs)
        found = c.set_profile(**change, rotate_secret=rotate_secret) if change or rotate_secret else c.profile()
    if as_json:
        emit(found.model_dump(mode="json"))
        return
    click.echo(f"user {found.user}\n  email {found.address}\n  webhook {found.webhook_url or '-'}\n"
               f"  by default: told when {' or '.join(found.events) or 'never'}, via {', '.join(found.via) or '-'}\n"
               f"  webhook secret {found.webhook_secret}")


@cli.command("openapi")
def openapi_document() -> None:
    """Print the HTTP API's OpenAPI document, as GET /openapi.json serves it: the task types are this
    deployment's (TASKDECK_TASK_MODULES). `./taskdeck openapi > docs/openapi.json` refreshes the snapshot."""
    from ..api import create_app

    emit(create_app(Settings()).openapi())


@cli.group(invoke_without_command=True)
@as_user
@json_flag
@click.pass_context
def alerts(ctx: click.Context, acting: str | None, as_json: bool) -> None:
    """Alert rules (admins): with no command, each rule and its state, like `alerts list`."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(alerts_list, acting=acting, as_json=as_json)


@alerts.command("list")
@as_user
@json_flag
@handle_errors
def alerts_list(acting: str | None, as_json: bool) -> None:
    """Each alert rule and its state: ok, pending, firing or resolved, and what it last saw."""
    with client(acting) as c:
        found = c.alerts()
    if as_json:
        emit([alert.model_dump(mode="json") for alert in found])
        return
    for alert in found:
        rule, status = alert.rule, alert.status
        params = " ".join(f"{k}={v}" for k, v in rule.params.items())
        since = f" since {status.since:%Y-%m-%d %H:%M:%S}" if status.since and status.state != "ok" else ""
        click.echo(f"{rule.id}  {rule.name}  [{status.state}{since}]{'' if rule.enabled else '  (disabled)'}")
        click.echo(f"  {rule.kind} {params}  for {rule.for_s:g} s  repeat {rule.repeat_s:g} s  to "
                   f"{', '.join(f'{t.channel}:{t.address}' for t in rule.targets) or '-'}")
        if status.detail:
            click.echo(f"  {status.detail}")


def key_values(pairs: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidPayload(f"--param {pair!r}: write NAME=VALUE")
        found[key.strip()] = value.strip()
    return found


@alerts.command("set")
@click.option("--kind", required=True, help="queue_depth, failure_rate, no_worker, job_stalled, breaker_open, "
              "source_unhealthy or llm_spend.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="A parameter of the kind, e.g. over=50 "
              "(queue_depth), over_pct=10 window_s=900 min_count=10 type=T (failure_rate), budget_usd=20 (llm_spend).")
@click.option("--to", "targets", multiple=True, metavar="CHANNEL:ADDRESS,...", help="Where to send: inbox:EMAIL, "
              "email:EMAIL, slack:URL, webhook:URL; comma-separated, or repeat --to.")
@click.option("--for", "for_s", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Seconds the condition must hold before it fires.")
@click.option("--repeat", "repeat_s", type=click.FloatRange(min=0), default=3600, show_default=True,
              help="While firing, say it again after this many seconds; 0: never.")
@click.option("--name", default="", help="Shown in every message (default: the kind).")
@click.option("--id", "rule_id", help="Replace the rule with this id (default: a new rule).")
@click.option("--disabled", is_flag=True, help="Save it switched off.")
@click.option("--webhook-secret", help="The whsec_ secret the webhook targets' deliveries are signed with "
              "(default: unsigned).")
@as_user
@json_flag
@handle_errors
def alerts_set(kind: str, params: tuple[str, ...], targets: tuple[str, ...], for_s: float, repeat_s: float, name: str,
               rule_id: str | None, disabled: bool, webhook_secret: str | None, acting: str | None,
               as_json: bool) -> None:
    """Add or replace an alert rule; prints its id."""
    from ..notify import rules
    from ..notify.model import Channel

    to = [rules.parse_target(part) for text in targets for part in text.split(",") if part.strip()]
    to = [t.model_copy(update={"secret": webhook_secret}) if t.channel is Channel.webhook else t for t in to]
    fields = {"targets": to, "for_s": for_s, "repeat_s": repeat_s, "name": name, "enabled": not disabled}
    found = rules.rule(kind, key_values(params), **fields, **({"id": rule_id} if rule_id else {}))
    with client(acting) as c:
        saved = c.set_alert_rule(found)
    emit(saved.model_dump(mode="json")) if as_json else click.echo(saved.id)


@alerts.command("delete")
@click.argument("rule_id")
@as_user
@json_flag
@handle_errors
def alerts_delete(rule_id: str, acting: str | None, as_json: bool) -> None:
    """Delete an alert rule and its state."""
    with client(acting) as c:
        c.delete_alert_rule(rule_id)
    emit({"deleted": rule_id}) if as_json else click.echo(f"deleted {rule_id}")


@cli.group("schedule", invoke_without_command=True)
@as_user
@json_flag
@click.pass_context
def schedule(ctx: click.Context, acting: str | None, as_json: bool) -> None:
    """Cron schedules: with no command, each one, like `schedule list`."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(schedule_list, acting=acting, as_json=as_json)


@schedule.command("list")
@as_user
@json_flag
@handle_errors
def schedule_list(acting: str | None, as_json: bool) -> None:
    """Each schedule: type, cron, paused or not, next run, last run and its outcome."""
    with client(acting) as c:
        found = c.schedules()
    if as_json:
        emit([item.model_dump(mode="json") for item in found])
        return
    for item in found:
        state = "paused" if item.paused else f"next {item.next_run_at:%Y-%m-%d %H:%M:%S}" if item.next_run_at else "-"
        last = f"last {item.last_run_at:%Y-%m-%d %H:%M:%S} ({item.last_outcome or '-'})" if item.last_run_at else ""
        click.echo(f"{item.name}  {item.type}  '{item.cron}'  {state}  {last}".rstrip())


@schedule.command("add")
@click.argument("name")
@click.argument("type_", metavar="TYPE")
@click.argument("cron")
@click.option("--payload", default="{}", show_default=True, help="JSON payload, @file, or - for stdin.")
@click.option("--priority", type=click.Choice([p.value for p in Priority]), default=Priority.normal.value)
@click.option("--owner", help="Who its runs belong to (default: the scheduler's own account).")
@click.option("--paused", is_flag=True, help="Save it paused.")
@as_user
@json_flag
@handle_errors
def schedule_add(name: str, type_: str, cron: str, payload: str, priority: str, owner: str | None, paused: bool,
                 acting: str | None, as_json: bool) -> None:
    """Add a schedule, or replace the one named NAME (admins): TYPE run with PAYLOAD on CRON."""
    try:
        data = orjson.loads(read_payload(payload, Settings().max_payload_bytes))
        item = Schedule.model_validate({"name": name, "type": type_, "payload": data, "cron": cron,
                                        "priority": priority, "paused": paused, **({"owner": owner} if owner else {})})
    except orjson.JSONDecodeError as e:
        raise InvalidPayload(f"--payload is not JSON: {e}") from None
    except ValidationError as e:
        raise InvalidPayload("schedule: " + "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}"
                                                      for err in e.errors())) from None
    with client(acting) as c:
        saved = c.save_schedule(item)
    emit(saved.model_dump(mode="json")) if as_json else click.echo(f"{saved.name}: next run {saved.next_run_at}")


def schedule_change(action: str) -> click.Command:
    """`schedule pause|resume|run|delete NAME`."""

    @click.argument("name")
    @as_user
    @json_flag
    @handle_errors
    def change(name: str, acting: str | None, as_json: bool) -> None:
        with client(acting) as c:
            if action == "delete":
                c.delete_schedule(name)
                result: dict[str, Any] = {"deleted": name}
            elif action == "run":
                result = {"name": name, "job_id": c.run_schedule(name).id}
            else:
                result = c.pause_schedule(name, paused=action == "pause").model_dump(mode="json")
        emit(result) if as_json else click.echo(f"{action}: {name}" + (f" -> job {result['job_id']}"
                                                                       if action == "run" else ""))

    change.__doc__ = {"pause": "Pause a schedule (admins).", "resume": "Resume a paused schedule (admins).",
                      "run": "Run a schedule now, unless its previous run is still active (admins).",
                      "delete": "Delete a schedule (admins)."}[action]
    return click.command(action)(change)


for _action in ("pause", "resume", "run", "delete"):
    schedule.add_command(schedule_change(_action))
