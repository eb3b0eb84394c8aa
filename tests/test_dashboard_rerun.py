"""Job page, issue 15: a rerun names the job it reruns and marks the steps it reused; "Rerun from a step" on a
finished job runs it again as a new job with an edited payload (bad JSON and payloads runner refuses create
nothing), only for whoever may retry the job; a job's spend caps show beside its tokens and cost.

The old jobs' checkpoints are made by a test task type's own `ctx.run` calls, run as a worker runs them
(tests/inline.py, the worker's Redis checkpoint store); their records are driven to completed as a worker
would (tests/dashboard_fixtures.py)."""
from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

import pytest
import redis
from pydantic import BaseModel, Field

from runner import Client, Job, JobStatus, TaskContext, task
from runner.worker import runtime
from tests.dashboard_fixtures import button, drive, open_page, texts
from tests.inline import Run

TYPE = "TEST_RERUN_UI"
STEPS = ["Outline", "Draft", "Polish"]
HOSTILE = "[click](http://evil.example) **bold** <b>x</b>"


class Topic(BaseModel):
    topic: str = Field(max_length=100)


def note(step: str, topic: str) -> str:
    return f"{step} about {topic}"


@task(TYPE, payload=Topic, steps=STEPS, max_attempts=1)
async def three_checkpoints(ctx: TaskContext, payload: Topic) -> dict[str, str]:
    """Three steps, each a checkpoint."""
    return {step: await ctx.run(step, functools.partial(note, step, payload.topic)) for step in STEPS}


async def _run(job: Job) -> None:
    try:
        await Run(job.id, TYPE, user_id=job.user_id)(job.payload)
    finally:
        await runtime.close()


def finished(client: Client, user: str | None = None) -> Job:
    """A completed job of TYPE whose three checkpoints are stored."""
    job = client.submit(TYPE, {"topic": "coffee"}, user=user)
    asyncio.run(_run(job))
    return drive(job.id, "completed", result={step: note(step, "coffee") for step in STEPS})


def reruns_of(client: Client, job_id: str) -> list[Job]:
    return [j for j in client.list(limit=200) if j.rerun_of == job_id]


def test_a_rerun_names_its_old_job_and_marks_the_steps_it_reused(client: Client, r: redis.Redis) -> None:
    old = finished(client)
    assert sorted(r.hkeys(f"taskdeck:checkpoints:{old.id}")) == sorted(STEPS)
    new = client.retry(old.id, from_step="Polish")
    assert new.reused_steps == ["Outline", "Draft"]

    at = open_page("job", id=new.id)
    assert (f"Rerun of [job {old.id[:8]}](job?id={old.id}) from step `Polish`; reused: `Outline`, `Draft`"
            in texts(at))
    steps = at.dataframe[0].value
    assert list(steps["Name"]) == STEPS and list(steps["Reused"]) == ["reused", "reused", ""]

    at = open_page("job", id=old.id)
    assert "Rerun of" not in texts(at) and "Reused" not in at.dataframe[0].value.columns


def test_the_form_reruns_a_finished_job_from_a_step_with_an_edited_payload(client: Client) -> None:
    old = finished(client)
    at = open_page("job", id=old.id)
    assert [e.label for e in at.expander] == ["Rerun from a step"]
    step = at.selectbox[0]
    assert step.label == "From step" and step.options == STEPS and step.value == "Outline"
    assert json.loads(at.text_area[0].value) == {"topic": "coffee"}

    step.set_value("Draft")
    at.text_area[0].input(json.dumps({"topic": "tea"}))
    button(at, "Rerun").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    [new] = reruns_of(client, old.id)
    assert (new.payload, new.reused_steps, new.status) == ({"topic": "tea"}, ["Outline"], JobStatus.queued)
    assert f"Rerun queued as job `{new.id}`; reused: `Outline`" in texts(at)
    assert [link.proto.query_string for link in at.get("page_link")
            if link.proto.label == f"Open job `{new.id[:8]}`"] == [f"id={new.id}"]
    assert client.get(old.id).status is JobStatus.completed, "the old job is left as it was"


@pytest.mark.parametrize(("typed", "said"), [
    ('{"topic": "tea"', "The payload is not valid JSON (`Expecting ',' delimiter` at line 1, column 16); nothing was "
                        "submitted."),
    ('["tea"]', "The payload must be a JSON object ({...}), not `list`; nothing was submitted."),
    (json.dumps({"topic": HOSTILE * 3}),  # refused by runner: its message, as typed (ui/alerts.py)
     "`invalid payload for TEST_RERUN_UI: topic: String should have at most 100 characters`"),
])
def test_a_payload_that_cannot_run_is_refused_and_nothing_is_created(client: Client, r: redis.Redis, typed: str,
                                                                     said: str) -> None:
    old = finished(client)
    keys = set(r.keys("taskdeck:job:*"))
    at = open_page("job", id=old.id)
    at.text_area[0].input(typed)
    button(at, "Rerun").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [said]
    assert set(r.keys("taskdeck:job:*")) == keys and reruns_of(client, old.id) == []
    assert "Rerun queued" not in texts(at)


def test_the_form_is_only_for_finished_jobs_that_the_viewer_may_retry(client: Client,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKDECK_ROLES", json.dumps({"sam@x.io": "staff", "ann@x.io": "analyst"}))
    own, other = finished(client, user="sam@x.io"), finished(client, user="bob@x.io")
    active = client.submit(TYPE, {"topic": "tea"}, user="sam@x.io")

    at = open_page("job", as_user="sam@x.io", id=own.id)
    assert [e.label for e in at.expander] == ["Rerun from a step"]
    at = open_page("job", as_user="sam@x.io", id=active.id)
    assert not at.expander and not at.text_area
    at = open_page("job", as_user="sam@x.io", id=other.id)
    assert "not found" in texts(at) and not at.expander and not at.text_area
    at = open_page("job", as_user="ann@x.io", id=own.id)
    assert at.title[0].value.startswith(TYPE) and not at.expander and not at.text_area
    assert reruns_of(client, own.id) == reruns_of(client, other.id) == []


def test_a_jobs_caps_show_beside_its_tokens_and_cost(client: Client) -> None:
    def metrics(job: Job) -> dict[str, Any]:
        return {m.label: m.value for m in open_page("job", id=job.id).metric}

    capped = client.submit("DEMO", {"duration_s": 0}, max_tokens=5000, max_cost_usd=0.25)
    shown = metrics(capped)
    assert (shown["Tokens in"], shown["Token cap"], shown["Cost"], shown["Cost cap"]) == ("0", "5,000", "$0.0000",
                                                                                          "$0.2500")
    assert "Token cap" not in metrics(client.submit("DEMO", {"duration_s": 0}))
    rerun = client.retry(drive(capped.id, "completed").id, from_step="Write")
    assert metrics(rerun)["Token cap"] == "5,000", "a rerun keeps its old job's caps"
