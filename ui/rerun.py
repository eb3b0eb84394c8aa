"""Reruns on the Job page (issue 15): where a rerun came from and what it reused, and the "Rerun from a step"
form that runs a finished job again as a new job (`Client.retry(id, from_step=..., payload=...)`), reusing the
checkpoints the old job made before that step."""
from __future__ import annotations

import json
from typing import Any

import streamlit as st

from runner import Client, Job, TaskdeckError, registry
from runner.models import StepStatus

from .alerts import alert
from .text import Markdown, job_link, joined, md, short, trusted

PAYLOAD_LINES = 12


def declared_steps(job: Job) -> list[str]:
    """The steps its task type declares; none when the type is not registered here any more."""
    try:
        return list(registry.get(job.type).steps)
    except TaskdeckError:
        return []


def started_from(job: Job, declared: list[str]) -> str | None:
    """The step a rerun computes again from: the first declared step it reused no checkpoint of. The record
    names what was reused, not the `from_step` asked for; work before this step came from the old job, work from
    it on runs again. None when the type declares no steps or every one was reused."""
    reused = set(job.reused_steps)
    return next((name for name in declared if name not in reused), None)


def lineage(job: Job, declared: list[str]) -> Markdown | None:
    """"Rerun of <link> from step X; reused: A, B" for a job made by a rerun, None for any other."""
    if not job.rerun_of:
        return None
    old = job_link(job.rerun_of, f"job {short(job.rerun_of)}") or md("{}", job.rerun_of)
    step = started_from(job, declared)
    where = md(" from step {}", step) if step else trusted("")
    reused = joined([md("{}", name) for name in job.reused_steps]) or trusted("nothing")
    return md("Rerun of {}{}; reused: {}", old, where, reused)


def show_lineage(job: Job) -> None:
    line: Markdown | None = lineage(job, declared_steps(job))
    if line:
        st.markdown(line)


def parse_payload(text: str) -> dict[str, Any] | Markdown:
    """The edited payload, or why it cannot be sent (a Markdown message)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        return md("The payload is not valid JSON ({} at line {}, column {}); nothing was submitted.",
                  e.msg, e.lineno, e.colno)
    if not isinstance(data, dict):
        return md("The payload must be a JSON object ({{...}}), not {}; nothing was submitted.",
                  type(data).__name__)
    return data


def step_choices(job: Job) -> list[str]:
    """The type's declared steps; for a type that declares none, the steps the job's last attempt ran."""
    return declared_steps(job) or list(dict.fromkeys(step.name for step in job.steps))


def first_failed(job: Job, choices: list[str]) -> int:
    """Where the form starts: the step the job failed in, when it is one of the choices, else the first."""
    failed = next((step.name for step in job.steps if step.status is StepStatus.failed), None)
    return choices.index(failed) if failed in choices else 0


def rerun_form(c: Client, job: Job) -> None:
    """The form, for a finished job whose viewer may retry it (the page decides that)."""
    choices = step_choices(job)
    with st.expander("Rerun from a step", icon=":material/fast_rewind:"):
        st.caption("Runs this job again as a new job, with the payload below: checkpoints this job made before the "
                   "chosen step are reused, everything from that step on runs again. This job is left as it is.")
        with st.form(f"rerun_{job.id}", border=False):
            step = st.selectbox("From step", choices, index=first_failed(job, choices)) if choices else None
            text = st.text_area("Payload (JSON)", value=json.dumps(job.payload, indent=2, ensure_ascii=False),
                                height=min(PAYLOAD_LINES, 2 + len(job.payload)) * 24 + 20)
            sent = st.form_submit_button("Rerun", type="primary", icon=":material/replay:")
        if sent:
            rerun(c, job, step, text)


def refuse(why: Markdown) -> None:
    st.error(why, icon=":material/data_object:")


def rerun(c: Client, job: Job, step: str | None, text: str) -> None:
    payload = parse_payload(text)
    if isinstance(payload, Markdown):
        refuse(payload)
        return
    try:
        new = c.retry(job.id, from_step=step, payload=payload)
    except TaskdeckError as e:
        alert(e)
        return
    st.success(md("Rerun queued as job {}; reused: {}", new.id,
                  joined([md("{}", name) for name in new.reused_steps]) or trusted("nothing")),
               icon=":material/check_circle:")
    st.page_link("app_pages/job.py", label=md("Open job {}", short(new.id)), icon=":material/open_in_new:",
                 query_params={"id": new.id})
