"""History page: server-side pages, filters, search, bulk retry with confirmation, CSV export."""
from __future__ import annotations

from datetime import date, timedelta

from runner import Client, JobStatus
from runner.reads.history import HistoryQuery
from tests.dashboard_fixtures import button, drive, open_page, texts


def finished(client: Client, n: int, outcome: str = "completed", **payload: object) -> list[str]:
    ids = []
    for i in range(n):
        job = client.submit("DEMO", dict(payload))
        drive(job.id, outcome, error=f"DemoFailure: boom {i}" if outcome == "failed" else None, result={"i": i})
        ids.append(job.id)
    return ids


def test_empty_history(client: Client) -> None:
    at = open_page("history")
    assert "No jobs match these filters" in texts(at)
    assert "of 0" in texts(at)


def test_pages_are_read_from_redis_newest_first(client: Client) -> None:
    ids = finished(client, 30)
    at = open_page("history")
    at.selectbox(key="h_size").set_value(25).run()
    first = at.dataframe[0].value
    assert len(first) == 25 and list(first["Job"])[0] == f"job?id={ids[-1]}"
    assert "Jobs 1–25 of 30" in texts(at) and "Page 1 of 2" in texts(at)
    button(at, "Next").click().run()
    assert [f"job?id={i}" for i in reversed(ids[:5])] == list(at.dataframe[0].value["Job"])
    assert "Page 2 of 2" in texts(at)


def test_filters_and_search(client: Client) -> None:
    done = finished(client, 3)
    failed = finished(client, 2, "failed", fail_always=True)
    queued = client.submit("DEMO", {})
    at = open_page("history")
    assert len(at.dataframe[0].value) == 5
    at.multiselect(key="h_status").set_value(["failed"]).run()
    assert set(at.dataframe[0].value["Job"]) == {f"job?id={i}" for i in failed}
    at.multiselect(key="h_status").set_value([]).run()
    assert len(at.dataframe[0].value) == 6
    at.text_input(key="h_id").set_value(queued.id[:10]).run()
    assert list(at.dataframe[0].value["Job"]) == [f"job?id={queued.id}"]
    at.text_input(key="h_id").set_value("").run()
    at.text_input(key="h_error").set_value("BOOM 1").run()
    assert list(at.dataframe[0].value["Job"]) == [f"job?id={failed[1]}"]
    at.text_input(key="h_error").set_value("").run()
    at.text_input(key="h_user").set_value("someone@else.io").run()
    assert at.dataframe[0].value.empty
    at.text_input(key="h_user").set_value("ADMIN@local").run()
    assert len(at.dataframe[0].value) == 6
    at.selectbox(key="h_type").set_value("TEST_SLEEP").run()
    assert at.dataframe[0].value.empty
    at.selectbox(key="h_type").set_value("DEMO").run()
    yesterday = date.today() - timedelta(days=1)
    at.date_input(key="h_dates").set_value((yesterday - timedelta(days=3), yesterday)).run()
    assert at.dataframe[0].value.empty
    at.date_input(key="h_dates").set_value((yesterday, date.today() + timedelta(days=1))).run()
    assert len(at.dataframe[0].value) == 6
    assert done


def test_retry_selected_failed_jobs(client: Client) -> None:
    failed = finished(client, 3, "failed", fail_always=True)
    at = open_page("history")
    at.session_state[f"history_table_{at.session_state['h_signature']}_1"] = {
        "selection": {"rows": [0, 2], "columns": [], "cells": []}}
    at.run()
    button(at, "Retry selected (2)").click().run()
    statuses = [client.get(i).status for i in failed]
    assert statuses == [JobStatus.queued, JobStatus.failed, JobStatus.queued]
    assert any("Retried 2 job(s)" in t.value for t in at.toast)


def test_retry_all_failed_matching_asks_first(client: Client) -> None:
    failed = finished(client, 3, "failed", fail_always=True)
    finished(client, 2)
    at = open_page("history")
    button(at, "Retry all failed matching").click().run()
    assert "Queue **3** failed jobs" in texts(at)
    assert all(client.get(i).status is JobStatus.failed for i in failed)
    button(at, "Retry 3 jobs").click().run()
    assert all(client.get(i).status is JobStatus.queued for i in failed)
    assert any("Retried 3 job(s)" in t.value for t in at.toast)


def test_csv_export_streams_the_filtered_set(client: Client) -> None:
    ids = finished(client, 3)
    bad = client.submit("DEMO", {"fail_always": True})
    drive(bad.id, "failed", error="=HYPERLINK(\"http://evil\")")
    at = open_page("history")
    assert any(b.proto.label == "Export CSV" for b in at.get("download_button"))
    chunks = list(client.export_csv(HistoryQuery()))
    assert chunks[0].startswith("id,type,status")
    lines = "".join(chunks).splitlines()
    assert len(lines) == 5 and {line.split(",")[0] for line in lines[1:]} == {*ids, bad.id}
    assert "'=HYPERLINK" in "".join(chunks)
    only_failed = "".join(client.export_csv(HistoryQuery(status=[JobStatus.failed]))).splitlines()
    assert len(only_failed) == 2
