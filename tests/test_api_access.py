"""The access matrix through the HTTP API: every route, for a token of each role, against the caller's own
job, another user's and a missing one; another user's job answers byte for byte like a missing one."""
from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from runner import Client, Settings
from runner.notify.rules import AlertRule
from runner.policy.access import Role
from tests.api_server import ROLES, token

ME = {"staff": "sam@x.io", "analyst": "ann@x.io", "admin": "boss@x.io"}
OTHER = "olga@x.io"
MISSING = "0" * 32
Route = Callable[[str, dict[str, str], str], httpx.Response]


def first_event(base: str, auth: dict[str, str], job_id: str) -> httpx.Response:
    """The events route's status, and its first frame when it streams."""
    with httpx.stream("GET", f"{base}/api/jobs/{job_id}/events", headers=auth, timeout=10) as response:
        if response.status_code == 200:
            next(response.iter_lines())
        else:
            response.read()
        return response


ROUTES: dict[str, Route] = {
    "get_job": lambda base, auth, j: httpx.get(f"{base}/api/jobs/{j}", headers=auth),
    "cancel_job": lambda base, auth, j: httpx.delete(f"{base}/api/jobs/{j}", headers=auth),
    "retry_job": lambda base, auth, j: httpx.post(f"{base}/api/jobs/{j}/retry", headers=auth),
    "rerun_job": lambda base, auth, j: httpx.post(f"{base}/api/jobs/{j}/retry", headers=auth,
                                                  json={"payload": {"duration_s": 0}}),
    "job_events": first_event,
    "job_deliveries": lambda base, auth, j: httpx.get(f"{base}/api/jobs/{j}/deliveries", headers=auth),
}
# route -> role -> status for (own, other's, missing)
EXPECTED: dict[str, dict[str, tuple[int, int, int]]] = {
    "get_job": {"staff": (200, 404, 404), "analyst": (200, 200, 404), "admin": (200, 200, 404)},
    "job_events": {"staff": (200, 404, 404), "analyst": (200, 200, 404), "admin": (200, 200, 404)},
    "cancel_job": {"staff": (200, 404, 404), "analyst": (403, 403, 403), "admin": (200, 200, 404)},
    "retry_job": {"staff": (202, 404, 404), "analyst": (403, 403, 403), "admin": (202, 202, 404)},
    "rerun_job": {"staff": (202, 404, 404), "analyst": (403, 403, 403), "admin": (202, 202, 404)},
    # the delivery log names addresses: for the job's owner and admins
    "job_deliveries": {"staff": (200, 404, 404), "analyst": (200, 404, 404), "admin": (200, 200, 404)},
}


@pytest.fixture
def jobs(api: str) -> Iterator[dict[str, str]]:
    with Client(Settings(roles=ROLES)) as admin:
        made = {f"{role}:{whose}": admin.submit("DEMO", {"duration_s": 600},
                                                user=email if whose == "own" else OTHER).id
                for role, email in ME.items() for whose in ("own", "other")}
        yield made


@pytest.mark.parametrize("role", list(ME))
@pytest.mark.parametrize("route", list(ROUTES))
def test_route_by_role_and_owner(api: str, jobs: dict[str, str], role: str, route: str) -> None:
    auth = token(ME[role], role=Role(role))
    if route in ("retry_job", "rerun_job"):
        with Client(Settings(roles=ROLES)) as admin:
            for whose in ("own", "other"):
                admin.cancel(jobs[f"{role}:{whose}"])
    answers = [ROUTES[route](api, auth, job) for job in (jobs[f"{role}:own"], jobs[f"{role}:other"], MISSING)]
    assert tuple(a.status_code for a in answers) == EXPECTED[route][role]
    hidden, missing = answers[1], answers[2]
    if hidden.status_code == 404:  # the same problem as for a job that does not exist, but for its id
        assert hidden.json()["detail"].replace(jobs[f"{role}:other"], MISSING) == missing.json()["detail"]
        assert hidden.headers["content-type"] == missing.headers["content-type"]


@pytest.mark.parametrize("role", list(ME))
def test_listing_and_creating_by_role(api: str, jobs: dict[str, str], role: str) -> None:
    auth = token(ME[role], role=Role(role))
    listed = httpx.get(f"{api}/api/jobs", headers=auth, params={"limit": 1000}).json()["jobs"]
    seen = {job["id"] for job in listed}
    assert jobs[f"{role}:own"] in seen
    assert (jobs[f"{role}:other"] in seen) is (role != "staff")
    created = httpx.post(f"{api}/api/jobs", headers=auth, json={"type": "DEMO"})
    assert created.status_code == (403 if role == "analyst" else 202)
    if created.status_code == 202:
        assert created.json()["user_id"] == ME[role]
    for path in ("/api/types", "/api/health"):
        assert httpx.get(f"{api}{path}", headers=auth).status_code == 200


ALERT_ROUTES = {("GET", "/api/alerts/rules"), ("POST", "/api/alerts/rules"), ("DELETE", "/api/alerts/rules/{rule_id}"),
                ("GET", "/api/alerts")}


@pytest.mark.parametrize("role", list(ME))
def test_alert_rules_are_for_admins_only(api: str, role: str) -> None:
    """Staff and analysts get 403 on every alert route, whether the rule exists or not; admins get the rules."""
    auth = token(ME[role], role=Role(role))
    with Client(Settings(roles=ROLES)) as admin:
        for found in admin.alert_rules():
            admin.delete_alert_rule(found.id)
        admin.set_alert_rule(AlertRule(id="backlog", kind="queue_depth", params={"over": 50}))
    answers = [httpx.get(f"{api}/api/alerts/rules", headers=auth),
               httpx.get(f"{api}/api/alerts", headers=auth),
               httpx.post(f"{api}/api/alerts/rules", headers=auth, json={"kind": "no_worker", "name": "nobody"}),
               httpx.delete(f"{api}/api/alerts/rules/backlog", headers=auth),
               httpx.delete(f"{api}/api/alerts/rules/{MISSING}", headers=auth)]
    codes = [a.status_code for a in answers]
    if role != "admin":
        assert codes == [403] * 5
        return
    assert codes == [200, 200, 200, 204, 404]
    assert [rule["id"] for rule in answers[0].json()] == ["backlog"]
    assert [(a["rule"]["id"], a["status"]["state"]) for a in answers[1].json()] == [("backlog", "ok")]
    assert answers[2].json()["name"] == "nobody"
    refused = httpx.post(f"{api}/api/alerts/rules", headers=auth,
                         json={"kind": "no_worker", "targets": [{"channel": "webhook", "address": "http://10.0.0.1/x"}]})
    assert refused.status_code == 422 and "private address" in refused.json()["detail"]


# tests/ops/test_schedule_cli.py goes through each, for admins and staff
SCHEDULE_ROUTES = {("GET", "/api/schedules"), ("POST", "/api/schedules"), ("POST", "/api/schedules/{name}/{action}"),
                   ("DELETE", "/api/schedules/{name}")}
NOTIFY_ROUTES = {("GET", "/api/profile"), ("PUT", "/api/profile"), ("GET", "/api/notifications"),
                 ("POST", "/api/notifications/read"), ("GET", "/api/jobs/{job_id}/deliveries")}


@pytest.mark.parametrize("role", list(ME))
def test_notifications_are_each_users_own(api: str, role: str) -> None:
    """Every role has a profile and an inbox, its own: nothing in a route names another user."""
    auth = token(ME[role], role=Role(role))
    other = token(OTHER, role=Role.staff)
    profile = httpx.get(f"{api}/api/profile", headers=auth)
    assert profile.status_code == 200 and profile.json()["user"] == ME[role]
    changed = httpx.put(f"{api}/api/profile", headers=auth, json={"events": ["completed"], "email": "x@y.io"})
    assert changed.status_code == 200 and changed.json()["events"] == ["completed"]
    assert httpx.get(f"{api}/api/profile", headers=other).json()["events"] == ["failed"]  # the other's untouched
    refused = httpx.put(f"{api}/api/profile", headers=auth, json={"webhook_url": "http://10.0.0.1/hook"})
    assert refused.status_code == 422 and "private address" in refused.json()["detail"]
    listed = httpx.get(f"{api}/api/notifications", headers=auth, params={"unread": True})
    assert listed.status_code == 200 and listed.json()["items"] == []
    marked = httpx.post(f"{api}/api/notifications/read", headers=auth, json={"ids": "all"})
    assert marked.status_code == 200 and marked.json() == {"unread": 0}
    assert httpx.post(f"{api}/api/notifications/read", headers=auth, json={"ids": "some"}).status_code == 422


def test_every_route_has_a_row(api: str) -> None:
    schema = httpx.get(f"{api}/openapi.json").json()
    routes = {(method.upper(), path) for path, ops in schema["paths"].items() for method in ops}
    covered = {("GET", "/api/jobs/{job_id}"), ("DELETE", "/api/jobs/{job_id}"), ("POST", "/api/jobs/{job_id}/retry"),
               ("GET", "/api/jobs/{job_id}/events"), ("GET", "/api/jobs"), ("POST", "/api/jobs"),
               ("GET", "/api/types"), ("GET", "/api/health"), *ALERT_ROUTES, *NOTIFY_ROUTES,
               *SCHEDULE_ROUTES}
    assert routes <= covered, f"routes with no row in the access tests: {sorted(routes - covered)}"
