"""Job page: one job's whole story, its actions, and job text never rendered as markup."""
from __future__ import annotations

import orjson

from runner import Client, JobStatus
from tests.dashboard_fixtures import button, drive, open_page, texts

HOSTILE = "<script>alert(1)</script> **bold** [link](http://evil.example) ![img](http://evil.example/x.png)"


def code_blocks(at) -> list[str]:
    return [c.value for c in at.code]


def test_a_completed_job_shows_steps_output_payload_attempts_and_audit(client: Client) -> None:
    job = client.submit("DEMO", {"duration_s": 0, "output": "hello"})
    drive(job.id, "completed", result={"output": "hello", "n": 3})
    at = open_page("job", id=job.id)
    assert at.title[0].value == f"DEMO · {job.id[:8]}"
    assert "completed" in texts(at)
    assert [m.value for m in at.metric][:2] == ["100 %", "1 of 3"]
    assert len(at.get("plotly_chart")) == 1
    steps = at.dataframe[0].value
    assert list(steps["Name"]) == ["Prepare", "Write"] and set(steps["Status"]) == {"completed"}
    assert [orjson.loads(j.value) for j in at.json] == [{"output": "hello", "n": 3}, job.payload]
    assert "**Attempt 1**" in texts(at)
    audit = at.dataframe[1].value
    assert audit["What"][0] == "Submitted" and audit["Who"][0] == "admin@local"
    assert [b.disabled for b in at.button if b.label in ("Cancel", "Retry")] == [True, True]


def test_a_failed_job_shows_errors_and_tracebacks_as_text_and_can_be_retried(client: Client) -> None:
    job = client.submit("DEMO", {"fail_always": True, "output": HOSTILE})
    drive(job.id, "failed", error=f"ValueError: {HOSTILE}")
    at = open_page("job", id=job.id)
    assert f"ValueError: {HOSTILE}" in code_blocks(at)
    assert any(block.startswith("Traceback") and HOSTILE in block for block in code_blocks(at))
    assert HOSTILE not in texts(at)
    assert not any(getattr(m.proto, "allow_html", False) for m in at.markdown)
    button(at, "Retry").click().run()
    again = client.get(job.id)
    assert again.status is JobStatus.queued and again.retried_by == "admin@local" and again.retried_from == "failed"
    assert "Retried from failed" in list(at.dataframe[-1].value["What"])


def test_cancel_a_queued_job(client: Client) -> None:
    job = client.submit("DEMO", {"duration_s": 5})
    at = open_page("job", id=job.id)
    button(at, "Cancel").click().run()
    cancelled = client.get(job.id)
    assert cancelled.status is JobStatus.cancelled and cancelled.cancel_requested_by == "admin@local"
    assert "Cancel requested" in list(at.dataframe[-1].value["What"])


def test_a_running_job_shows_progress_and_partial_output(client: Client) -> None:
    job = client.submit("DEMO", {"duration_s": 5, "steps": 2})
    drive(job.id, "processing")
    at = open_page("job", id=job.id)
    assert "processing" in texts(at)
    assert at.get("progress")[0].proto.value == 70
    assert list(at.dataframe[0].value["Status"]) == ["completed", "running"]
    assert [b.disabled for b in at.button if b.label == "Cancel"] == [False]


def test_a_large_result_is_an_artifact_with_a_download(client: Client) -> None:
    job = client.submit("DEMO", {})
    big = {"text": "x" * (client.settings.max_result_bytes + 10)}
    drive(job.id, "completed", result=big)
    at = open_page("job", id=job.id)
    assert "kept as an artifact" in texts(at)
    assert any(b.proto.label == "Download the full result (JSON)" for b in at.get("download_button"))
    assert orjson.loads(client.artifact(job.id)) == big


def test_unknown_and_missing_ids(client: Client) -> None:
    at = open_page("job", id="0" * 32)
    assert "not found" in texts(at)
    recent = client.submit("DEMO", {})
    at = open_page("job")
    assert at.text_input[0].label == "Job id"
    assert any(recent.id[:8] in str(link.proto.label) for link in at.get("page_link"))
