"""The transition specs (runner/storage/transitions.py) as pure functions, and the one reading of
lua/transition.lua's and lua/claim.lua's replies (store.outcome, store.claimed): no Redis needed."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from runner.models import Attempt, Job, JobStatus, Priority, Step, StepStatus
from runner.storage import transitions
from runner.storage.keys import Keys
from runner.storage.store import Claim, Reply, TransitionSpec, claimed, outcome

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
KEYS = Keys("td:", "arq:queue")


def a_job(**fields: object) -> Job:
    values: dict[str, object] = {"id": "j1", "type": "DEMO", "payload": {}, "user_id": "a@x.io", "org_id": "acme",
                                 "status": JobStatus.queued, "queued_at": NOW - timedelta(seconds=2),
                                 "updated_at": NOW, "max_attempts": 3}
    return Job.model_validate(values | fields)


def an_attempt(number: int = 1, error: str | None = None) -> Attempt:
    return Attempt(number=number, worker="w1", started_at=NOW, finished_at=NOW, outcome="failed", error=error)


def wire(spec: TransitionSpec) -> dict[str, object]:
    """The spec as the script receives it."""
    decoded: dict[str, object] = orjson.loads(orjson.dumps(spec))
    return decoded


def test_queue_score_puts_high_ahead_by_twice_the_aging() -> None:
    base = int(NOW.timestamp() * 1000)
    assert transitions.queue_score(Priority.low, NOW, 30) == base
    assert transitions.queue_score(Priority.normal, NOW, 30) == base - 30_000
    assert transitions.queue_score(Priority.high, NOW, 30) == base - 60_000


def test_enqueue_and_dequeue_calls_touch_arqs_keys() -> None:
    calls = transitions.enqueue_calls(KEYS, "j1", Priority.normal, NOW, 30, "default")
    assert calls[0] == ["DEL", "arq:result:j1", "arq:retry:j1", "arq:in-progress:j1"]
    assert calls[1] == ["ZREM", KEYS.abort, "j1"]
    assert calls[2][:2] == ["SET", "arq:job:j1"] and orjson.loads(calls[2][2])["f"] == transitions.ARQ_FUNCTION
    assert calls[3] == ["ZADD", "arq:queue", transitions.queue_score(Priority.normal, NOW, 30), "j1"]
    assert transitions.dequeue_calls(KEYS, "j1", "default") == [["ZREM", "arq:queue", "j1"],
                                                                ["DEL", "arq:job:j1", "arq:retry:j1"]]
    assert transitions.dequeue_calls(KEYS, "j1", "scraping")[0] == ["ZREM", "arq:queue:scraping", "j1"]


def test_release_calls_keep_an_unfinished_job_on_arqs_queue() -> None:
    assert transitions.release_calls(KEYS, "j1", done=False, queue="default") == [["DEL", "arq:in-progress:j1"]]
    done = transitions.release_calls(KEYS, "j1", done=True, queue="default")
    assert ["ZREM", "arq:queue", "j1"] in done and ["ZREM", KEYS.abort, "j1"] in done


def test_close_steps_ends_the_running_one_and_skips_the_rest_on_success() -> None:
    steps = [Step(name="a", status=StepStatus.completed), Step(name="b", status=StepStatus.running), Step(name="c")]
    ok = transitions.close_steps(steps, StepStatus.completed, NOW)
    assert [s.status for s in ok] == [StepStatus.completed, StepStatus.completed, StepStatus.skipped]
    failed = transitions.close_steps(steps, StepStatus.failed, NOW, "boom")
    assert [s.status for s in failed] == [StepStatus.completed, StepStatus.failed, StepStatus.pending]
    assert failed[1].error == "boom" and failed[1].finished_at == NOW
    assert steps[1].status is StepStatus.running  # the input is left as it was


def test_create_indexes_the_owner_and_enqueues() -> None:
    job = a_job(priority=Priority.high)
    spec = transitions.create(job, KEYS, 30, by="admin@x.io")
    assert spec["create"] == {"score": job.queued_at.timestamp(), "type": "DEMO", "user": "a@x.io",
                              "priority": Priority.high, "org": "acme"}
    assert spec["status"] is JobStatus.queued and spec["wake"] is True
    assert "status" not in spec["set"] and orjson.loads(spec["set"]["user_id"]) == "a@x.io"
    assert spec["metrics"] == {"submitted": 1, "submitted:DEMO": 1}
    assert spec["audit"] == {"action": "submit", "by": "admin@x.io"}
    assert spec["calls"] == transitions.enqueue_calls(KEYS, "j1", Priority.high, job.queued_at, 30, "default")


def test_start_guards_on_the_attempt_and_carries_limits() -> None:
    job = a_job()
    limits: dict[str, int | None] = {"user": 2, "org": None, "type": None, "global": None}
    spec = transitions.start(job, "w1", ("a", "b"), NOW, "arq:in-progress:j1", 5000, None, limits, 123)
    assert spec["from"] == [JobStatus.queued] and spec["match"] == {"attempts": 0}
    assert spec["status"] is JobStatus.processing and spec["incr"] == {"attempts": 1}
    assert spec["limits"] == limits and spec["queued_score"] == 123
    assert spec["who"] == {"type": "DEMO", "user": "a@x.io", "priority": "normal", "org": "acme"}
    assert spec["calls"] == [["PEXPIRE", "arq:in-progress:j1", 5000]]
    assert spec["metrics"]["wait_n"] == 1 and spec["metrics"]["wait_s"] == 2.0
    assert [s["name"] for s in orjson.loads(spec["set"]["steps"])] == ["a", "b"]
    assert "queued_score" not in transitions.start(job, "w1", (), NOW, "k", 1, None, {})


def test_start_after_a_lost_attempt_records_it_and_counts_no_wait() -> None:
    job = a_job(status=JobStatus.processing, attempts=1)
    spec = transitions.start(job, "w2", (), NOW, "k", 1, an_attempt(1, "lost"), {})
    assert "attempt:1" in spec["set"] and "wait_n" not in spec["metrics"] and spec["metrics"]["lost"] == 1


def test_progress_names_its_owner_only_when_given() -> None:
    fields = {"progress": 50.0, "current_step": None}
    assert "who" not in transitions.progress(1, fields)
    spec = transitions.progress(1, fields, a_job())
    assert spec["who"]["user"] == "a@x.io" and spec["event"] == {"event": "progress", "progress": 50.0, "step": ""}


def test_complete_moves_a_large_result_to_an_artifact() -> None:
    job = a_job(status=JobStatus.processing, attempts=1, started_at=NOW - timedelta(seconds=3))
    small = transitions.complete(job, an_attempt(), {"ok": True}, NOW, KEYS, max_bytes=100)
    assert small["calls"] == [] and orjson.loads(small["set"]["result"]) == {"ok": True}
    assert small["metrics"]["duration_s:DEMO"] == 3.0 and small["metrics"]["user:completed:a@x.io"] == 1
    large = transitions.complete(job, an_attempt(), "x" * 500, NOW, KEYS, max_bytes=100)
    assert large["calls"] == [["SET", "td:artifact:j1", orjson.dumps("x" * 500).decode()]]
    assert orjson.loads(large["set"]["result"])["artifact"] == "td:artifact:j1"


def test_fail_retries_while_attempts_remain_else_fails_for_good() -> None:
    job = a_job(status=JobStatus.processing, attempts=1)
    retry_at = NOW + timedelta(seconds=10)
    retrying = transitions.fail(job, an_attempt(1, "boom 42"), NOW, KEYS, retry_at)
    assert retrying["status"] is JobStatus.retrying
    assert retrying["calls"][0] == ["ZADD", "arq:queue", "XX", int(retry_at.timestamp() * 1000), "j1"]
    assert retrying["calls"][-2][:2] == ["ZINCRBY", KEYS.errors(int(NOW.timestamp() // 3600 * 3600))]
    final = transitions.fail(job, an_attempt(1, "boom"), NOW, KEYS, None)
    assert final["status"] is JobStatus.failed and final["metrics"]["user:failed:a@x.io"] == 1
    assert final["calls"][:2] == transitions.dequeue_calls(KEYS, "j1", "default")


def test_cancelled_audits_only_a_person_and_dequeues_only_a_waiting_job() -> None:
    job = a_job()
    by_user = transitions.cancelled(job, NOW, KEYS, by="b@x.io")
    assert by_user["audit"] == {"action": "cancel", "by": "b@x.io"}
    assert by_user["calls"] == transitions.dequeue_calls(KEYS, "j1", "default")
    aborted = transitions.cancelled(a_job(status=JobStatus.processing, attempts=1), NOW, KEYS, record=an_attempt())
    assert "audit" not in aborted and aborted["calls"] == [] and "attempt:1" in aborted["set"]


def test_cancel_request_asks_the_worker_through_arqs_abort_set() -> None:
    spec = transitions.cancel_request(a_job(status=JobStatus.processing), "b@x.io", NOW, KEYS)
    assert spec["from"] == [JobStatus.processing] and spec["unless"] == "cancel_requested_by"
    assert spec["calls"] == [["ZADD", KEYS.abort, int(NOW.timestamp() * 1000), "j1"]] and "status" not in spec


def test_handback_returns_the_attempt() -> None:
    spec = transitions.handback(a_job(status=JobStatus.processing, attempts=1), an_attempt(), NOW, KEYS, 30)
    assert spec["status"] is JobStatus.queued and spec["incr"] == {"attempts": -1}


def test_lost_requeues_unless_out_of_attempts_and_needs_the_lease_gone() -> None:
    again = transitions.lost(a_job(status=JobStatus.processing, attempts=1), an_attempt(), NOW, KEYS, 30)
    assert again["status"] is JobStatus.queued and again["absent"] == ["arq:in-progress:j1"]
    assert again["metrics"]["lost"] == 1 and again["wake"] is True
    spent = transitions.lost(a_job(status=JobStatus.processing, attempts=3), an_attempt(3), NOW, KEYS, 30)
    assert spent["status"] is JobStatus.failed and spent["absent"] == ["arq:in-progress:j1"]


def test_orphaned_costs_an_attempt_and_leaves_parked_jobs_alone() -> None:
    spec = transitions.orphaned(a_job(), NOW, KEYS, 30)
    assert spec["incr"] == {"attempts": 1} and spec["not_in"] == ["arq:queue"]
    assert spec["unless"] == "waiting_reason" and spec["status"] is JobStatus.queued
    assert transitions.orphaned(a_job(attempts=2), NOW, KEYS, 30)["status"] is JobStatus.failed


def test_unreadable_and_retry_and_purge() -> None:
    unreadable = transitions.unreadable("j1", "bad" * 300, NOW, KEYS, "default")
    assert set(unreadable["from"]) == {"queued", "processing", "retrying"}
    assert len(orjson.loads(unreadable["set"]["last_error"])) < 600
    retry = transitions.retry(a_job(status=JobStatus.failed, attempts=3), "b@x.io", NOW, KEYS, ("a",), 2, 30)
    assert retry["from"] == [JobStatus.failed, JobStatus.cancelled] and retry["absent"] == ["arq:in-progress:j1"]
    assert orjson.loads(retry["set"]["max_attempts"]) == 5 and retry["calls"][0] == ["DEL", "td:artifact:j1"]
    assert transitions.purge() == {"from": ["cancelled", "completed", "failed"], "delete": True}


def test_every_spec_goes_over_the_wire_as_it_was_built() -> None:
    job = a_job(status=JobStatus.processing, attempts=1, started_at=NOW)
    specs = [transitions.create(a_job(), KEYS, 30, by="x"), transitions.start(a_job(), "w", (), NOW, "k", 1, None, {}),
             transitions.complete(job, an_attempt(), [1, 2], NOW, KEYS, 10_000),
             transitions.fail(job, an_attempt(1, "e"), NOW, KEYS, None),
             transitions.lost(job, an_attempt(), NOW, KEYS, 1)]
    for spec in specs:
        sent = wire(spec)
        assert set(sent) == set(spec)
        assert sent.get("status") == spec.get("status")


@pytest.mark.parametrize(("reply", "expected"), [
    ([1, "queued", ""], {"applied": True, "status": "queued"}),
    ([0, "processing", ""], {"applied": False, "status": "processing"}),
    ([0, "", ""], {"applied": False, "status": ""}),
    ([2, "queued", ""], {"applied": False, "status": "queued", "parked": True}),
    ([3, "failed", 125], {"applied": False, "status": "failed", "retry_after_s": 125}),
    ([4, "", "first"], {"applied": False, "status": "", "first_id": "first"}),
], ids=["applied", "refused", "no-record", "parked", "rate", "duplicate"])
def test_outcome_decodes_every_reply(reply: list[object], expected: dict[str, object]) -> None:
    decoded = outcome(reply)
    defaults = {"parked": False, "retry_after_s": None, "first_id": None}
    assert {name: getattr(decoded, name) for name in ["applied", "status", *defaults]} == defaults | expected


def test_reply_codes_cover_what_the_script_answers() -> None:
    assert {reply.name for reply in Reply} == {"refused", "applied", "parked", "rate", "duplicate"}
    with pytest.raises(ValueError):
        outcome([9, "", ""])


def test_claimed_decodes_a_poll() -> None:
    polled = claimed([[["j1", "1700000000000", ["status", '"queued"', "type", '"DEMO"'], 2]], ["j9"]],
                     ["default", "scraping"])
    assert polled.claims == [Claim("j1", 1700000000000, {"status": '"queued"', "type": '"DEMO"'}, "scraping")]
    assert polled.aborts == ["j9"]
    claims, aborts = claimed([[], []], ["default"])
    assert claims == [] and aborts == []
