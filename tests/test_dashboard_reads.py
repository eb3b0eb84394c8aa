"""The dashboard's fast paths (issue 7) return what the plain ones did: the live board's chunked record reads,
the metric window's one-pass sums, the settings cache of the pages, and the Metrics charts built without
plotly express."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import plotly.io
import pytest

from runner import AsyncClient, Client, Job
from runner.models import Step, StepStatus
from runner.reads import live
from runner.reads import llm_status as status
from runner.reads.metrics import Bucket, Window
from tests.dashboard_fixtures import drive
from ui import charts, session, tables


def load_many(ids: list[str]) -> list[Job]:
    async def go() -> list[Job]:
        async with AsyncClient() as ac:
            return await ac.store.load_many(ids)
    return asyncio.run(go())


def test_live_reads_every_record_in_chunks_in_order(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "READ_CHUNK", 2)
    jobs = [client.submit("DEMO", {"duration_s": 5}, priority=p) for p in ("low", "normal", "high", "normal", "low")]
    drive(jobs[1].id, "processing")
    done = client.submit("DEMO", {})
    drive(done.id, "completed", result={"ok": True})
    view = client.live(include=[done.id, "0" * 32, jobs[0].id])  # an unknown id is left out, a shown one not repeated
    assert [row.job.id for row in view.jobs] == [j.id for j in jobs] + [done.id]
    records = load_many([j.id for j in jobs] + [done.id])
    assert [row.job.model_dump() for row in view.jobs] == [job.model_dump(include=set(live.FIELDS)) for job in records]
    assert [row.queue_position for row in view.jobs] == [3, None, 1, 2, 4, None]
    assert view.queue_depth == {"high": 1, "normal": 1, "low": 2} and not view.truncated
    assert client.live(limit=4).truncated and len(client.live(limit=4).jobs) == 4


def test_the_board_record_has_the_job_fields_of_the_same_names_and_types() -> None:
    for name, board in live.LiveRecord.model_fields.items():
        job = Job.model_fields[name]
        assert (board.annotation, board.get_default(call_default_factory=True)) == (
            job.annotation, job.get_default(call_default_factory=True)), name
    assert {"payload", "result"}.isdisjoint(live.FIELDS)


def test_live_board_of_one_user_and_of_nobody(client: Client) -> None:
    mine = client.submit("DEMO", {}, user="a@x.io")
    client.submit("DEMO", {}, user="b@x.io")
    assert [row.job.id for row in client.live(user="a@x.io").jobs] == [mine.id]
    assert client.live(user="nobody@x.io").jobs == []


def window(*buckets: dict[str, float]) -> Window:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return Window(range="1h", resolution="1m", top_errors=[],
                  buckets=[Bucket(at=start + timedelta(minutes=i), counters=c) for i, c in enumerate(buckets)])


def test_window_totals_and_breakdowns_sum_every_bucket() -> None:
    w = window({"completed": 2, "hist:duration:DEMO:1": 2, "duration_n:DEMO": 2, "duration_s:DEMO": 1.5,
                "user:completed:a@x.io": 2, "llm_cost_usd:DEMO": 0.5, "llm_cost_usd:user:a@x.io": 0.5},
               {},
               {"completed": 1, "failed": 1, "hist:duration:DEMO:5": 1, "duration_n:DEMO": 1, "duration_s:DEMO": 4,
                "user:completed:a@x.io": 1, "user:failed:b@x.io": 1, "llm_cost_usd:model:gpt-4o": 0.25})
    assert w.total("completed") == 3 and w.total("failed") == 1 and w.total("absent") == 0
    assert w.success_rate() == 0.75
    [demo] = w.durations()
    assert (demo.count, demo.mean_s) == (3, pytest.approx(5.5 / 3))
    assert [(u.user, u.completed, u.failed) for u in w.by_user()] == [("a@x.io", 3, 0), ("b@x.io", 0, 1)]
    overall = w.overall()
    assert len(overall.buckets) == 1 and overall.total("completed") == 3 and len(w.buckets) == 3
    for kind in ("type", "user", "model"):
        assert status.cost_by(overall, kind) == status.cost_by(w, kind)
    assert window().overall().total("completed") == 0


def test_settings_are_built_again_only_when_their_inputs_change(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    first, digest = session.current_settings()
    assert session.current_settings()[0] is first
    monkeypatch.setenv("TASKDECK_MAX_JOBS", "7")
    changed, other = session.current_settings()
    assert changed.max_jobs == 7 and other != digest
    (tmp_path / ".env").write_text("TASKDECK_LOCAL_REDIS_PORT=6999\n")
    assert session.current_settings()[0].local_redis_port == 6999


def test_metric_charts_plot_each_bucket_at_its_utc_time() -> None:
    start = datetime(2026, 1, 1, 10, tzinfo=UTC)
    rows = [{"at": start + timedelta(hours=i), "completed": i, "failed": 1, "success_rate": None if i == 0 else 0.5}
            for i in range(3)]
    span = (start, start + timedelta(hours=3))
    bars = charts.throughput(rows, span)
    assert [t.name for t in bars.data] == ["completed", "failed"] and list(bars.data[0].y) == [0, 1, 2]
    text = plotly.io.to_json(bars)
    assert '"2026-01-01T10:00:00' in text and '"2026-01-01T12:00:00' in text
    rate = charts.success_rate(rows, span)
    assert len(rate.data[0].x) == 2 and rate.layout.yaxis.tickformat == ".0%"


def test_step_of_names_the_running_step_else_counts_the_done_ones() -> None:
    def record(*statuses: StepStatus) -> live.LiveRecord:
        now = datetime.now(UTC)
        return live.LiveRecord(id="a" * 32, type="DEMO", user_id="a@x.io", status="processing", queued_at=now,
                               updated_at=now, steps=[Step(name=f"s{i}", status=s) for i, s in enumerate(statuses)])
    done, running, pending, skipped = (StepStatus.completed, StepStatus.running, StepStatus.pending,
                                       StepStatus.skipped)
    assert tables.step_of(record(done, running, pending)) == "2 of 3"
    assert tables.step_of(record(done, skipped, done)) == "3 of 3"
    assert tables.step_of(record(pending, pending)) == "0 of 2"
    assert tables.step_of(record()) == "—"
