"""The LLM layer on the dashboard: tokens and cost on Live, History (and its CSV), Job (per step and call,
streamed output) and Metrics; the endpoint, its circuit breakers and the sources on Workers with their
admin buttons; Submit with types this deployment cannot run, and submit errors as plain messages.
Usage is written as the LLM client writes it (runner.llm.usage.record), breakers and sources through
their own modules."""
from __future__ import annotations

import asyncio
import json

import pytest

from runner import AsyncClient, Client
from runner.llm.breaker import Breaker
from runner.llm.usage import Call
from runner.reads.history import HistoryQuery
from runner.web import sources as found_sources
from tests.dashboard_fixtures import button, drive, open_page, texts

HOSTILE = "<script>alert(1)</script> **bold** [link](http://evil.example)"
ENDPOINT = "127.0.0.1:9/v1"


def calls() -> list[Call]:
    return [Call(model="gpt-4o-mini", tokens_in=1000, tokens_out=200, cost_usd=0.00027, seconds=1.25, step="Draft",
                 part="week 1"),
            Call(model="gpt-4o-mini", tokens_in=500, tokens_out=100, cost_usd=0.000135, seconds=0.5, step="Review",
                 throttled=1)]


def test_live_and_history_show_tokens_and_cost_and_the_csv_has_them(client: Client) -> None:
    running = client.submit("DEMO", {"duration_s": 5})
    drive(running.id, "processing", calls=calls())
    at = open_page("live")
    row = at.dataframe[0].value.iloc[0]
    assert row["Tokens"] == 1800 and row["Cost"] == pytest.approx(0.000405)

    done = client.submit("DEMO", {})
    drive(done.id, "completed", result={}, calls=calls()[:1])
    at = open_page("history")
    row = at.dataframe[0].value.iloc[0]
    assert (row["Job"], row["Tokens"], row["Cost"]) == (f"job?id={done.id}", 1200, pytest.approx(0.00027))
    header, line = "".join(client.export_csv(HistoryQuery())).splitlines()
    values = dict(zip(header.split(","), line.split(","), strict=True))
    assert (values["tokens_in"], values["tokens_out"], float(values["cost_usd"])) == ("1000", "200", 0.00027)


def test_the_job_page_shows_usage_per_step_and_call_and_the_streamed_output(client: Client) -> None:
    job = client.submit("DEMO", {"duration_s": 5})
    drive(job.id, "processing", calls=calls(), partial=f"## Draft\n{HOSTILE}")
    at = open_page("job", id=job.id)
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Tokens in"], metrics["Tokens out"], metrics["Cost"]) == ("1,500", "300", "$0.0004")
    assert f"## Draft\n{HOSTILE}" in [c.value for c in at.code]
    assert "**Streamed output**" in texts(at) and "As the job writes it" in texts(at)
    assert HOSTILE not in texts(at)
    steps, log = (d.value for d in at.dataframe if "Tokens in" in d.value.columns)
    assert steps.to_dict("records") == [
        {"Step": "Draft", "Calls": 1, "Tokens in": 1000, "Tokens out": 200, "Cost": 0.00027},
        {"Step": "Review", "Calls": 1, "Tokens in": 500, "Tokens out": 100, "Cost": 0.000135}]
    assert list(log["Part"]) == ["week 1", ""] and list(log["Throttled"]) == [0, 1]

    other = client.submit("DEMO", {})
    drive(other.id, "completed", result={"ok": True}, partial="kept text")
    at = open_page("job", id=other.id)
    assert "kept text" in [c.value for c in at.code] and "Kept from the run." in texts(at)
    assert "No LLM calls." in texts(at) and "Tokens in" not in [m.label for m in at.metric]


def test_metrics_show_cost_over_time_and_by_type_user_and_model(client: Client) -> None:
    drive(client.submit("DEMO", {}, user="ana@x.io").id, "completed", result={}, calls=calls())
    drive(client.submit("TEST_SLEEP", {"seconds": 0}).id, "completed", result={}, calls=calls()[:1])
    at = open_page("metrics")
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Cost"], metrics["Tokens in"], metrics["LLM calls"], metrics["Throttled (429)"]) == (
        "$0.0007", "2,500", "3", "1")
    assert "Cost and tokens per minute" in texts(at)
    by = {d.value.columns[0]: dict(zip(d.value.iloc[:, 0], d.value["Cost"], strict=True)) for d in at.dataframe
          if list(d.value.columns)[1:] == ["Cost"]}
    assert by["Task type"] == {"DEMO": pytest.approx(0.000405), "TEST_SLEEP": pytest.approx(0.00027)}
    assert by["User"] == {"ana@x.io": pytest.approx(0.000405), "admin@local": pytest.approx(0.00027)}
    assert by["Model"] == {"gpt-4o-mini": pytest.approx(0.000675)}


def test_workers_page_without_an_endpoint_says_what_to_set(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKDECK_LLM_EMBEDDED", "0")  # else the embedded demo model stands in (test_embedded.py)
    at = open_page("workers")
    assert "`TASKDECK_LLM_BASE_URL` and `TASKDECK_LLM_MODEL`" in texts(at)
    assert "No web page or RSS feed has been read yet" in texts(at)


def test_workers_page_names_the_embedded_demo_model(client: Client) -> None:
    at = open_page("workers")
    assert "demo model" in " ".join(m.value for m in at.markdown)
    assert "TASKDECK_LLM_BASE_URL" in texts(at) and "each worker's own" in str(at.dataframe[0].value)


async def trouble(url: str) -> None:
    async with AsyncClient() as ac:
        prefix = ac.settings.prefix
        breaker = Breaker(ac.store.redis, prefix, ENDPOINT, failures=ac.settings.llm_breaker_failures,
                          cooldown_s=60)
        for _n in range(ac.settings.llm_breaker_failures):
            await breaker.failed(f"HTTP 503 {HOSTILE}")
        for _n in range(found_sources.UNHEALTHY_AFTER):
            await found_sources.failed(ac.store.redis, prefix, "user:sam@x.io", url, "rss",
                                       f"could not fetch: {HOSTILE}")


def test_workers_page_shows_the_endpoint_breakers_and_sources_and_admins_fix_them(
        client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKDECK_LLM_BASE_URL", f"http://{ENDPOINT}")
    monkeypatch.setenv("TASKDECK_LLM_MODEL", "gpt-4o-mini")
    monkeypatch.setenv("TASKDECK_ROLES", json.dumps({"sam@x.io": "staff"}))
    url = found_sources.canonical("http://feeds.example/news.xml")
    asyncio.run(trouble(url))
    with Client() as fresh:  # settings read now, with the endpoint set
        fresh_status = fresh.llm_status()
    assert fresh_status.breaker.state == "open"

    at = open_page("workers")
    endpoint = next(d.value for d in at.dataframe if "Model" in d.value.columns).iloc[0]
    assert (endpoint["Endpoint"], endpoint["Model"], endpoint["Circuit"]) == (ENDPOINT, "gpt-4o-mini", "open")
    assert "circuit open" in texts(at)
    breakers = next(d.value for d in at.dataframe if "Failures in a row" in d.value.columns
                    and "Endpoint" in d.value.columns)
    assert breakers.to_dict("records")[0] | {"Open until": None, "Last failure": None} == {
        "Endpoint": ENDPOINT, "State": "open", "Failures in a row": "5 of 5", "Open until": None,
        "Last error": f"HTTP 503 {HOSTILE}", "Last failure": None, "Last success": None}
    feeds = next(d.value for d in at.dataframe if "Source" in d.value.columns)
    assert (feeds["Source"][0], feeds["Health"][0], feeds["Failures in a row"][0]) == (url, "unhealthy", 5)
    assert HOSTILE not in texts(at)

    staff = open_page("workers", as_user="sam@x.io")
    assert not [b for b in staff.button if b.label in ("Reset", "Re-enable", "Run now")]
    assert "1 unhealthy" in texts(staff)

    button(at, "Reset").click().run()
    assert client.breakers()[0].state == "closed" and client.breakers()[0].failures == 0
    button(at, "Re-enable").click().run()
    assert client.sources()[0].healthy
    assert not [b for b in at.button if b.label in ("Reset", "Re-enable")]
    assert [e["action"] for e in client.audit()][:2] == [f"re-enable source {url}",
                                                         f"reset circuit breaker {ENDPOINT}"]


def test_submit_lists_types_it_cannot_run_and_disables_their_form(client: Client,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKDECK_LLM_EMBEDDED", "0")  # else the embedded demo model stands in (test_embedded.py)
    at = open_page("submit")
    at.selectbox(key="submit_type").set_value("GENERATE_BRAND_KIT").run()
    assert "GENERATE_BRAND_KIT needs an LLM endpoint: set TASKDECK_LLM_BASE_URL" in texts(at)
    assert button(at, "Submit job").disabled
    options = at.selectbox(key="submit_type").options
    assert next(o for o in options if o.startswith("GENERATE_BRAND_KIT")).endswith("(not set up here)")
    assert options[0].startswith("DEMO") or not options[0].endswith("(not set up here)")


def test_a_refused_submit_shows_runners_message(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKDECK_MAX_SUBMITS_PER_USER_PER_HOUR", "1")
    with Client() as limited:
        limited.submit("DEMO", {})
    at = open_page("submit")
    at.selectbox(key="submit_type").set_value("DEMO").run()
    button(at, "Submit job").click().run()
    assert "admin@local has submitted 1 jobs in the last hour" in at.error[0].value
    assert client.count() == 1 and not at.exception
