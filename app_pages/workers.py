"""Workers: every worker seen in the last day, alive or dead, with its counters and the queues it serves; each
named queue's load; the archive the workers feed, with its backlog; the LLM endpoint and its circuit breakers;
the scrape/RSS sources; the outbox of notices and callbacks the workers send (and, for admins, the alert rules'
state); and the schedules the workers submit. Admins reset breakers, re-enable sources and run or pause schedules
here (everything else about schedules: Settings)."""
from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from runner import RedisUnavailable, TaskdeckError
from runner.models import utcnow
from runner.policy.access import Action
from ui import alerts
from ui.queues import served, show_loads
from ui.session import client, guard
from ui.text import Markdown, ago, joined, md, trusted, until

CIRCUIT_COLORS: dict[str, alerts.BadgeColor] = {"closed": "green", "open": "red", "half-open": "orange"}

c = client()
admin = c.principal.can(Action.settings)
st.title("Workers")


def done(message: Markdown) -> None:
    st.session_state.workers_flash = message


def attempt(action: Callable[[], object], message: Markdown) -> None:
    """Run an admin action from a button; its outcome shows as a toast on the next run."""
    try:
        action()
    except TaskdeckError as e:
        done(alerts.message(e))
    else:
        done(message)


def show_flash(message: Markdown) -> None:
    st.toast(message, icon=":material/info:")


if flash := st.session_state.pop("workers_flash", None):
    show_flash(flash)


@st.fragment(run_every=2)
def roster() -> None:
    with guard(reconnect=False):
        workers = c.workers()
        now = utcnow()
        alive = sum(w.alive for w in workers)
        cols = st.columns(4)
        cols[0].metric("Online", md("{}", alive), border=True)
        cols[1].metric("Dead or stopped", md("{}", len(workers) - alive), border=True)
        cols[2].metric("Running jobs", md("{}", sum(w.running for w in workers if w.alive)), border=True)
        cols[3].metric("Lease", md("{:g} s", c.settings.lease_s), border=True,
                       help="A worker that has not renewed its heartbeat within the lease counts as dead.")
        if not workers:
            st.info("No worker has reported in the last day. Start one with `arq runner.worker.WorkerSettings` "
                    "or `./taskdeck up`.", icon=":material/power_off:")
            return
        frame = pd.DataFrame([{
            "Status": "alive" if w.alive else "dead", "Worker": w.id, "Host": w.host, "PID": w.pid,
            "Started": w.started_at, "Last heartbeat": ago(w.last_heartbeat, now), "Running": w.running,
            "Done": w.done, "Failed": w.failed, "Queues": served(w),
        } for w in sorted(workers, key=lambda w: (not w.alive, w.id))])
        st.dataframe(frame, hide_index=True, width="stretch", column_config={
            "Started": st.column_config.DatetimeColumn("Started", format="YYYY-MM-DD HH:mm:ss"),
            "PID": st.column_config.NumberColumn("PID", format="%d"),
            "Queues": st.column_config.TextColumn("Queues", width="large", help=(
                "Each queue the worker serves: jobs it runs from it / its slots (TASKDECK_QUEUES)"))})


def archive() -> None:
    """The archive the workers feed: backend, jobs archived, the feed's backlog, and whether it answers."""
    st.subheader("Archive")
    if not c.settings.archive:
        st.caption("The archive is off (TASKDECK_ARCHIVE=false): finished jobs are kept in Redis only, for "
                   "TASKDECK_RETENTION_DAYS.")
        return
    if not c.principal.can(Action.read_all):
        st.caption("Analysts and admins see the archive's state here.")
        return
    try:
        found = c.archive_status()
    except RedisUnavailable:
        raise
    except TaskdeckError as e:  # an archive URL that cannot be used at all (unknown scheme, missing driver)
        alerts.alert(e)
        return
    lag = found.backlog.lag
    cols = st.columns(4)
    cols[0].metric("Backend", md("{}", found.backend), border=True)
    cols[1].metric("Jobs archived", md("{:,}", found.rows) if found.rows is not None else trusted("—"),
                   border=True)
    cols[2].metric("Backlog unread", md("{:,}", lag) if lag is not None else trusted("?"), border=True,
                   help="Events of the stream that no worker's feeder has read yet.")
    cols[3].metric("Backlog pending", md("{:,}", found.backlog.pending), border=True,
                   help="Events read but not yet written and acknowledged: in flight, or left by a worker that "
                        "died (another claims them after 30 s) or by a failed write (retried).")
    if not found.ok:
        st.error(md("The archive does not answer: {}. Workers keep running jobs; the backlog waits in Redis "
                    "and is written once it answers.", found.problem or "unknown", limit=alerts.ERROR_CHARS),
                 icon=":material/error:")
        return
    st.badge("archive ok", color="green", icon=":material/check_circle:")
    size = "—" if found.size_bytes is None else f"{found.size_bytes / 1e6:,.1f} MB"
    st.caption(md("{} · schema {} · {} · newest finished {}", found.url, found.revision or "not migrated yet",
                  trusted(size), ago(found.newest_finished, utcnow())))


def llm() -> None:
    st.subheader("LLM endpoint")
    found = c.llm_status()
    if not found.configured:
        st.info(md("No LLM endpoint is set, so the generative task types are refused at submit. Set {} (and "
                   "`TASKDECK_LLM_API_KEY` if the endpoint needs a key) for the workers and the dashboard, then "
                   "restart both.", joined([md("{}", name) for name in found.missing], " and ")),
                icon=":material/cloud_off:")
    else:
        if found.source == "embedded":
            st.badge("demo model", color="orange", icon=":material/science:")
            st.caption(md("{} · {}", found.description, found.hint))
        if found.problem:
            st.warning(md("{}", found.problem), icon=":material/warning:")
        state = found.breaker.state if found.breaker else "closed"
        st.badge(trusted(f"circuit {state}"), color=CIRCUIT_COLORS[state],
                 icon=":material/check_circle:" if state == "closed" else ":material/warning:")
        budget = [f"{found.rpm:,} requests/min" if found.rpm else "", f"{found.tpm:,} tokens/min" if found.tpm else "",
                  f"{found.user_tokens_per_hour:,} tokens/user/hour" if found.user_tokens_per_hour else ""]
        st.dataframe(pd.DataFrame([{
            "Endpoint": found.endpoint or ("each worker's own" if found.source == "embedded" else ""),
            "Model": found.model or "", "Circuit": state,
            "Structured output": found.structured_output,
            "Budget": " · ".join(part for part in budget if part) or "no limit",
        }]), hide_index=True, width="stretch")
    breakers = c.breakers()
    if not breakers:
        if found.configured:
            st.caption("Circuit breakers: no call has been made to any endpoint yet.")
        return
    st.markdown("**Circuit breakers** (one per endpoint the workers have called)")
    st.dataframe(pd.DataFrame([{
        "Endpoint": b.endpoint, "State": b.state, "Failures in a row": f"{b.failures} of {b.threshold}",
        "Open until": b.open_until, "Last error": b.last_error or "", "Last failure": b.last_failure_at,
        "Last success": b.last_success_at,
    } for b in breakers]), hide_index=True, width="stretch", column_config={
        name: st.column_config.DatetimeColumn(name, format="YYYY-MM-DD HH:mm:ss")
        for name in ("Open until", "Last failure", "Last success")})
    if admin:
        for b in breakers:
            if b.state != "closed" or b.failures:
                text, button = st.columns([6, 2], vertical_alignment="center")
                text.caption(md("{} is {} after {} failures in a row.", b.endpoint, trusted(b.state), b.failures))
                button.button("Reset", key=f"reset:{b.endpoint}", icon=":material/restart_alt:",
                              on_click=attempt, args=(lambda e=b.endpoint: c.reset_breaker(e),
                                                      md("Breaker of {} reset", b.endpoint)))


def sources() -> None:
    st.subheader("Sources")
    found = c.sources()
    if not found:
        st.caption("No web page or RSS feed has been read yet (SCRAPE_WEBSITE, SYNC_RSS).")
        return
    st.dataframe(pd.DataFrame([{
        "Source": s.url, **({"Owner": s.owner} if admin else {}), "Kind": s.kind,
        "Health": "healthy" if s.healthy else "unhealthy", "Failures in a row": s.failures,
        "Last error": s.last_error or "", "Last read": s.last_ok_at, "Last failure": s.last_failure_at,
    } for s in found]), hide_index=True, width="stretch", column_config={
        name: st.column_config.DatetimeColumn(name, format="YYYY-MM-DD HH:mm:ss")
        for name in ("Last read", "Last failure")})
    unhealthy = [s for s in found if not s.healthy]
    if unhealthy and not admin:
        st.caption(md("{} unhealthy: jobs that read them fail at once until an admin re-enables them.",
                      len(unhealthy)))
    if admin:
        for url in dict.fromkeys(s.url for s in unhealthy):
            owners = joined([md("{}", s.owner) for s in unhealthy if s.url == url])
            text, button = st.columns([6, 2], vertical_alignment="center")
            text.caption(md("{} is unhealthy for {}; jobs that read it fail at once.", url, owners))
            button.button("Re-enable", key=f"enable:{url}", icon=":material/check_circle:", on_click=attempt,
                          args=(lambda u=url: c.enable_source(u), md("{} re-enabled for every owner", url)))


def notifications() -> None:
    """The outbox's health (no addresses: every role sees it) and, for admins, each alert rule's state."""
    st.subheader("Notifications")
    health = c.delivery_health()
    cols = st.columns(4)
    cols[0].metric("Waiting", md("{:,}", health.queued), border=True,
                   help="Deliveries (email, webhooks, Slack, callbacks) waiting to be sent or retried.")
    cols[1].metric("Failing", md("{:,}", health.failing), border=True,
                   help="Deliveries whose last attempt failed, waiting for their retry (backoff, for a day).")
    cols[2].metric("Given up", md("{:,}", health.given_up), border=True,
                   help="Deliveries given up since the outbox began: refused for good, or failing for a day.")
    cols[3].metric("Last failure", ago(health.last_error_at, utcnow()), border=True)
    if health.last_error:
        st.caption("Last delivery error (a job's owner sees each attempt in its Job page's Deliveries tab)")
        st.code(health.last_error, language=None, wrap_lines=True)
    else:
        st.caption("No delivery has failed. A failing mail server or receiver never touches a job.")
    if admin:
        alert_states()


def alert_states() -> None:
    found = c.alerts()
    st.markdown("**Alert rules** (added and changed on the Settings page)")
    if not found:
        st.caption("No alert rules: nothing is watched. Add some on the Settings page.")
        return
    now = utcnow()
    for each in found:
        if each.status.state == "firing":
            st.error(md("{} is firing since {}: {}", each.rule.name, ago(each.status.since, now), each.status.detail),
                     icon=":material/notifications_active:")
    st.dataframe(pd.DataFrame([{
        "Rule": a.rule.name, "Kind": a.rule.kind, "Enabled": a.rule.enabled, "State": a.status.state,
        "Since": a.status.since, "What it saw": a.status.detail, "Incidents": a.status.incidents,
        "Last fired": a.status.fired_at, "Resolved": a.status.resolved_at, "Checked": a.status.checked_at,
    } for a in found]), hide_index=True, width="stretch", column_config={
        name: st.column_config.DatetimeColumn(name, format="YYYY-MM-DD HH:mm:ss")
        for name in ("Since", "Last fired", "Resolved", "Checked")})


def schedules() -> None:
    st.subheader("Schedules")
    found = c.schedules()
    if not found:
        st.caption("No schedules. " + ("Add one on the Settings page." if admin else "An admin adds them."))
        return
    now = utcnow()
    if admin:
        pick, run, pause, _ = st.columns([3, 1.3, 1.3, 4], vertical_alignment="bottom")
        name = pick.selectbox("Schedule", [s.name for s in found], key="workers_schedule")
        chosen = next(s for s in found if s.name == name)
        run.button("Run now", icon=":material/play_arrow:", key="workers_run", on_click=attempt,
                   args=(lambda: c.run_schedule(name), md("Schedule {} submitted a run", name)))
        pause.button("Resume" if chosen.paused else "Pause", key="workers_pause",
                     icon=":material/play_circle:" if chosen.paused else ":material/pause_circle:",
                     on_click=attempt, args=(lambda: c.pause_schedule(name, not chosen.paused),
                                             md("Schedule {} {}", name,
                                                trusted("resumed" if chosen.paused else "paused"))))
    st.dataframe(pd.DataFrame([{
        "Name": s.name, "Type": s.type, "Cron": s.cron, "State": "paused" if s.paused else "active",
        "Next run": until(s.next_run_at, now) if not s.paused else "—", "Last run": ago(s.last_run_at, now),
        "Last outcome": s.last_outcome or "—", "Owner": s.owner,
    } for s in found]), hide_index=True, width="stretch")


@st.fragment(run_every=2)
def queue_loads() -> None:
    """Each named queue's waiting and running jobs and the slots live workers give it."""
    try:
        loads = c.stats().queues
    except RedisUnavailable:  # the roster above shows the one banner
        return
    st.subheader("Queues")
    show_loads(loads)


roster()
queue_loads()
with guard():
    archive()
    llm()
    sources()
    notifications()
    schedules()
