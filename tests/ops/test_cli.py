"""`python -m runner`: JSON shapes, exit codes and one-line errors, as scripts and operators rely on them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.models import Job
from tests.conftest import ROOT
from tests.polling import wait_until

JOB_FIELDS = {"id", "type", "payload", "user_id", "org_id", "status", "priority", "progress", "current_step", "steps",
              "attempts", "max_attempts", "queued_at", "started_at", "completed_at", "updated_at", "eta",
              "last_error", "result", "cancel_requested_by", "retried_from"}


def cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT, capture_output=True, text=True,
                          input=stdin, env={**os.environ, **(env or {})}, timeout=60)


def test_submit_show_list_json(redis_url: str) -> None:
    out = cli("submit", "DEMO", "--payload", '{"duration_s": 1}', "--priority", "high", "--json")
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record.keys() >= JOB_FIELDS
    assert record["status"] == "queued" and record["priority"] == "high"

    shown = json.loads(cli("show", record["id"], "--json").stdout)
    assert Job.model_validate(shown).id == record["id"]

    second = cli("submit", "DEMO").stdout.strip()
    listed = json.loads(cli("list", "--json").stdout)
    assert [j["id"] for j in listed] == [second, record["id"]]
    assert json.loads(cli("list", "--status", "completed", "--json").stdout) == []


def test_payload_from_file_and_stdin(redis_url: str, tmp_path: Path) -> None:
    path = tmp_path / "payload.json"
    path.write_text('{"output": "from a file"}')
    from_file = json.loads(cli("submit", "DEMO", "--payload", f"@{path}", "--json").stdout)
    assert from_file["payload"]["output"] == "from a file"
    from_stdin = json.loads(cli("submit", "DEMO", "--payload", "-", "--json", stdin='{"steps": 4}').stdout)
    assert from_stdin["payload"]["steps"] == 4


@pytest.mark.parametrize(("args", "message"), [
    (("submit", "DEMO", "--payload", '{"duration_s": -1}'),
     "error: invalid payload for DEMO: duration_s: Input should be greater than or equal to 0"),
    (("submit", "NOPE"), "error: unknown task type 'NOPE'"),
    (("submit", "DEMO", "--payload", "@/no/such/file"), "error: cannot read payload file '/no/such/file'"),
    (("show", "0" * 32), "error: job '" + "0" * 32 + "' not found"),
    (("cancel", "0" * 32), "error: job '" + "0" * 32 + "' not found"),
    (("retry", "0" * 32), "error: job '" + "0" * 32 + "' not found"),
])
def test_bad_input_is_one_line_and_exit_2(redis_url: str, args: tuple[str, ...], message: str) -> None:
    out = cli(*args)
    assert out.returncode == 2
    assert out.stderr.startswith(message) and out.stderr.count("\n") == 1, out.stderr
    assert "Traceback" not in out.stderr


def test_unreachable_redis_is_exit_1(redis_url: str) -> None:
    out = cli("list", env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert out.returncode == 1
    assert out.stderr.startswith("error: job queue unavailable") and "Traceback" not in out.stderr


def test_types_and_stats_json(redis_url: str) -> None:
    types = json.loads(cli("types", "--json", env={"TASKDECK_LLM_EMBEDDED": "0"}).stdout)  # the old refusal
    demo = next(t for t in types if t["name"] == "DEMO")
    assert set(demo) == {"name", "description", "schema", "unavailable"} and demo["unavailable"] is None
    plan = next(t for t in types if t["name"] == "GENERATE_MEDIA_PLAN")
    assert "needs an LLM endpoint: set TASKDECK_LLM_BASE_URL" in plan["unavailable"]
    assert demo["schema"]["properties"]["duration_s"]["maximum"] == 3600
    stats = json.loads(cli("stats", "--json").stdout)
    assert stats["queue_depth"] == {"high": 0, "normal": 0, "low": 0}
    assert set(stats["by_status"]) == {"queued", "processing", "retrying", "completed", "failed", "cancelled"}


def test_demo_from_the_cli_completes_with_three_steps(redis_url: str, worker) -> None:
    job_id = cli("submit", "DEMO", "--payload", '{"duration_s": 1, "steps": 3}').stdout.strip()
    record = wait_until(lambda: (j := json.loads(cli("show", job_id, "--json").stdout))["status"] == "completed" and j,
                        30, "the job to complete")
    assert record["progress"] == 100
    assert [s["status"] for s in record["steps"]] == ["completed"] * 3
    cancel = cli("cancel", job_id)
    assert cancel.returncode == 2 and "already completed" in cancel.stderr


def test_cancel_and_retry_from_the_cli(redis_url: str) -> None:
    job_id = cli("submit", "DEMO").stdout.strip()
    ops = {"TASKDECK_ROLES": '{"ops@x.io": "admin"}'}
    cancelled = json.loads(cli("cancel", job_id, "--json", "--as", "ops@x.io", env=ops).stdout)
    assert cancelled["cancel_requested_by"] == "ops@x.io"
    retried = json.loads(cli("retry", job_id, "--json").stdout)
    assert retried["status"] == "queued" and retried["retried_from"] == "cancelled"


def test_acting_as_users_and_their_roles(redis_url: str) -> None:
    roles = {"TASKDECK_ROLES": '{"*@staff.io": "staff", "ann@x.io": "analyst"}'}
    mine = cli("submit", "DEMO", "--as", "bob@staff.io", env=roles).stdout.strip()
    theirs = cli("submit", "DEMO").stdout.strip()
    listed = json.loads(cli("list", "--json", "--as", "bob@staff.io", env=roles).stdout)
    assert [j["id"] for j in listed] == [mine]
    hidden = cli("show", theirs, "--as", "bob@staff.io", env=roles)
    assert hidden.returncode == 2 and "not found" in hidden.stderr
    denied = cli("submit", "DEMO", "--as", "ann@x.io", env=roles)
    assert denied.returncode == 2 and "ann@x.io may not submit jobs (role analyst)" in denied.stderr
    stranger = cli("list", "--as", "eve@evil.io", env=roles)
    assert stranger.returncode == 2 and "eve@evil.io is not on the allow-list" in stranger.stderr
