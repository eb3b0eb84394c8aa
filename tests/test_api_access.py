"""The access matrix through the HTTP API: every route, for a token of each role, against the caller's own
job, another user's and a missing one; another user's job answers byte for byte like a missing one."""
from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from runner import Client, Settings
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
    "job_events": first_event,
}
# route -> role -> status for (own, other's, missing)
EXPECTED: dict[str, dict[str, tuple[int, int, int]]] = {
    "get_job": {"staff": (200, 404, 404), "analyst": (200, 200, 404), "admin": (200, 200, 404)},
    "job_events": {"staff": (200, 404, 404), "analyst": (200, 200, 404), "admin": (200, 200, 404)},
    "cancel_job": {"staff": (200, 404, 404), "analyst": (403, 403, 403), "admin": (200, 200, 404)},
    "retry_job": {"staff": (202, 404, 404), "analyst": (403, 403, 403), "admin": (202, 202, 404)},
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
    if route == "retry_job":
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


def test_every_route_has_a_row(api: str) -> None:
    schema = httpx.get(f"{api}/openapi.json").json()
    routes = {(method.upper(), path) for path, ops in schema["paths"].items() for method in ops}
    covered = {("GET", "/api/jobs/{job_id}"), ("DELETE", "/api/jobs/{job_id}"), ("POST", "/api/jobs/{job_id}/retry"),
               ("GET", "/api/jobs/{job_id}/events"), ("GET", "/api/jobs"), ("POST", "/api/jobs"),
               ("GET", "/api/types"), ("GET", "/api/health")}
    assert routes <= covered, f"routes with no row in the access tests: {sorted(routes - covered)}"
