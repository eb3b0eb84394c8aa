"""Settings page (admins): running-limit overrides beside the defaults, schedules managed end to end,
the audit log; everyone else is told it is for admins."""
from __future__ import annotations

import json

import pytest

from runner import Client, JobStatus
from runner.client.schedules import Schedule
from tests.dashboard_fixtures import button, by_label, open_page, texts


def frame(at, table: str):
    """The table on the page with a column named by `TABLES[table]`."""
    found = [d.value for d in at.dataframe if TABLES[table] in d.value.columns]
    assert found, f"no {table} table"
    return found[0]


TABLES = {"limits": "Default", "schedules": "Cron", "audit": "What"}


def test_defaults_and_overrides_are_shown(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKDECK_MAX_RUNNING_PER_USER", "4")
    monkeypatch.setenv("TASKDECK_MAX_RUNNING_PER_TYPE", json.dumps({"DEMO": 2}))
    client.set_limit("org", "acme", 7)
    at = open_page("settings")
    defaults = at.dataframe[0].value.to_dict("records")
    assert [(r["Scope"], r["Applies to"], str(r["Running at most"])) for r in defaults] == [
        ("user", "every user", "4"), ("org", "every organisation", "50"), ("global", "all jobs together", "no limit"),
        ("type", "DEMO", "2")]
    assert frame(at, "limits").to_dict("records") == [
        {"Scope": "org", "Name": "acme", "Running at most": 7, "Default": "50"}]


def test_set_and_remove_a_limit(client: Client) -> None:
    at = open_page("settings")
    assert "No overrides" in texts(at)
    at.text_input(key="limit_name_user").set_value("Bob@X.io")
    at.number_input(key="limit_value").set_value(3)
    button(at, "Save override").click().run()
    assert client.limits() == {"user:bob@x.io": 3}
    assert frame(at, "limits")["Running at most"][0] == 3
    at.selectbox(key="limit_kind").set_value("type").run()
    at.selectbox(key="limit_type").set_value("DEMO")
    at.number_input(key="limit_value").set_value(0)
    button(at, "Save override").click().run()
    assert client.limits() == {"user:bob@x.io": 3, "type:DEMO": 0}
    button(at, "Remove override").click().run()
    assert client.limits() == {"user:bob@x.io": 3}
    assert [e["action"] for e in client.audit()][:3] == ["set limit type:DEMO = None", "set limit type:DEMO = 0",
                                                         "set limit user:bob@x.io = 3"]


def test_add_pause_run_and_delete_a_schedule(client: Client) -> None:
    at = open_page("settings")
    at.selectbox(key="sched_type").set_value("DEMO").run()
    at.text_input(key="sched_name").set_value("nightly-demo")
    at.text_input(key="sched_cron").set_value("0 3 * * *")
    at.selectbox(key="sched_priority").set_value("low")
    by_label(at.number_input, "Steps").set_value(3)
    button(at, "Save schedule").click().run()
    assert not at.error, [e.value for e in at.error]
    [saved] = client.schedules()
    assert (saved.name, saved.type, saved.cron, saved.priority, saved.paused) == (
        "nightly-demo", "DEMO", "0 3 * * *", "low", False)
    assert saved.payload["steps"] == 3
    assert frame(at, "schedules")["Name"][0] == "nightly-demo"

    button(at, "Pause").click().run()
    assert client.schedules()[0].paused
    assert frame(at, "schedules")["State"][0] == "paused"
    button(at, "Resume").click().run()
    assert not client.schedules()[0].paused

    button(at, "Run now").click().run()
    [job] = client.list()
    assert job.type == "DEMO" and job.payload["steps"] == 3 and job.priority == "low"
    assert job.status is JobStatus.queued
    assert client.schedules()[0].last_job_id == job.id

    button(at, "Delete schedule").click().run()
    assert client.schedules() == []
    assert "No schedules yet" in texts(at)
    audit = frame(at, "audit")
    assert list(audit["What"])[:4] == ["delete schedule nightly-demo", "submit", "resume schedule nightly-demo",
                                       "pause schedule nightly-demo"]
    assert set(audit["Who"]) == {"admin@local"}


def test_schedule_errors_show_and_nothing_is_saved(client: Client) -> None:
    at = open_page("settings")
    at.selectbox(key="sched_type").set_value("TEST_FORM_ZOO").run()
    at.text_input(key="sched_name").set_value("bad name!")
    at.text_input(key="sched_cron").set_value("every day")
    button(at, "Save schedule").click().run()
    errors = " ".join(e.value for e in at.error)
    assert "name: String should match pattern" in errors and "is not a cron expression" in errors
    at.text_input(key="sched_name").set_value("zoo")
    at.text_input(key="sched_cron").set_value("*/5 * * * *")
    by_label(at.text_input, "Code *").set_value("abc")
    button(at, "Save schedule").click().run()
    assert any("String should match pattern" in e.value for e in at.error)
    assert client.schedules() == []


def test_edit_loads_a_schedule_into_the_form(client: Client) -> None:
    client.save_schedule(Schedule(name="zoo", type="TEST_FORM_ZOO", cron="0 * * * *", priority="high",
                                  payload={"code": "ABC", "brief": {"brand": "Acme"}, "keywords": ["a", "b"]}))
    at = open_page("settings")
    button(at, "Edit").click().run()
    assert at.selectbox(key="sched_type").value == "TEST_FORM_ZOO"
    assert at.text_input(key="sched_cron").value == "0 * * * *"
    assert by_label(at.text_input, "Code *").value == "ABC"
    assert by_label(at.text_area, "Keywords — one per line").value == "a\nb"
    at.text_input(key="sched_cron").set_value("30 * * * *")
    button(at, "Save schedule").click().run()
    [saved] = client.schedules()
    assert saved.cron == "30 * * * *" and saved.payload["keywords"] == ["a", "b"] and saved.priority == "high"


@pytest.mark.parametrize("role", ["staff", "analyst"])
def test_settings_are_for_admins_only(client: Client, monkeypatch: pytest.MonkeyPatch, role: str) -> None:
    monkeypatch.setenv("TASKDECK_ROLES", json.dumps({"pat@x.io": role}))
    at = open_page("settings", as_user="pat@x.io")
    assert f"Settings are for admins only; your role is {role}" in texts(at)
    assert not at.dataframe and not at.tabs and not [b for b in at.button if b.label != "Log out"]
