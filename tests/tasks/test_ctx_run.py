"""ctx.run in this process: what it returns on a first run and on a resume, how it reports declared steps, and
where checkpoints are kept (a hash per job that expires and is purged with the job, copied by a rerun)."""
from __future__ import annotations

from typing import Any

import orjson
import pytest
import redis
from pydantic import BaseModel

from runner.context import Checkpoint, MemoryCheckpoints, TaskContext
from runner.errors import InvalidPayload
from runner.models import Job, JobStatus, StepStatus, utcnow
from runner.storage import checkpoints, transitions
from runner.storage.checkpoints import RedisCheckpoints
from runner.storage.keys import Keys
from runner.storage.store import Store


class Week(BaseModel):
    n: int
    posts: list[str]


def context(store: Any = None, steps: list[str] | None = None) -> tuple[TaskContext, list[dict[str, Any]]]:
    flushed: list[dict[str, Any]] = []

    async def flush(fields: dict[str, Any]) -> None:
        flushed.append(dict(fields, steps=[s.model_copy() for s in fields["steps"]]))

    async def never() -> bool:
        return False

    ctx = TaskContext("j1", 1, steps or [], flush=flush, is_cancel_requested=never, interval=0.0,
                      partial_cap=1000, checkpoints=store)
    return ctx, flushed


async def test_a_value_is_computed_once_and_then_returned_from_the_checkpoint() -> None:
    store = MemoryCheckpoints()
    calls: list[int] = []

    async def plan(n: int) -> Week:
        calls.append(n)
        return Week(n=n, posts=[f"post {n}"])

    first, _ = context(store)
    made = [await first.run(f"week {n}", lambda n=n: plan(n), model=Week) for n in (1, 2)]
    again, _ = context(store)
    kept = [await again.run(f"week {n}", lambda n=n: plan(n), model=Week) for n in (1, 2, 3)]

    assert calls == [1, 2, 3], "a stored week was computed again"
    assert made == kept[:2] and all(isinstance(w, Week) for w in kept)
    assert again.reused == ["week 1", "week 2"]
    assert await again.checkpointed() == ["week 1", "week 2", "week 3"]
    assert [Checkpoint.model_validate_json(store.saved[f"week {n}"]).seq for n in (1, 2, 3)] == [0, 1, 2]


async def test_without_a_model_the_first_run_returns_the_same_json_a_resume_does() -> None:
    store = MemoryCheckpoints()
    first, _ = context(store)
    fresh = await first.run("a", lambda: Week(n=1, posts=["x"]))
    resumed = await context(store)[0].run("a", lambda: Week(n=2, posts=[]))
    assert fresh == resumed == {"n": 1, "posts": ["x"]}
    assert await first.run("sync", lambda: (1, "two")) == [1, "two"]


async def test_a_coroutine_given_for_a_stored_checkpoint_is_closed_unrun() -> None:
    store = MemoryCheckpoints()
    ran: list[str] = []

    async def work(tag: str) -> str:
        ran.append(tag)
        return tag

    assert await context(store)[0].run("a", work("first")) == "first"
    pending = work("second")
    assert await context(store)[0].run("a", pending) == "first"
    assert ran == ["first"] and pending.cr_frame is None  # closed: no "never awaited" warning either


async def test_a_stored_value_that_no_longer_fits_the_model_is_computed_again() -> None:
    store = MemoryCheckpoints()
    await context(store)[0].run("w", lambda: {"n": "not a number", "posts": []})
    assert await context(store)[0].run("w", lambda: Week(n=4, posts=[]), model=Week) == Week(n=4, posts=[])


async def test_a_value_that_is_not_json_fails_naming_the_checkpoint() -> None:
    with pytest.raises(TypeError, match="checkpoint 'bad': its value cannot be stored as JSON"):
        await context()[0].run("bad", lambda: object())
    with pytest.raises(ValueError, match="1 to 200 characters"):
        await context()[0].run("", lambda: 1)


async def test_a_declared_step_is_run_as_that_step_and_reported_completed_when_reused() -> None:
    store = MemoryCheckpoints()
    first, flushed = context(store, ["Outline", "Draft"])
    await first.run("Outline", lambda: "o")
    assert [s.status for s in first.steps] == [StepStatus.completed, StepStatus.pending]
    assert any(f["current_step"] == "Outline" and f["steps"][0].status is StepStatus.running for f in flushed)
    assert Checkpoint.model_validate_json(store.saved["Outline"]).step == "Outline"

    again, _ = context(store, ["Outline", "Draft"])
    assert await again.run("Outline", lambda: "other") == "o"
    assert again.steps[0].status is StepStatus.completed and again.progress_value == 50


async def test_checkpoints_in_redis_expire_with_the_job_and_are_purged_with_it(store: Store, r: redis.Redis) -> None:
    now = utcnow()
    job = Job(id="a" * 32, type="DEMO", payload={}, user_id="a@x.io", status=JobStatus.queued, queued_at=now,
              updated_at=now)
    await store.apply(job.id, transitions.create(job, store.keys, 300, by="a@x.io"), now)
    kept = RedisCheckpoints(store.redis, store.keys, job.id, ttl_s=600)
    ctx, _ = context(kept)
    await ctx.run("one", lambda: 1)
    key = f"taskdeck:checkpoints:{job.id}"
    assert 590 < r.ttl(key) <= 600

    await store.apply(job.id, transitions.cancelled(job, now, store.keys, by="a@x.io"), now)
    assert r.ttl(key) > 29 * 86400, "a finished job's checkpoints should be kept as long as its record"
    await store.apply(job.id, transitions.purge(), now)
    assert not r.exists(key) and not r.exists(f"taskdeck:job:{job.id}")


def stored(*made: tuple[str, str | None]) -> dict[str, str]:
    return {name: Checkpoint(seq=seq, step=step, value=name).model_dump_json() for seq, (name, step) in enumerate(made)}


def test_what_a_rerun_reuses_before_a_step_or_a_checkpoint() -> None:
    made = stored(("setup", None), ("week 1", "Draft"), ("week 2", "Draft"), ("review", "Review"))
    steps = ["Analyze", "Draft", "Review"]
    assert checkpoints.before(made, "week 2", steps) == ["setup", "week 1"]
    assert checkpoints.before(made, "Draft", steps) == ["setup"]
    assert checkpoints.before(made, "Analyze", steps) == ["setup"]
    assert checkpoints.before(made, "Review", steps) == ["setup", "week 1", "week 2"]
    with pytest.raises(InvalidPayload, match=r"from_step 'Nope' is neither a step nor a checkpoint of this job; "
                                             r"its steps and checkpoints: 'Analyze', 'Draft', 'Review', 'setup'"):
        checkpoints.before(made, "Nope", steps)
    calls = checkpoints.copy_calls(Keys("taskdeck:"), "new", made, ["week 1", "week 2"], 60)
    assert calls[0][:2] == ["HSET", "taskdeck:checkpoints:new"]
    assert calls[1] == ["EXPIRE", "taskdeck:checkpoints:new", 60]
    copied = dict(zip(calls[0][2::2], calls[0][3::2], strict=True))
    assert {name: orjson.loads(raw)["seq"] for name, raw in copied.items()} == {"week 1": 0, "week 2": 1}
