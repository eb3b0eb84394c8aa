"""Live page: active jobs oldest first with progress, steps, queue position and stalled flag;
selection survives refreshes; cancel selected; finished jobs stay until cleared."""
from __future__ import annotations

from runner import Client, JobStatus
from tests.dashboard_fixtures import button, drive, open_page, texts


def select(at, *rows: int):
    selection = {"selection": {"rows": list(rows), "columns": [], "cells": []}}
    at.session_state[f"live_table_{at.session_state['live_table']}"] = selection
    return at.run()


def test_empty_store_says_so(client: Client) -> None:
    at = open_page("live")
    assert "No queued or running jobs" in texts(at)
    assert [m.value for m in at.metric][:4] == ["0", "0", "0", "0"]
    assert "0 of my jobs running" in texts(at)


def test_active_jobs_oldest_first_with_progress_step_and_queue_position(client: Client) -> None:
    first = client.submit("DEMO", {"duration_s": 5, "steps": 2})
    second = client.submit("DEMO", {"duration_s": 5}, priority="low")
    third = client.submit("DEMO", {"duration_s": 5})
    drive(first.id, "processing")
    at = open_page("live")
    frame = at.dataframe[0].value
    assert list(frame["Job"]) == [f"job?id={j.id}" for j in (first, second, third)]
    assert list(frame["Status"]) == ["processing", "queued", "queued"]
    assert frame["Progress"][0] == 0.7 and frame["Step"][0] == "Write" and frame["Step n of m"][0] == "2 of 2"
    assert frame["ETA"][0].startswith("in ")
    assert list(frame["Queue"]) == ["—", "#2", "#1"]  # normal runs before low
    assert [m.value for m in at.metric][:4] == ["0", "1", "1", "0"]  # waiting per priority; no worker
    assert "1 of my jobs running" in texts(at)


def test_a_silent_running_job_is_marked_stalled(client: Client) -> None:
    job = client.submit("DEMO", {"duration_s": 5})
    drive(job.id, "processing", ago_s=client.settings.stalled_after_s + 5)
    at = open_page("live")
    assert at.dataframe[0].value["Status"][0] == "processing · stalled"
    assert "1 stalled" in texts(at)


def test_selection_survives_a_refresh_and_cancel_selected_cancels_those_jobs(client: Client) -> None:
    keep, drop, also = (client.submit("DEMO", {"duration_s": 5}) for _ in range(3))
    at = select(open_page("live"), 1)
    newer = client.submit("DEMO", {"duration_s": 5})
    at.run()
    frame = at.dataframe[0].value
    assert list(frame["Job"])[-1] == f"job?id={newer.id}"
    assert button(at, "Cancel selected (1)")
    button(at, "Cancel selected").click().run()
    assert client.get(drop.id).status is JobStatus.cancelled
    assert {client.get(j.id).status for j in (keep, also, newer)} == {JobStatus.queued}
    assert any("Cancelled 1 of 1" in t.value for t in at.toast)
    assert list(at.dataframe[0].value["Status"]) == ["queued", "cancelled", "queued", "queued"]


def test_finished_jobs_stay_in_place_until_cleared(client: Client) -> None:
    done, waiting = client.submit("DEMO", {}), client.submit("DEMO", {})
    at = open_page("live")
    drive(done.id, "completed", result={"ok": True})
    at.run()
    frame = at.dataframe[0].value
    assert list(frame["Status"]) == ["completed", "queued"] and frame["Progress"][0] == 1.0
    button(at, "Clear finished").click().run()
    assert list(at.dataframe[0].value["Job"]) == [f"job?id={waiting.id}"]


def test_only_my_jobs(client: Client) -> None:
    client.submit("DEMO", {}, user="admin@local")
    at = open_page("live")
    at.toggle(key="live_mine").set_value(True).run()
    assert len(at.dataframe[0].value) == 1
