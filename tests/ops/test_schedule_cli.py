"""Schedules from the command line and the HTTP API (issue 14): the same role rules as the dashboard."""
from __future__ import annotations

import json

import httpx

from runner import Client, JobStatus
from runner.client.schedules import Schedule
from runner.policy.access import Role
from tests.api_server import token
from tests.ops.test_cli import cli
from tests.polling import wait_until


def test_a_schedule_round_trips_through_the_cli(redis_url: str, worker) -> None:
    added = cli("schedule", "add", "nightly", "DEMO", "0 3 * * *", "--payload", '{"duration_s": 0}', "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["next_run_at"]
    listed = json.loads(cli("schedule", "list", "--json").stdout)
    assert [(s["name"], s["type"], s["cron"], s["paused"]) for s in listed] == [("nightly", "DEMO", "0 3 * * *", False)]
    assert json.loads(cli("schedule", "pause", "nightly", "--json").stdout)["paused"] is True
    assert "paused" in cli("schedule").stdout
    assert json.loads(cli("schedule", "resume", "nightly", "--json").stdout)["paused"] is False
    ran = json.loads(cli("schedule", "run", "nightly", "--json").stdout)
    with Client() as client:
        assert wait_until(lambda: (j := client.get(ran["job_id"])).status.terminal and j, 15, "the run").status \
            is JobStatus.completed
    assert cli("schedule", "delete", "nightly").returncode == 0
    assert json.loads(cli("schedule", "--json").stdout) == []


def test_bad_schedules_are_refused_with_the_reason(redis_url: str) -> None:
    for args, reason in ((["x", "DEMO", "every day"], "is not a cron expression"),
                         (["x", "NOPE", "0 3 * * *"], "unknown task type 'NOPE'"),
                         (["x", "DEMO", "0 3 * * *", "--payload", "{"], "--payload is not JSON"),
                         (["bad name", "DEMO", "0 3 * * *"], "name")):
        out = cli("schedule", "add", *args)
        assert out.returncode == 2 and reason in out.stderr and "Traceback" not in out.stderr, out.stderr
    out = cli("schedule", "pause", "missing")
    assert out.returncode == 2 and "no schedule named 'missing'" in out.stderr
    staff = cli("schedule", "add", "x", "DEMO", "0 3 * * *", "--as", "sam@x.io",
                env={"TASKDECK_ROLES": '{"sam@x.io": "staff"}'})
    assert staff.returncode == 2 and "may not" in staff.stderr


def test_schedules_through_the_api_by_role(api: str) -> None:
    admin, staff = token("boss@x.io", Role.admin), token("sam@x.io", Role.staff)
    body = {"name": "hourly", "type": "DEMO", "payload": {"duration_s": 0}, "cron": "0 * * * *"}
    assert httpx.post(f"{api}/api/schedules", headers=staff, json=body).status_code == 403
    saved = httpx.post(f"{api}/api/schedules", headers=admin, json=body)
    assert saved.status_code == 200 and saved.json()["next_run_at"]
    assert httpx.post(f"{api}/api/schedules/hourly/pause", headers=staff).status_code == 403
    assert httpx.post(f"{api}/api/schedules/hourly/pause", headers=admin).json()["paused"] is True
    assert httpx.post(f"{api}/api/schedules/nope/resume", headers=admin).status_code == 404
    seen = httpx.get(f"{api}/api/schedules", headers=staff).json()
    assert [(s["name"], s["payload"]) for s in seen] == [("hourly", {})], "payloads are for admins only"
    assert httpx.get(f"{api}/api/schedules", headers=admin).json()[0]["payload"]["duration_s"] == 0
    ran = httpx.post(f"{api}/api/schedules/hourly/run", headers=admin)
    assert ran.status_code == 200 and ran.json()["last_job_id"]
    assert httpx.delete(f"{api}/api/schedules/hourly", headers=staff).status_code == 403
    assert httpx.delete(f"{api}/api/schedules/hourly", headers=admin).status_code == 204
    assert httpx.delete(f"{api}/api/schedules/hourly", headers=admin).status_code == 404


def test_a_worker_logs_the_active_schedules_at_start(start_worker, tmp_path) -> None:
    with Client() as client:
        client.save_schedule(Schedule(name="sweep", type="DEMO", payload={"duration_s": 0}, cron="0 */6 * * *"))
    start_worker()
    log = tmp_path / "worker-0.log"
    line = wait_until(lambda: next((x for x in log.read_text().splitlines() if "schedules: " in x), None), 15,
                      "the schedules line")
    assert "schedules: 1 active: sweep (DEMO, '0 */6 * * *') next " in line
