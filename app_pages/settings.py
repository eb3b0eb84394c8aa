"""Settings (admins only): running-limit overrides per user, org and type beside the configured defaults;
schedules (add or replace with a form built from the type's schema, pause/resume, run now, delete); alert
rules (add, edit, delete: kind, parameters from the kind's model, targets, for, repeat, enabled); and
the audit log. Every change goes through runner's Client, which checks the role again and audits it."""
from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import streamlit as st
from pydantic import ValidationError

from runner import InvalidPayload, Priority, TaskdeckError
from runner.client.schedules import Schedule
from runner.models import utcnow
from runner.notify import rules as rulebook
from runner.notify.alerts import Alert
from runner.notify.model import Channel, Target
from runner.notify.rules import AlertRule
from runner.policy.access import Action
from runner.policy.admission import unavailable_reason
from ui.alerts import alert, message
from ui.forms import Form, errors_by_field
from ui.session import client
from ui.text import Markdown, ago, duration, md, trusted, until

KINDS = {"user": "User (email)", "org": "Organisation", "type": "Task type"}
AUDIT_SIZES = [100, 500, 2000]

c, state = client(), st.session_state
st.title("Settings")
if not c.principal.can(Action.settings):
    st.warning(trusted(f"Settings are for admins only; your role is {c.principal.role.value}. Ask an admin to "
                       "change limits or schedules."), icon=":material/lock:")
    st.stop()


def flash(said: Markdown, ok: bool = True) -> None:
    state.settings_flash = (said, ok)


def attempt(action: Callable[[], object], done: Markdown) -> bool:
    try:
        action()
    except TaskdeckError as e:
        flash(message(e), ok=False)
        return False
    flash(done)
    return True


def show_flash(said: Markdown, ok: bool) -> None:
    """The outcome of the last action: a toast, and an error box too when it failed."""
    st.toast(said, icon=":material/check_circle:" if ok else ":material/error:")
    if not ok:
        st.error(said, icon=":material/error:")


if shown := state.pop("settings_flash", None):
    show_flash(*shown)


def defaults() -> list[dict[str, Any]]:
    s = c.settings
    rows = [("user", "every user", s.max_running_per_user, "TASKDECK_MAX_RUNNING_PER_USER"),
            ("org", "every organisation", s.max_running_per_org, "TASKDECK_MAX_RUNNING_PER_ORG"),
            ("global", "all jobs together", s.max_running_global, "TASKDECK_MAX_RUNNING_GLOBAL")]
    rows += [("type", name, value, "TASKDECK_MAX_RUNNING_PER_TYPE") for name, value in
             sorted(s.max_running_per_type.items())]
    return [{"Scope": kind, "Applies to": who, "Running at most": "no limit" if value is None else str(value),
             "Set by": setting} for kind, who, value, setting in rows]


def default_for(kind: str, name: str) -> str:
    s = c.settings
    value = {"user": s.max_running_per_user, "org": s.max_running_per_org,
             "type": s.max_running_per_type.get(name)}[kind]
    return "no limit" if value is None else str(value)


def limits() -> None:
    st.markdown("**Configured defaults** (environment or `.env`; change them there and restart the workers)")
    st.dataframe(pd.DataFrame(defaults()), hide_index=True, width="stretch")
    overrides = c.limits()
    st.markdown("**Overrides** (set here, used by the workers at once; jobs waiting on that scope go back to the "
                "queue and take the freed slots)")
    if overrides:
        rows = []
        for field, value in sorted(overrides.items()):
            kind, _, name = field.partition(":")
            rows.append({"Scope": kind, "Name": name, "Running at most": value, "Default": default_for(kind, name)})
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="limits_table")
    else:
        st.caption("No overrides: the defaults above apply.")

    with st.container(border=True):
        st.markdown("**Set or remove an override**")
        left, middle, right = st.columns([2, 4, 2])
        kind = left.selectbox("Scope", list(KINDS), format_func=KINDS.__getitem__, key="limit_kind")
        if kind == "type":
            name = middle.selectbox("Task type", [t.name for t in c.types()], key="limit_type")
        else:
            name = middle.text_input("Email" if kind == "user" else "Organisation", key=f"limit_name_{kind}",
                                     placeholder="a@x.io" if kind == "user" else "acme").strip()
            name = name.lower() if kind == "user" else name
        value = right.number_input("Running at most", min_value=0, step=1, value=1, key="limit_value",
                                   help="0 holds every new job of that scope in the waiting room")
        save, remove, _ = st.columns([2, 2, 6])
        if save.button("Save override", type="primary", icon=":material/save:", key="limit_save"):
            if not name:
                st.error("Say which user or organisation the limit is for.", icon=":material/error:")
            elif attempt(lambda: c.set_limit(kind, name, int(value)), md("Limit {}:{} = {}", trusted(kind), name,
                                                                          int(value))):
                st.rerun()
        if remove.button("Remove override", icon=":material/delete:", key="limit_remove",
                         disabled=f"{kind}:{name}" not in overrides) and attempt(
                lambda: c.set_limit(kind, name, None), md("Override {}:{} removed", trusted(kind), name)):
            st.rerun()


def load_schedule(schedule: Schedule) -> None:
    """Fill the add/replace form with `schedule` (a button's callback, so before the widgets exist)."""
    for key in [k for k in state if str(k).startswith(f"sched_payload:{schedule.type}.")]:
        del state[key]
    state.sched_type, state.sched_name, state.sched_cron = schedule.type, schedule.name, schedule.cron
    state.sched_priority, state.sched_paused = schedule.priority.value, schedule.paused
    state.sched_initial = (schedule.type, schedule.payload)
    state.sched_errors, state.sched_payload_errors = {}, {}


def delete_schedule(name: str) -> None:
    attempt(lambda: c.delete_schedule(name), md("Schedule {} deleted", name))


def schedules() -> None:
    found = c.schedules()
    now = utcnow()
    if not found:
        st.caption("No schedules yet: add one below.")
    else:
        st.dataframe(pd.DataFrame([{
            "Name": s.name, "Type": s.type, "Cron": s.cron, "Priority": s.priority.value,
            "State": "paused" if s.paused else "active",
            "Next run": until(s.next_run_at, now) if not s.paused else "—", "Last run": ago(s.last_run_at, now),
            "Last outcome": s.last_outcome or "—", "Payload": json.dumps(s.payload),
        } for s in found]), hide_index=True, width="stretch", key="schedules_table")
        pick, run, pause, edit, delete = st.columns([3, 1.3, 1.3, 1.3, 1.3], vertical_alignment="bottom")
        name = pick.selectbox("Schedule", [s.name for s in found], key="sched_pick")
        chosen = next(s for s in found if s.name == name)
        if run.button("Run now", icon=":material/play_arrow:", key="sched_run") and attempt(
                lambda: c.run_schedule(name), md("Schedule {} submitted a run", name)):
            st.rerun()
        if pause.button("Resume" if chosen.paused else "Pause", key="sched_pause",
                        icon=":material/play_circle:" if chosen.paused else ":material/pause_circle:") and attempt(
                lambda: c.pause_schedule(name, not chosen.paused),
                md("Schedule {} {}", name, trusted("resumed" if chosen.paused else "paused"))):
            st.rerun()
        edit.button("Edit", icon=":material/edit:", key="sched_edit", on_click=load_schedule, args=(chosen,))
        with delete.popover("Delete", icon=":material/delete:"):
            st.write(md("Delete schedule {}? Jobs it already submitted stay.", name))
            st.button("Delete schedule", type="primary", key="sched_delete", on_click=delete_schedule, args=(name,))

    st.markdown("**Add or replace a schedule** (a schedule of the same name is replaced)")
    types = {t.name: t for t in sorted(c.types(), key=lambda t: unavailable_reason(t, c.settings) is not None)}
    type_name = st.selectbox("Task type", list(types), key="sched_type")
    task_type = types[type_name]
    if reason := unavailable_reason(task_type, c.settings):
        st.warning(trusted(f"{reason}. Until then its scheduled runs are refused."), icon=":material/block:")
    errors: dict[str, list[str]] = state.get("sched_errors", {})
    state.setdefault("sched_priority", task_type.priority.value)
    initial_type, initial = state.get("sched_initial", (None, None))
    with st.form("schedule_form", border=True):
        top = st.columns([3, 3, 2])
        name = top[0].text_input("Name", key="sched_name", placeholder="nightly-trends",
                                 help="Letters, digits, '.', '_' and '-', up to 64")
        cron = top[1].text_input("Cron", key="sched_cron", placeholder="0 */6 * * *",
                                 help='Five fields (minute hour day month weekday), e.g. "0 */6 * * *" is every '
                                 "6 hours; times are UTC")
        priority = top[2].selectbox("Priority", [p.value for p in Priority], key="sched_priority")
        for field, messages in errors.items():
            for text in messages:
                st.error(message(f"{field}: {text}"), icon=":material/error:")
        st.markdown("**Payload**")
        form = Form(task_type.schema(), f"sched_payload:{type_name}", state.get("sched_payload_errors", {}),
                    initial if initial_type == type_name else None)
        payload = form.render()
        paused = st.checkbox("Paused", key="sched_paused", help="A paused schedule submits nothing until resumed")
        sent = st.form_submit_button("Save schedule", type="primary", icon=":material/save:")
    if sent:
        save(name.strip(), type_name, cron.strip(), priority, paused, payload, form)


def save(name: str, type_name: str, cron: str, priority: str, paused: bool, payload: dict[str, Any],
         form: Form) -> None:
    state.sched_errors, state.sched_payload_errors = {}, {}
    if form.invalid:
        state.sched_payload_errors = form.invalid
        st.rerun()
    try:
        schedule = Schedule(name=name, type=type_name, cron=cron, priority=Priority(priority), paused=paused,
                            payload=payload)
    except ValidationError as e:
        state.sched_errors = {".".join(map(str, err["loc"])): [err["msg"]] for err in e.errors(include_url=False)}
        st.rerun()
    try:
        c.save_schedule(schedule)
    except InvalidPayload as e:
        state.sched_payload_errors = errors_by_field(e.errors) or {"": [str(e)]}
        st.rerun()
    except TaskdeckError as e:
        alert(e)
        return
    flash(md("Schedule {} saved", name))
    st.rerun()


def load_rule(found: AlertRule | None) -> None:
    """Fill the rule form with `found` (None: a new rule); a button's callback, so before the widgets exist."""
    for key in [k for k in state if str(k).startswith("rule_params:")]:
        del state[key]
    state.rule_loaded = found
    state.rule_kind = found.kind if found else state.get("rule_kind", rulebook.SUGGESTED[0].kind)
    state.rule_name = found.name if found else ""
    state.rule_targets = "\n".join(f"{t.channel.value}:{t.address}" for t in found.targets) if found else ""
    state.rule_for, state.rule_repeat = (float(found.for_s), float(found.repeat_s)) if found else (0.0, 3600.0)
    state.rule_enabled = found.enabled if found else True
    state.rule_param_errors = {}


def delete_rule(rule_id: str, name: str) -> None:
    if attempt(lambda: c.delete_alert_rule(rule_id), md("Alert rule {} deleted", name)):
        loaded = state.get("rule_loaded")
        if loaded is not None and loaded.id == rule_id:
            load_rule(None)


def rules_table(found: list[Alert]) -> None:
    st.dataframe(pd.DataFrame([{
        "Name": a.rule.name, "Kind": a.rule.kind, "Parameters": json.dumps(a.rule.params),
        "Targets": ", ".join(f"{t.channel.value}:{t.address}" for t in a.rule.targets) or "none (log only)",
        "For": duration(a.rule.for_s) if a.rule.for_s else "at once",
        "Repeat": duration(a.rule.repeat_s) if a.rule.repeat_s else "never",
        "Enabled": a.rule.enabled, "State": a.status.state, "Id": a.rule.id,
    } for a in found]), hide_index=True, width="stretch", key="rules_table")
    names = {a.rule.id: a.rule.name for a in found}
    pick, edit, delete = st.columns([4, 1.5, 1.5], vertical_alignment="bottom")
    rule_id = pick.selectbox("Alert rule", list(names), key="rule_pick", format_func=lambda i: f"{names[i]} ({i})")
    chosen = next(a.rule for a in found if a.rule.id == rule_id)
    edit.button("Edit rule", icon=":material/edit:", key="rule_edit", on_click=load_rule, args=(chosen,))
    with delete.popover("Delete rule", icon=":material/delete:"):
        st.write(md("Delete alert rule {}? Its state goes with it; a firing one sends no resolution.", chosen.name))
        st.button("Delete alert rule", type="primary", key="rule_delete", on_click=delete_rule,
                  args=(chosen.id, chosen.name))


def alert_rules() -> None:
    if (saved := state.pop("rule_saved", None)) is not None:
        load_rule(saved)  # the form edits the rule just saved, so saving again replaces it
    found = c.alerts()
    st.caption("One worker evaluates every rule every TASKDECK_ALERT_INTERVAL_S: ok → pending → firing → resolved; "
               "one incident is one firing message and one resolution. Their state shows on the Workers page.")
    if found:
        rules_table(found)
    else:
        st.caption("No alert rules yet: nothing is watched. Add one below, or start from a suggestion.")
    loaded: AlertRule | None = state.get("rule_loaded")
    head, new = st.columns([8, 2], vertical_alignment="center")
    head.markdown(md("**Rule {}** (id {}: saving replaces it)", loaded.name, loaded.id) if loaded
                  else trusted("**New rule**"))
    new.button("New rule", icon=":material/add:", key="rule_new", on_click=load_rule, args=(None,))
    starts = st.columns([3, 3, 4], vertical_alignment="center")
    for column, suggestion in zip(starts, rulebook.SUGGESTED, strict=False):
        column.button(trusted(f"Suggested: {suggestion.name}"), key=f"rule_suggest:{suggestion.id}",
                      on_click=load_rule, args=(suggestion,), help="Fill the form with it; nothing is saved until "
                      "you save it")
    rule_form(loaded)


def rule_form(loaded: AlertRule | None) -> None:
    kinds = list(rulebook.PARAMS)
    state.setdefault("rule_kind", kinds[0])
    kind = st.selectbox("Kind", kinds, key="rule_kind", format_func=lambda k: k.replace("_", " "))
    for name, value in (("rule_name", ""), ("rule_targets", ""), ("rule_for", 0.0), ("rule_repeat", 3600.0),
                        ("rule_enabled", True)):
        state.setdefault(name, value)
    with st.form("rule_form", border=True):
        name = st.text_input("Name", key="rule_name", max_chars=200, help="Shown in every message; empty: the kind")
        schema = rulebook.PARAMS[kind].model_json_schema()
        st.markdown("**Parameters**")
        if not schema.get("properties"):
            st.caption("This kind has no parameters.")
        form = Form(schema, f"rule_params:{kind}", state.get("rule_param_errors", {}),
                    loaded.params if loaded and loaded.kind == kind else None)
        params = form.render()
        targets = st.text_area("Targets — one per line", key="rule_targets", height=100,
                               help="CHANNEL:ADDRESS, CHANNEL one of inbox, email, slack, webhook: e.g. "
                               "inbox:ops@acme.io, email:ops@acme.io, slack:https://hooks.slack.com/services/... "
                               "Webhook and Slack URLs must pass the outbound policy (TASKDECK_FETCH_ALLOW).")
        left, middle, right = st.columns([2, 2, 2], vertical_alignment="bottom")
        for_s = left.number_input("For (s)", min_value=0.0, step=60.0, key="rule_for", format="%g",
                                  help="How long the condition must hold before it fires; 0: at once")
        repeat_s = middle.number_input("Repeat (s)", min_value=0.0, step=600.0, key="rule_repeat", format="%g",
                                       help="While firing, say it again after this long; 0: never")
        enabled = right.checkbox("Enabled", key="rule_enabled", help="A disabled rule that was firing resolves")
        sent = st.form_submit_button("Save rule", type="primary", icon=":material/save:")
    if sent:
        save_rule(loaded, kind, name, params, targets, float(for_s or 0), float(repeat_s or 0), enabled, form)


def kept_secret(target: Target, loaded: AlertRule | None) -> Target:
    """A webhook target as it was: its signing secret is not shown in the form, so an unchanged line keeps it."""
    if loaded is None or target.channel is not Channel.webhook:
        return target
    same = [t for t in loaded.targets if t.channel is target.channel and t.address == target.address.strip()]
    return target.model_copy(update={"secret": same[0].secret}) if same else target


def save_rule(loaded: AlertRule | None, kind: str, name: str, params: dict[str, Any], targets: str, for_s: float,
              repeat_s: float, enabled: bool, form: Form) -> None:
    state.rule_param_errors = {}
    if form.invalid:
        state.rule_param_errors = form.invalid
        st.rerun()
    try:
        parsed = [kept_secret(rulebook.parse_target(line), loaded) for line in targets.splitlines() if line.strip()]
        fields: dict[str, Any] = {"name": name, "targets": parsed, "for_s": for_s, "repeat_s": repeat_s,
                                  "enabled": enabled, **({"id": loaded.id} if loaded else {})}
        saved = c.set_alert_rule(rulebook.rule(kind, params, **fields))
    except TaskdeckError as e:
        alert(e)
        return
    state.rule_saved = saved
    flash(md("Alert rule {} saved", saved.name))
    st.rerun()


def audit() -> None:
    size = st.selectbox("Entries", AUDIT_SIZES, key="audit_size", help="Newest first")
    rows = c.audit(size)
    if not rows:
        st.caption("Nothing logged yet.")
        return
    st.dataframe(pd.DataFrame([{
        "When": datetime.fromtimestamp(int(row["at"]) / 1000, UTC), "Who": row.get("by", ""),
        "What": row.get("action", ""), "Job": row.get("job", ""), "Type": row.get("type", ""),
        "Owner": row.get("owner", ""),
    } for row in rows]), hide_index=True, width="stretch", key="audit_table", column_config={
        "When": st.column_config.DatetimeColumn("When", format="YYYY-MM-DD HH:mm:ss")})


limit_tab, schedule_tab, rules_tab, audit_tab = st.tabs(["Running limits", "Schedules", "Alert rules", "Audit log"])
with limit_tab:
    limits()
with schedule_tab:
    schedules()
with rules_tab:
    alert_rules()
with audit_tab:
    audit()
