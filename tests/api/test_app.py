"""The HTTP API (`python -m runner api`) as a real server process, with real workers behind it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable

import httpx
import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings

from runner.api import create_app
from tests.api_server import ROLES, ServerFactory, is_problem, token
from tests.conftest import ROOT, OwnRedis
from tests.polling import wait_until


def events(response: httpx.Response, until: Callable[[list[dict]], bool] = lambda _: False) -> list[dict]:
    """Parse a text/event-stream into [{id, event, data}], stopping early once `until` holds."""
    seen: list[dict] = []
    current: dict = {}
    for line in response.iter_lines():
        if not line:
            if "event" in current:
                seen.append(current)
                if until(seen):
                    break
            current = {}
            continue
        name, _, value = line.partition(":")
        if name in ("id", "event", "data"):
            current[name] = value.strip() if name != "data" else json.loads(value)
    return seen


def test_health_schema_and_docs_need_no_token(api: str, start_worker) -> None:
    start_worker()
    health = wait_until(lambda: (h := httpx.get(f"{api}/api/health").json())["workers_alive"] == 1 and h, 15,
                        "the worker to show in health")
    assert {k: health[k] for k in ("redis", "workers_alive", "archive")} == {"redis": True, "workers_alive": 1,
                                                                          "archive": None}  # the tests' archive is off
    assert health["queues"]["default"] == {"waiting": 0, "running": 0, "capacity": 10, "workers": 1}
    assert "/api/jobs/{job_id}/events" in httpx.get(f"{api}/openapi.json").json()["paths"]
    assert "swagger-ui" in httpx.get(f"{api}/docs").text


def test_routes_refuse_missing_unknown_and_revoked_tokens(api: str) -> None:
    assert "token create" in is_problem(httpx.get(f"{api}/api/types"), 401)["detail"]
    is_problem(httpx.get(f"{api}/api/types", headers={"Authorization": "Bearer td_nope_nope"}), 401)
    made = subprocess.run([sys.executable, "-m", "runner", "token", "create", "--user", "ops@x.io", "--role", "staff",
                           "--json"], cwd=ROOT, capture_output=True, text=True, check=True,
                          env={**os.environ, "TASKDECK_ROLES": json.dumps(ROLES)})
    created = json.loads(made.stdout)
    auth = {"Authorization": f"Bearer {created['token']}"}
    types = httpx.get(f"{api}/api/types", headers=auth)
    assert types.status_code == 200 and "DEMO" in {t["name"] for t in types.json()}
    demo = next(t for t in types.json() if t["name"] == "DEMO")
    assert demo["schema"]["properties"]["duration_s"]["maximum"] == 3600 and demo["available"]
    listed = subprocess.run([sys.executable, "-m", "runner", "token", "list", "--json"], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    assert created["token"] not in listed.stdout and created["id"] in listed.stdout
    subprocess.run([sys.executable, "-m", "runner", "token", "revoke", created["id"]], cwd=ROOT, check=True,
                   capture_output=True)
    is_problem(httpx.get(f"{api}/api/types", headers=auth), 401)


def test_a_job_created_over_http_is_followed_to_its_result(api: str, start_worker) -> None:
    start_worker()
    auth = token()
    created = httpx.post(f"{api}/api/jobs", headers=auth, json={"type": "DEMO", "payload": {"duration_s": 0.6,
                                                                                           "steps": 3}})
    assert created.status_code == 202 and created.json()["status"] == "queued"
    job_id = created.json()["id"]
    with httpx.stream("GET", f"{api}/api/jobs/{job_id}/events", headers=auth, timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        seen = events(response)
    assert seen[0]["event"] == "snapshot" and seen[0]["data"]["id"] == job_id
    names = [e["event"] for e in seen[1:]]
    assert names[-1] == "completed" and "started" in names and "progress" in names
    assert all(e["data"]["job"] == job_id for e in seen[1:])
    done = httpx.get(f"{api}/api/jobs/{job_id}", headers=auth).json()
    assert done["status"] == "completed" and done["result"]["steps"] == 3


def test_events_resume_after_a_dropped_connection_without_loss(api: str, start_worker, r: redis.Redis) -> None:
    start_worker()
    auth = token()
    job_id = httpx.post(f"{api}/api/jobs", headers=auth,
                        json={"type": "DEMO", "payload": {"duration_s": 1.5, "steps": 5}}).json()["id"]
    url = f"{api}/api/jobs/{job_id}/events"
    with httpx.stream("GET", url, headers=auth, timeout=30) as response:
        first = events(response, until=lambda seen: sum(e["event"] == "progress" for e in seen) >= 2)
    with httpx.stream("GET", url, headers={**auth, "Last-Event-ID": first[-1]["id"]}, timeout=30) as response:
        rest = events(response)
    assert rest[0]["event"] != "snapshot", "a resume within the stream's reach sends no snapshot"
    assert rest[-1]["event"] == "completed"
    received = [e["id"] for e in first[1:] + rest]
    recorded = [entry_id for entry_id, fields in r.xrange("taskdeck:events") if fields["job"] == job_id]
    after_snapshot = [i for i in recorded if tuple(map(int, i.split("-"))) > tuple(map(int, first[0]["id"].split("-")))]
    assert received == after_snapshot, "every event after the snapshot arrives once, in order, across the reconnect"


def test_another_users_job_answers_like_a_missing_one(api: str) -> None:
    mine = httpx.post(f"{api}/api/jobs", headers=token("a@x.io"), json={"type": "DEMO"}).json()["id"]
    other = token("b@x.io")
    missing = uuid.uuid4().hex
    for method, path in (("GET", ""), ("DELETE", ""), ("POST", "/retry"), ("GET", "/events")):
        theirs = is_problem(httpx.request(method, f"{api}/api/jobs/{mine}{path}", headers=other), 404)
        absent = is_problem(httpx.request(method, f"{api}/api/jobs/{missing}{path}", headers=other), 404)
        assert theirs["detail"].replace(mine, "ID") == absent["detail"].replace(missing, "ID")
    assert httpx.get(f"{api}/api/jobs", headers=other).json()["jobs"] == []


def test_bad_input_gets_problems_that_name_the_field_and_limit(api: str, r: redis.Redis) -> None:
    auth = token()
    too_long = is_problem(httpx.post(f"{api}/api/jobs", headers=auth,
                                     json={"type": "DEMO", "payload": {"duration_s": 99999}}), 422)
    assert too_long["errors"][0]["loc"] == ["duration_s"] and too_long["errors"][0]["ctx"]["le"] == 3600
    assert "NOPE" in is_problem(httpx.post(f"{api}/api/jobs", headers=auth, json={"type": "NOPE"}), 422)["detail"]
    shape = is_problem(httpx.post(f"{api}/api/jobs", headers=auth, json={"payload": {}}), 422)
    assert shape["errors"][0]["loc"] == ["body", "type"]
    is_problem(httpx.post(f"{api}/api/jobs", headers={**auth, "Content-Type": "application/json"}, content=b"{nope"),
               422)
    is_problem(httpx.post(f"{api}/api/jobs", headers={**auth, "Content-Type": "application/json"},
                          content=b"M4\xff\xfelH"), 400)  # not UTF-8: found by schemathesis
    is_problem(httpx.get(f"{api}/api/jobs", headers=auth, params={"cursor": "garbage"}), 422)
    is_problem(httpx.get(f"{api}/api/jobs", headers=auth, params={"limit": 0}), 422)
    assert r.zcard("taskdeck:idx:all") == 0, "nothing was written"


def test_cancel_queued_and_running_jobs_and_retry_a_failed_one(api: str, start_worker) -> None:
    auth = token()
    queued = httpx.post(f"{api}/api/jobs", headers=auth, json={"type": "DEMO"}).json()["id"]
    cancelled = httpx.delete(f"{api}/api/jobs/{queued}", headers=auth)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    is_problem(httpx.delete(f"{api}/api/jobs/{queued}", headers=auth), 409)
    start_worker()
    running = httpx.post(f"{api}/api/jobs", headers=auth, json={"type": "TEST_SLEEP", "payload": {"seconds": 60}})
    job_id = running.json()["id"]
    wait_until(lambda: httpx.get(f"{api}/api/jobs/{job_id}", headers=auth).json()["status"] == "processing", 15,
               "the job to start")
    httpx.delete(f"{api}/api/jobs/{job_id}", headers=auth)
    wait_until(lambda: httpx.get(f"{api}/api/jobs/{job_id}", headers=auth).json()["status"] == "cancelled", 15,
               "the running job to be cancelled")
    fatal = httpx.post(f"{api}/api/jobs", headers=auth, json={"type": "TEST_FATAL"}).json()["id"]
    wait_until(lambda: httpx.get(f"{api}/api/jobs/{fatal}", headers=auth).json()["status"] == "failed", 15,
               "the job to fail")
    retried = httpx.post(f"{api}/api/jobs/{fatal}/retry", headers=auth)
    assert retried.status_code == 202 and retried.json()["retried_from"] == "failed"
    assert retried.json()["status"] in ("queued", "processing", "failed"), "a worker may take it at once"


def test_list_pages_newest_first_with_a_cursor(api: str) -> None:
    auth = token()
    ids = [httpx.post(f"{api}/api/jobs", headers=auth, json={"type": "DEMO"}).json()["id"] for _ in range(5)]
    seen, cursor = [], None
    while True:
        page = httpx.get(f"{api}/api/jobs", headers=auth, params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        seen += [job["id"] for job in page.json()["jobs"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    queued = httpx.get(f"{api}/api/jobs", headers=auth, params={"status": "queued", "type": "DEMO"}).json()
    assert len(queued["jobs"]) == 5 and queued["next_cursor"] is None


def test_limits_answer_429_with_retry_after_and_413_for_big_bodies(own_api: ServerFactory) -> None:
    api = own_api(TASKDECK_MAX_SUBMITS_PER_USER_PER_HOUR="2", TASKDECK_API_MAX_BODY_BYTES="5000")
    auth = token()
    for _ in range(2):
        assert httpx.post(f"{api}/api/jobs", headers=auth, json={"type": "DEMO"}).status_code == 202
    refused = httpx.post(f"{api}/api/jobs", headers=auth, json={"type": "DEMO"})
    is_problem(refused, 429)
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    big = {"type": "DEMO", "payload": {"output": "x" * 6000}}
    assert "5,000" in is_problem(httpx.post(f"{api}/api/jobs", headers=auth, json=big), 413)["detail"]
    chunked = (part for part in [json.dumps(big).encode()[:3000], json.dumps(big).encode()[3000:]])
    is_problem(httpx.post(f"{api}/api/jobs", headers={**auth, "Content-Type": "application/json"}, content=chunked),
               413)


def test_an_unreachable_redis_answers_503(own_redis: OwnRedis, own_api: ServerFactory) -> None:
    api = own_api(REDIS_URL=own_redis.url)
    auth = token(url=own_redis.url)
    assert httpx.get(f"{api}/api/jobs", headers=auth).status_code == 200
    own_redis.proc.send_signal(signal.SIGSTOP)
    try:
        assert "Redis" in is_problem(httpx.get(f"{api}/api/jobs", headers=auth, timeout=20), 503)["detail"]
        health = httpx.get(f"{api}/api/health", timeout=20)
        assert health.status_code == 503 and health.json()["redis"] is False
    finally:
        own_redis.proc.send_signal(signal.SIGCONT)


schema = schemathesis.openapi.from_dict(create_app().openapi())


@pytest.fixture
def auth() -> dict[str, str]:
    return token()


@schema.parametrize()
@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_the_api_answers_as_its_own_schema_says(case: schemathesis.Case, api: str, auth: dict[str, str]) -> None:
    """No 500s, and every answer as documented. Left out: that every schema-valid request is accepted
    (a payload's schema depends on its `type`, registered at run time, which a static schema cannot
    say) and that every schema-violating one is refused (unknown query parameters are ignored)."""
    case.call_and_validate(base_url=api, headers=auth, timeout=10,
                           excluded_checks=[schemathesis.checks.positive_data_acceptance,
                                            schemathesis.checks.negative_data_rejection])
