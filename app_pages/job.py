"""Job: one job's whole story (`/job?id=ID`): status, steps across attempts, output, payload,
attempts with errors and tracebacks, audit, and the delivery log of its notices and callback (for its owner and
admins, when there is one); cancel and retry. Live while the job runs. A job read from
the archive (Redis no longer holds it) has an "archived" badge and is read-only: no cancel, no retry,
but "Retry with edited inputs" submits it again as a new job. A finished job can be rerun from a step, with an
edited payload (a new job that reuses its checkpoints before that step); a rerun says which job it reruns and
marks the steps it reused. Spend caps show beside tokens and cost."""
from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from runner import Job, JobNotFound, TaskdeckError, registry
from runner.client.archived import Found
from runner.models import utcnow
from runner.notify.outbox import DeliveryAttempt
from runner.policy.access import Action
from runner.policy.admission import needs_llm
from ui import charts
from ui.alerts import BadgeColor, alert, message
from ui.rerun import rerun_form, show_lineage
from ui.session import client, guard
from ui.tables import elapsed
from ui.text import Markdown, ago, md, seconds, short, trusted, until

RESULT_SHOWN_CHARS = 50_000
TABS = ["Steps", "Output", "LLM usage", "Payload", "Attempts", "Audit"]
STATUS_COLORS: dict[str, BadgeColor] = {"queued": "gray", "processing": "blue", "retrying": "orange",
                                         "completed": "green", "failed": "red", "cancelled": "violet"}

c = client()
job_id = st.query_params.get("id", "").strip()


def pick() -> None:
    st.title("Job")
    entered = st.text_input("Job id", placeholder="32 hex characters, as in a job link")
    if entered:
        st.query_params["id"] = entered.strip()
        st.rerun()
    st.caption("Recent jobs")
    for job in c.list(limit=10):
        st.page_link("app_pages/job.py", label=trusted(f"{short(job.id)} · {job.type} · {job.status.value}"),
                     query_params={"id": job.id})


def mine(job: Job, archived: bool) -> bool:
    """The viewer acts on this job (theirs, or they are an admin); an archived job is read-only: Redis no longer
    holds it."""
    return c.principal.acts_on(job.user_id) and not archived


def may_retry(job: Job, archived: bool) -> bool:
    return c.principal.can(Action.retry) and mine(job, archived)


def actions(job: Job, archived: bool) -> None:
    me = c.principal
    left, middle, right, _ = st.columns([1.2, 1.2, 2, 4])
    if me.can(Action.cancel) and mine(job, archived) and left.button("Cancel", icon=":material/cancel:",
                                                                     disabled=job.status.terminal):
        act(lambda: c.cancel(job.id), trusted("Cancel requested"))
    if may_retry(job, archived) and middle.button(
            "Retry", icon=":material/replay:", disabled=job.status.value not in ("failed", "cancelled")):
        act(lambda: c.retry(job.id), trusted("Queued again"))
    if me.can(Action.submit):
        right.page_link("app_pages/submit.py", label="Retry with edited inputs", icon=":material/edit_note:",
                        query_params={"from": job.id}, disabled=not job.status.terminal)


def act(action: Callable[[], Job], done: Markdown) -> None:
    try:
        job = action()
    except TaskdeckError as e:
        st.toast(message(e), icon=":material/error:")
        return
    st.toast(md("{}: job is {}", done, job.status.value), icon=":material/check_circle:")
    st.rerun()


def story() -> None:
    with guard(reconnect=False):
        found = c.job_or_archived(job_id)
        job = found.job
        if running and job.status.terminal:
            st.rerun()
        now = utcnow()
        overview(job, now, found.archived)
        sent = deliveries_of(job)
        labels: list[Markdown] = [trusted(name) for name in [*TABS, *(["Deliveries"] if sent else [])]]
        steps, output, usage, payload, attempts, audit, *more = st.tabs(labels)
        with steps:
            show_steps(job, now)
        with output:
            show_output(job, found.archived)
        with usage:
            show_usage(job, found)
        with payload:
            st.json(job.payload)
        with attempts:
            show_attempts(job)
        with audit:
            show_audit(job, found)
        for deliveries in more:
            with deliveries:
                show_deliveries(sent)


def overview(job: Job, now: datetime, archived: bool) -> None:
    color = STATUS_COLORS.get(job.status.value, "gray")
    if archived:  # the two badges on one line, as st.badge writes each
        st.markdown(trusted(f":{color}-badge[{job.status.value}] :gray-badge[:material/inventory_2: archived]"))
        st.caption("Read from the archive: Redis no longer holds this job, so it is read-only. \"Retry with "
                   "edited inputs\" submits it again as a new job.")
    else:
        st.badge(trusted(job.status.value), color=color)
    cols = st.columns(5)
    cols[0].metric("Progress", md("{:.0f} %", job.progress), border=True)
    cols[1].metric("Attempts", md("{} of {}", job.attempts, job.max_attempts), border=True)
    cols[2].metric("Elapsed", seconds(elapsed(job, now)), border=True)
    if job.status.terminal:
        cols[3].metric("Finished", ago(job.completed_at, now), border=True)
    else:
        cols[3].metric("ETA", until(job.eta, now) if job.eta else "—", border=True)
    cols[4].metric("Priority", trusted(job.priority.value), border=True)
    if not job.status.terminal:
        st.progress(min(1.0, job.progress / 100),
                    text=md("{}", job.current_step) if job.current_step else trusted(job.status.value))
    if reason := getattr(job, "waiting_reason", None):
        st.info(md("{}", reason), icon=":material/pause_circle:")
    if job.next_attempt_at and job.status.value == "retrying":
        st.caption(md("Next attempt {}.", until(job.next_attempt_at, now)))
    if job.last_error:
        st.caption("Last error")
        st.code(job.last_error, language=None, wrap_lines=True)
    if uses_llm(job) or job.max_tokens is not None or job.max_cost_usd is not None:
        cols = st.columns(5)
        cols[0].metric("Tokens in", md("{:,}", job.tokens_in), border=True)
        cols[1].metric("Tokens out", md("{:,}", job.tokens_out), border=True)
        cols[2].metric("Cost", md("${:,.4f}", job.cost_usd), border=True, help="From TASKDECK_LLM_PRICES, all attempts")
        show_caps(job, cols[3], cols[4])


def show_caps(job: Job, tokens: DeltaGenerator, cost: DeltaGenerator) -> None:
    """The job's spend caps, when it has them: past one the job fails with "budget exceeded"."""
    if job.max_tokens is not None:
        tokens.metric("Token cap", md("{:,}", job.max_tokens), border=True,
                      help=md("Tokens in + out over all attempts; used {:,}. Past the cap the job fails with "
                              "\"budget exceeded\"; a retry with a higher cap resumes it.",
                              job.tokens_in + job.tokens_out))
    if job.max_cost_usd is not None:
        cost.metric("Cost cap", md("${:,.4f}", job.max_cost_usd), border=True,
                    help=md("Cost over all attempts; used ${:,.4f}. Past the cap the job fails with "
                            "\"budget exceeded\".", job.cost_usd))


def uses_llm(job: Job) -> bool:
    if job.tokens_in or job.tokens_out or job.cost_usd:
        return True
    try:
        return needs_llm(registry.get(job.type))
    except TaskdeckError:
        return False


def show_usage(job: Job, found: Found) -> None:
    used = found.usage or c.job_usage(job.id)
    if not used.calls and not used.steps:
        st.caption("No LLM calls." if job.status.terminal or not uses_llm(job) else "No LLM call has finished yet.")
        return
    st.markdown("**Per step**")
    st.dataframe([{"Step": u.step, "Calls": u.calls, "Tokens in": u.tokens_in, "Tokens out": u.tokens_out,
                   "Cost": u.cost_usd} for u in used.steps], hide_index=True, width="stretch",
                 column_config={"Cost": st.column_config.NumberColumn("Cost", format="$%.4f")})
    st.markdown(md("**Calls** ({}, oldest first)", len(used.calls)))
    st.dataframe([{"At": call.at, "Step": call.step or "", "Part": call.part or "", "Model": call.model,
                   "Tokens in": call.tokens_in, "Tokens out": call.tokens_out, "Cost": call.cost_usd,
                   "Seconds": round(call.seconds, 2), "Tries": call.tries, "Throttled": call.throttled,
                   "Estimated": call.estimated, "Finish": call.finish_reason or ""} for call in used.calls],
                 hide_index=True, width="stretch", column_config={
                     "At": st.column_config.DatetimeColumn("At", format="HH:mm:ss"),
                     "Cost": st.column_config.NumberColumn("Cost", format="$%.6f"),
                     "Estimated": st.column_config.CheckboxColumn(
                         "Estimated", help="The endpoint reported no usage; tokens counted as characters / 4")})


def show_steps(job: Job, now: datetime) -> None:
    frame = charts.attempts_steps(job, now)
    if frame.empty:
        st.caption("No steps reported yet.")
        return
    figure = charts.steps_timeline(frame)
    if figure is not None:
        st.plotly_chart(figure, width="stretch", key="steps_timeline")
    columns = ["Attempt", "Name", "Status", "Progress", "Started", "Finished", "Error"]
    if job.reused_steps:  # a rerun: these steps' checkpoints came from the job it reruns, they did not run again
        frame = frame.assign(Reused=frame["Name"].map(lambda name: "reused" if name in job.reused_steps else ""))
        columns.insert(3, "Reused")
    st.dataframe(frame[columns], hide_index=True,
                 width="stretch", column_config={
                     "Progress": st.column_config.ProgressColumn("Progress", min_value=0.0, max_value=1.0,
                                                                 format="percent"),
                     "Started": st.column_config.DatetimeColumn("Started", format="HH:mm:ss.SSS"),
                     "Finished": st.column_config.DatetimeColumn("Finished", format="HH:mm:ss.SSS")})


def show_output(job: Job, archived: bool) -> None:
    if job.partial:
        st.markdown("**Streamed output**")
        st.caption("Kept from the run." if job.status.terminal else "As the job writes it; refreshed every second.")
        st.code(job.partial, language=None, wrap_lines=True, height=300)
    if job.result is None:
        if not job.partial:
            st.caption("No output yet." if not job.status.terminal else "No result.")
        return
    st.caption("Result")
    if isinstance(job.result, dict) and "artifact" in job.result:
        st.caption(md("Large result kept as an artifact ({} bytes); preview:", job.result.get("bytes", 0)))
        st.code(str(job.result.get("preview", "")), language="json", wrap_lines=True)
        if archived:
            st.caption("The full result was kept beside the job in Redis, which no longer holds it; the archive "
                       "keeps this preview.")
            return
        st.download_button("Download the full result (JSON)", data=lambda: c.artifact(job.id) or "",
                           file_name=f"{job.id}.json", mime="application/json", icon=":material/download:",
                           on_click="ignore")
        return
    text = json.dumps(job.result, indent=2, ensure_ascii=False)
    if len(text) <= RESULT_SHOWN_CHARS:
        st.json(job.result, expanded=2)
    else:
        st.code(text[:RESULT_SHOWN_CHARS] + "\n…", language="json")
    st.download_button("Download result (JSON)", data=text, file_name=f"{job.id}.json", mime="application/json",
                       icon=":material/download:", on_click="ignore")


def show_attempts(job: Job) -> None:
    if not job.attempt_log:
        st.caption("No attempt has finished yet.")
    for attempt in reversed(job.attempt_log):
        start, end = attempt.started_at, attempt.finished_at
        took = (end - start).total_seconds() if start and end else None
        with st.container(border=True):
            st.markdown(md("**Attempt {}** · {} · {}", attempt.number, attempt.outcome, seconds(took))
                        + (md(" · worker {}", attempt.worker) if attempt.worker else ""))
            if attempt.error:
                st.code(attempt.error, language=None, wrap_lines=True)
            if attempt.traceback:
                with st.expander("Traceback"):
                    st.code(attempt.traceback, language="python")


def show_audit(job: Job, found: Found) -> None:
    if found.audit:
        show_archived_audit(found.audit)
        return
    rows: list[tuple[str, str, datetime | None]] = [
        ("Submitted", job.user_id + (f" (org {job.org_id})" if job.org_id else ""), job.queued_at)]
    if job.cancel_requested_by:
        rows.append(("Cancel requested", job.cancel_requested_by, job.cancel_requested_at))
    if job.retried_by:
        rows.append((f"Retried from {job.retried_from or '?'}", job.retried_by, job.retried_at))
    if job.worker:
        rows.append(("Last worker", job.worker, job.started_at))
    when = st.column_config.DatetimeColumn("When", format="YYYY-MM-DD HH:mm:ss")
    st.dataframe([{"What": what, "Who": who, "When": at} for what, who, at in rows], hide_index=True, width="stretch",
                 column_config={"When": when})


def show_archived_audit(entries: list[dict[str, Any]]) -> None:
    """The job's audit entries as the archive keeps them: who submitted, cancelled and retried it."""
    when = st.column_config.DatetimeColumn("When", format="YYYY-MM-DD HH:mm:ss")
    st.dataframe([{"What": entry.get("action", ""), "Who": entry.get("by", ""),
                   "When": datetime.fromisoformat(entry["at"]) if entry.get("at") else None} for entry in entries],
                 hide_index=True, width="stretch", column_config={"When": when})


def deliveries_of(job: Job) -> list[DeliveryAttempt]:
    """The job's delivery log; none for whoever may not see it (runner answers as for a missing job)."""
    try:
        return c.deliveries(job.id)
    except JobNotFound:
        return []


def show_deliveries(sent: list[DeliveryAttempt]) -> None:
    st.caption("Every attempt to deliver this job's notices and its callback, oldest first. A failed attempt is "
               "retried with backoff (TASKDECK_NOTIFY_BACKOFF_S, doubling) for TASKDECK_NOTIFY_RETRY_FOR_S, then "
               "given up; it never touches the job.")
    when = st.column_config.DatetimeColumn("When", format="YYYY-MM-DD HH:mm:ss")
    st.dataframe([{"When": a.at, "Channel": a.channel.value, "To": a.to, "What": a.what, "Attempt": a.attempt,
                   "Status": a.outcome, "Code or error": a.detail, "Next attempt": a.next_at} for a in sent],
                 hide_index=True, width="stretch", column_config={
                     "When": when, "Next attempt": st.column_config.DatetimeColumn("Next attempt",
                                                                                   format="YYYY-MM-DD HH:mm:ss")})


if not job_id:
    pick()
    st.stop()
try:
    opened = c.job_or_archived(job_id)
except JobNotFound as e:
    st.title("Job")
    alert(e, "warning", icon=":material/search_off:")
    st.stop()
current = opened.job
st.title(trusted(f"{current.type} · {short(current.id)}"))
st.caption(md("Job {}", current.id))
show_lineage(current)
actions(current, opened.archived)
running = not current.status.terminal
st.fragment(story, run_every=1 if running else None)()
if current.status.terminal and may_retry(current, opened.archived):  # below the steps it offers to rerun from
    rerun_form(c, current)
