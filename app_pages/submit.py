"""Submit: pick a task type; its form is built from the payload model's JSON schema (ui/forms.py).
`?from=ID` opens it filled in with that job's inputs ("retry with edited inputs"). "Notify me" says which ends
of the job to be told of and how (defaults: the Profile's), and an optional callback URL gets the final record."""
from __future__ import annotations

from typing import get_args

import streamlit as st

from runner import InvalidPayload, JobNotFound, Priority, TaskdeckError
from runner.notify.profile import JobEnd, Profile, Via
from runner.policy.access import Action
from runner.policy.admission import unavailable_reason
from ui.alerts import alert
from ui.forms import Form, errors_by_field
from ui.session import client
from ui.text import job_link, md, short, trusted

NOTICE_FIELDS = ("notify", "callback_url")  # InvalidPayload about these is not about the payload


def notify_options(profile: Profile) -> tuple[list[JobEnd], list[Via], str]:
    """The "Notify me" part of the form, filled with the profile's defaults."""
    with st.expander("Notify me", icon=":material/notifications:"):
        events: list[JobEnd] = st.multiselect("When the job", list(get_args(JobEnd)), key="notify_events",
                                              help="Your Profile's defaults to start with; empty: no notice")
        via: list[Via] = st.multiselect("Through", list(get_args(Via)), key="notify_via",
                                        help="email: to your Profile's address; webhook: your Profile's webhook URL")
        callback = st.text_input("Callback URL (optional)", key="callback_url",
                                 placeholder="https://service.example.com/taskdeck-callback",
                                 help="When the job ends, its final record is POSTed here, signed with your webhook "
                                 "secret (Standard Webhooks, see your Profile); retried for a day")
    return events, via, callback


def notify_choice(profile: Profile, events: list[JobEnd], via: list[Via]) -> dict[str, list[str]] | None:
    """What to pass as `notify`: None while it is the profile's defaults, so the profile decides when the job ends."""
    if (sorted(events), sorted(via)) == (sorted(profile.events), sorted(profile.via)):
        return None
    return {"events": list(events), "via": list(via)}

c = client()
state = st.session_state
if not c.principal.can(Action.submit):
    st.title("Submit a job")
    st.warning(trusted(f"Your role ({c.principal.role.value}) reads jobs and metrics but does not submit jobs; ask "
                       "an admin if you need to."), icon=":material/lock:")
    st.stop()
unavailable = {t.name: unavailable_reason(t, c.settings) for t in c.types()}
types = {t.name: t for t in sorted(c.types(), key=lambda t: unavailable[t.name] is not None)}
source = None
if source_id := st.query_params.get("from"):
    try:
        source = c.get(source_id)
    except JobNotFound as e:
        alert(e, "warning", icon=":material/search_off:")

st.title("Submit a job")
if source and state.get("prefilled_from") != source.id:
    for key in [k for k in state if str(k).startswith(f"payload:{source.type}.")]:
        del state[key]
    state["submit_type"], state["prefilled_from"] = source.type, source.id
    state[f"priority:{source.type}"] = source.priority.value

name = st.selectbox("Task type", list(types), key="submit_type",
                    format_func=lambda n: (f"{n} — {types[n].description}" if types[n].description else n)
                    + (" (not set up here)" if unavailable[n] else ""))
task_type = types[name]
if source and source.type == name:
    st.info(md("Pre-filled from job {} ({}); edit and submit to run it again as a new job.", short(source.id),
               source.status.value), icon=":material/edit_note:")
reason = unavailable[name]
if reason:
    st.warning(trusted(reason), icon=":material/block:")

errors = state.get("submit_errors", {}).get(name, {})
profile = c.profile()
state.setdefault("notify_events", list(profile.events))
state.setdefault("notify_via", list(profile.via))
with st.form(f"submit:{name}", border=True):
    initial = source.payload if source and source.type == name else None
    form = Form(task_type.schema(), f"payload:{name}", errors, initial)
    payload = form.render()
    state.setdefault(f"priority:{name}", task_type.priority.value)
    priority = st.selectbox("Priority", [p.value for p in Priority], key=f"priority:{name}")
    events, via, callback = notify_options(profile)
    sent = st.form_submit_button("Submit job", type="primary", icon=":material/send:", disabled=reason is not None)

if sent:
    state.setdefault("submit_errors", {})[name] = {}
    if form.invalid:
        state["submit_errors"][name] = form.invalid
        st.rerun()
    try:
        job = c.submit(name, payload, priority=priority, notify=notify_choice(profile, events, via),
                       callback_url=callback.strip() or None)
    except InvalidPayload as e:
        if str(e).startswith(NOTICE_FIELDS):
            alert(e)
        else:
            state["submit_errors"][name] = errors_by_field(e.errors) or {"": [str(e)]}
            st.rerun()
    except TaskdeckError as e:
        alert(e)
    else:
        state["submitted"] = job.id
        st.toast(md("Job {} submitted · {}", short(job.id), job_link(job.id)),
                 icon=":material/check_circle:")

if last := state.get("submitted"):
    st.success(md("Submitted job {}.", last), icon=":material/check_circle:")
    st.page_link("app_pages/job.py", label="Open the job", icon=":material/open_in_new:", query_params={"id": last})
