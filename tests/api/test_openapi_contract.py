"""The HTTP API's OpenAPI document as a contract (issue 23): the committed snapshot, docs/openapi.json,
is what the API serves, and the document reads as an SDK once generated (compat/clients/run.py
generates and drives the clients themselves)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from http import HTTPStatus
from typing import Any

import pytest

from runner.api import create_app
from runner.api.problems import MEDIA_TYPE
from runner.api.schema import EVENT_NAMES, merge
from tests.conftest import ROOT

SNAPSHOT = ROOT / "docs" / "openapi.json"
REFRESH = "./taskdeck openapi > docs/openapi.json"
DEFAULT_MODULES = '["runner.tasks"]'
METHODS = ("get", "put", "post", "delete", "patch")
PROBLEM = {"$ref": "#/components/schemas/Problem"}


def served(task_modules: str) -> dict[str, Any]:
    """The document `python -m runner openapi` prints (the one GET /openapi.json serves) for these
    task modules: a process of its own, as the registry of this one holds the tests' task types."""
    env = {**os.environ, "TASKDECK_TASK_MODULES": task_modules}
    done = subprocess.run([sys.executable, "-m", "runner", "openapi"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Where two JSON documents differ, as paths (at most a few per branch)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for key in sorted(set(a) | set(b)) for d in differences(a.get(key), b.get(key), f"{where}/{key}")]
    return [] if a == b else [where or "/"]


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return create_app().openapi()


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, item in spec["paths"].items() for method, op in item.items()
            if method in METHODS]


def test_the_committed_snapshot_is_the_served_spec() -> None:
    live = served(DEFAULT_MODULES)
    snapshot = json.loads(SNAPSHOT.read_text())
    changed = differences(snapshot, live)
    assert not changed, (f"the API's contract changed: refresh the snapshot with `{REFRESH}` (the default "
                         "TASKDECK_TASK_MODULES) and review the diff: clients are generated from it. Changed: "
                         f"{', '.join(changed[:20])}")


def test_operations_read_as_an_sdk(spec: dict[str, Any]) -> None:
    declared = {tag["name"] for tag in spec["tags"]}
    ids = [op["operationId"] for _, _, op in operations(spec)]
    assert len(ids) == len(set(ids))
    for method, path, op in operations(spec):
        where = f"{method.upper()} {path}"
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", op["operationId"]), where
        assert not op["operationId"].endswith(f"_{method}"), f"{where}: FastAPI's default operation id"
        assert len(op["tags"]) == 1 and op["tags"][0] in declared, f"{where}: one tag, declared in `tags`"
        assert op.get("description"), f"{where}: a docstring, for the generated function's doc"


def test_errors_are_problems_each_with_when(spec: dict[str, Any]) -> None:
    for method, path, op in operations(spec):
        for code, response in op["responses"].items():
            if int(code) < 400 or op["operationId"] == "health":
                continue
            where = f"{method.upper()} {path} {code}"
            assert response["content"] == {MEDIA_TYPE: {"schema": PROBLEM}}, where
            assert response["description"] not in ("", HTTPStatus(int(code)).phrase), f"{where}: say when"
    assert set(spec["paths"]["/api/health"]["get"]["responses"]) == {"200", "503"}
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_get_job_declares_only_what_it_can_answer(spec: dict[str, Any]) -> None:
    """A malformed id answers 404 like a missing one (ids are not told apart from unknown ones): no 422."""
    assert set(spec["paths"]["/api/jobs/{job_id}"]["get"]["responses"]) == {"200", "401", "403", "404", "503"}


def test_a_task_module_of_a_teams_own_has_its_payloads_in_the_spec() -> None:
    """tests/tasks.py stands for a team's module: listing it is all it takes."""
    spec = served('["runner.tasks", "tests.sample_tasks"]')
    schemas = spec["components"]["schemas"]
    union = schemas["JobCreate"]
    assert union["discriminator"]["propertyName"] == "type"
    mapping = union["discriminator"]["mapping"]
    assert {"DEMO", "TEST_SLEEP", "TEST_FATAL"} <= set(mapping)
    sleep = schemas[mapping["TEST_SLEEP"].rsplit("/", 1)[1]]
    assert sleep["properties"]["type"]["const"] == "TEST_SLEEP"
    assert sleep["properties"]["payload"]["$ref"] == "#/components/schemas/SleepPayload"
    assert "seconds" in schemas["SleepPayload"]["properties"]


def test_the_event_stream_is_described(spec: dict[str, Any]) -> None:
    stream = spec["paths"]["/api/jobs/{job_id}/events"]["get"]["responses"]["200"]["content"]["text/event-stream"]
    frames = spec["components"]["schemas"][stream["x-itemSchema"]["$ref"].rsplit("/", 1)[1]]
    assert {ref["$ref"].rsplit("/", 1)[1] for ref in frames["anyOf"]} == {"SnapshotFrame", "EventFrame", "ResumeFrame"}
    assert spec["components"]["schemas"]["SnapshotFrame"]["properties"]["data"] == {"$ref": "#/components/schemas/Job"}


def test_every_event_name_the_transitions_write_is_documented() -> None:
    source = (ROOT / "runner" / "storage" / "transitions.py").read_text()
    written = set(re.findall(r'"event": \{"event": "([a-z_]+)"', source)) | {"retrying", "failed"}  # fail(): status
    assert written == set(EVENT_NAMES), "update runner/api/schema.py's EVENT_NAMES (and the snapshot)"


def test_a_payload_model_named_like_an_api_model_gets_a_name_of_its_own() -> None:
    """A team's payload model called `Job` must not replace (or take) the API's Job schema."""
    ref = "#/components/schemas/"
    schemas: dict[str, Any] = {"Job": {"title": "Job", "type": "object"}}
    definitions = {"Job": {"title": "Job", "type": "object", "properties": {"brand": {"type": "string"}}},
                   "TeamJobCreate": {"properties": {"payload": {"$ref": f"{ref}Job"}}}}
    union = {"oneOf": [{"$ref": f"{ref}TeamJobCreate"}],
             "discriminator": {"propertyName": "type", "mapping": {"TEAM": f"{ref}TeamJobCreate"}}}
    merge(schemas, definitions, {"JobCreate": union})
    assert schemas["Job"] == {"title": "Job", "type": "object"}
    assert schemas["Job2"]["properties"] == {"brand": {"type": "string"}}
    assert schemas["TeamJobCreate"]["properties"]["payload"] == {"$ref": f"{ref}Job2"}
    assert schemas["JobCreate"] == union
