"""Submit page: the form comes from the payload schema, submits through runner, shows errors per
field, and opens pre-filled from another job."""
from __future__ import annotations

from runner import Client, JobStatus
from tests.dashboard_fixtures import button, by_label, drive, open_page, texts


def choose(at, type_name: str):
    at.selectbox(key="submit_type").set_value(type_name).run()
    assert not at.exception
    return at


def test_demo_form_is_built_from_its_schema(client: Client) -> None:
    at = choose(open_page("submit"), "DEMO")
    duration = by_label(at.number_input, "Duration (s)")
    assert duration.value == 1.0 and duration.min == 0 and duration.max == 3600
    assert "spread over the steps" in duration.help
    assert by_label(at.number_input, "Steps").value == 1
    assert by_label(at.checkbox, "Fail always").value is False
    assert by_label(at.text_area, "Output").value == ""
    assert by_label(at.selectbox, "Priority").value == "normal"


def test_submit_creates_the_job_and_links_to_it(client: Client) -> None:
    at = choose(open_page("submit"), "DEMO")
    by_label(at.number_input, "Duration (s)").set_value(0.0)
    by_label(at.number_input, "Steps").set_value(3)
    by_label(at.selectbox, "Priority").set_value("high")
    button(at, "Submit job").click().run()
    jobs = client.list()
    assert len(jobs) == 1
    job = jobs[0]
    assert job.type == "DEMO" and job.payload["steps"] == 3 and job.payload["duration_s"] == 0
    assert job.priority == "high" and job.status is JobStatus.queued
    assert any(job.id[:8] in t.value for t in at.toast)
    assert f"job?id={job.id}" in "".join(t.value for t in at.toast)


def test_every_kind_of_field_maps_to_a_widget(client: Client) -> None:
    at = choose(open_page("submit"), "TEST_FORM_ZOO")
    assert by_label(at.text_input, "Code *").max_chars == 3
    assert by_label(at.number_input, "Count").value == 3
    assert by_label(at.number_input, "Ratio").max == 1
    assert by_label(at.checkbox, "Enabled").value is True
    assert by_label(at.selectbox, "Tone").options == ["warm", "formal"]
    assert by_label(at.selectbox, "Mode").options == ["fast", "thorough"]
    assert by_label(at.text_area, "Keywords — one per line").value == ""
    assert by_label(at.multiselect, "Tones").options == ["warm", "formal"]
    assert list(at.dataframe[0].value.columns) == ["name", "weight"]
    assert "**Brief *" in texts(at)
    assert by_label(at.text_input, "Brand *") and by_label(at.number_input, "Weeks").value == 4
    assert by_label(at.number_input, "Limit").value is None
    assert by_label(at.date_input, "Start").value is None
    assert by_label(at.text_area, "Extra (JSON)").value == ""
    assert by_label(at.text_area, "Notes").max_chars == 2000


def test_the_form_submits_nested_lists_and_json(client: Client) -> None:
    at = choose(open_page("submit"), "TEST_FORM_ZOO")
    by_label(at.text_input, "Code *").set_value("ABC")
    by_label(at.text_area, "Keywords — one per line").set_value("alpha\n\nbeta\n")
    by_label(at.multiselect, "Tones").set_value(["formal"])
    by_label(at.text_input, "Brand *").set_value("Acme")
    by_label(at.number_input, "Limit").set_value(7)
    by_label(at.text_area, "Extra (JSON)").set_value('{"a": [1, 2]}')
    button(at, "Submit job").click().run()
    assert not at.error, [e.value for e in at.error]
    payload = client.list()[0].payload
    assert payload["code"] == "ABC" and payload["keywords"] == ["alpha", "beta"] and payload["tones"] == ["formal"]
    assert payload["brief"] == {"brand": "Acme", "weeks": 4} and payload["limit"] == 7
    assert payload["extra"] == {"a": [1, 2]} and payload["start"] is None and payload["channels"] == []


def test_validation_errors_show_next_to_their_field_and_nothing_is_written(client: Client) -> None:
    at = choose(open_page("submit"), "TEST_FORM_ZOO")
    by_label(at.text_input, "Code *").set_value("abc")
    by_label(at.text_area, "Extra (JSON)").set_value("{not json")
    button(at, "Submit job").click().run()
    assert client.count() == 0
    errors = [e.value for e in at.error]
    assert any("not valid JSON" in e for e in errors), errors
    by_label(at.text_area, "Extra (JSON)").set_value("")
    button(at, "Submit job").click().run()
    errors = [e.value for e in at.error]
    assert any("String should match pattern" in e for e in errors), errors
    form = [child for child in at.get("form")[0].children.values()]
    code = next(i for i, e in enumerate(form) if getattr(e, "label", "") == "Code *")
    assert form[code + 1].type == "error" and "match pattern" in form[code + 1].value
    assert client.count() == 0


def test_retry_with_edited_inputs_opens_the_form_prefilled(client: Client) -> None:
    job = client.submit("DEMO", {"duration_s": 2.5, "steps": 4, "fail_always": True, "output": "draft"})
    drive(job.id, "failed", error="DemoFailure: simulated")
    at = open_page("submit", **{"from": job.id})
    assert at.selectbox(key="submit_type").value == "DEMO"
    assert by_label(at.number_input, "Duration (s)").value == 2.5
    assert by_label(at.number_input, "Steps").value == 4
    assert by_label(at.checkbox, "Fail always").value is True
    assert by_label(at.text_area, "Output").value == "draft"
    assert "Pre-filled from job" in texts(at)
    by_label(at.checkbox, "Fail always").uncheck()
    button(at, "Submit job").click().run()
    fresh = [j for j in client.list() if j.id != job.id]
    assert len(fresh) == 1 and fresh[0].payload["fail_always"] is False and fresh[0].payload["steps"] == 4


def test_a_list_of_models_is_an_editable_table_that_round_trips(client: Client) -> None:
    job = client.submit("TEST_FORM_ZOO", {"code": "XYZ", "brief": {"brand": "Acme"},
                                          "channels": [{"name": "email", "weight": 2}, {"name": "tv"}]})
    at = open_page("submit", **{"from": job.id})
    assert at.dataframe[0].value.to_dict("records") == [{"name": "email", "weight": 2.0},
                                                         {"name": "tv", "weight": 1.0}]
    button(at, "Submit job").click().run()
    fresh = [j for j in client.list() if j.id != job.id][0]
    assert fresh.payload["channels"] == job.payload["channels"]
    assert fresh.payload["brief"] == job.payload["brief"]
