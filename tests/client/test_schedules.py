"""Cron schedules: runs are submitted by the workers, never overlap (even with two workers), and
can be paused and run on demand."""
from __future__ import annotations

from itertools import pairwise

import pytest
from pydantic import ValidationError

from runner import Client, InvalidTransition, JobStatus
from runner.client.schedules import Schedule
from tests.polling import wait_until

EVERY_SECOND = "* * * * * *"


def test_schedule_never_overlaps_with_two_workers(redis_url: str, start_worker) -> None:
    start_worker()
    start_worker()
    with Client() as admin:
        admin.save_schedule(Schedule(name="sync", type="TEST_SLEEP", payload={"seconds": 1.5}, cron=EVERY_SECOND))
        runs = wait_until(lambda: len(done := admin.list(status="completed")) >= 3 and done, 30, "three runs")
        admin.pause_schedule("sync")
        jobs = sorted([admin.get(j.id) for j in admin.list(limit=100)], key=lambda j: j.queued_at)
    finished = [j for j in jobs if j.status is JobStatus.completed]
    for before, after in pairwise(finished):
        assert after.started_at >= before.completed_at, "two runs of one schedule overlapped"
    assert all(j.user_id == "scheduler@local" for j in jobs)
    assert len(runs) >= 3


def test_run_now_pause_and_outcome(redis_url: str, start_worker) -> None:
    with Client() as admin:
        admin.save_schedule(Schedule(name="nightly", type="TEST_SLEEP", payload={"seconds": 30}, cron="0 3 * * *"))
        [schedule] = admin.schedules()
        assert schedule.next_run_at.hour == 3 and schedule.last_run_at is None
        job = admin.run_schedule("nightly")
        assert job.status is JobStatus.queued
        with pytest.raises(InvalidTransition, match="previous run is still active"):
            admin.run_schedule("nightly")
        assert admin.schedules()[0].last_outcome == "queued"
        admin.cancel(job.id)
        assert admin.schedules()[0].last_outcome == "cancelled"
        assert admin.pause_schedule("nightly").paused
        actions = [e["action"] for e in admin.audit()]
        assert "save schedule nightly (0 3 * * *)" in actions and "pause schedule nightly" in actions


def test_bad_schedules_are_refused(redis_url: str) -> None:
    with pytest.raises(ValidationError, match="is not a cron expression"):
        Schedule(name="x", type="DEMO", cron="every day")
    with Client() as admin:
        with pytest.raises(Exception, match="duration_s: Input should be less than or equal to 3600"):
            admin.save_schedule(Schedule(name="x", type="DEMO", payload={"duration_s": 9999}, cron="0 * * * *"))
        assert admin.schedules() == []
