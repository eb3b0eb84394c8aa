"""Named queues (runner/queues.py): each queue's slots are its own, in one worker process or across several."""
from __future__ import annotations

import signal

import pytest
import redis

from runner import Client, InvalidPayload, JobStatus, Settings, queues
from runner.storage.keys import Keys
from tests.polling import wait_until

KEYS = Keys(Settings().prefix, Settings().queue_name)


def test_a_queue_list_is_parsed_or_refused_with_the_form_to_use() -> None:
    assert queues.parse("generation=10, scraping=30") == {"generation": 10, "scraping": 30}
    for bad in ("generation", "generation=0", "Gen=1", "generation=ten"):
        with pytest.raises(InvalidPayload, match='NAME=SLOTS .* e.g. "generation=10,scraping=30"'):
            queues.parse(bad)


def test_unset_a_worker_serves_every_queue_at_the_seeds_slots() -> None:
    served = queues.served(Settings(max_jobs=7), {"default", "reports"})
    assert served == {"default": 7, "generation": 10, "reports": 7, "scraping": 30, "sync": 60}
    assert queues.served(Settings(queues="scraping=3")) == {"scraping": 3}
    assert queues.lease_s(Settings(lease_s=30), "scraping") == 15 and queues.lease_s(Settings(lease_s=30), "x") == 30


def test_the_default_queue_is_arqs_queue_so_older_deployments_keep_theirs() -> None:
    assert KEYS.arq_queue("default") == "arq:queue" and KEYS.arq_queue("scraping") == "arq:queue:scraping"


def started_within(client: Client, job_id: str) -> float:
    job = wait_until(lambda: (j := client.get(job_id)).started_at and j, 15, "the job to start")
    return (job.started_at - job.queued_at).total_seconds()


def test_scrapes_start_at_once_while_generation_fills_every_slot(client: Client, start_worker) -> None:
    start_worker(TASKDECK_QUEUES="generation=2,scraping=2")
    long = [client.submit("TEST_GENERATE", {"seconds": 60}).id for _ in range(4)]
    wait_until(lambda: sum(client.get(i).status is JobStatus.processing for i in long) == 2, 15, "two to run")
    scrapes = [client.submit("TEST_SCRAPE", {"seconds": 0.2}).id for _ in range(3)]
    waits = [started_within(client, i) for i in scrapes]
    print(f"\nscrapes started {', '.join(f'{w:.2f}' for w in waits)} s after submit, generation slots full")
    assert max(waits) < 1.0
    assert [client.get(i).status for i in long].count(JobStatus.queued) == 2, "a scrape slot ran a generation job"
    generation = wait_until(lambda: (g := client.stats().queues["generation"]).running and g, 10, "a heartbeat")
    assert (generation.waiting, generation.running, generation.capacity, generation.workers) == (2, 2, 2, 1)
    assert client.stats().queues["sync"].capacity == 0, "no worker serves sync"
    for job_id in long:
        client.cancel(job_id)


def test_a_worker_never_runs_a_job_of_a_queue_it_does_not_serve(client: Client, start_worker,
                                                               r: redis.Redis) -> None:
    start_worker(TASKDECK_QUEUES="scraping=5")
    generation = client.submit("TEST_GENERATE", {"seconds": 0})
    scrape = client.submit("TEST_SCRAPE", {"seconds": 0})
    assert wait_until(lambda: (j := client.get(scrape.id)).status.terminal and j, 15, "the scrape").status \
        is JobStatus.completed
    later = client.submit("TEST_SCRAPE", {"seconds": 0})  # polls that come after the first job was waiting
    wait_until(lambda: client.get(later.id).status is JobStatus.completed, 15, "a second scrape")
    assert client.get(generation.id).status is JobStatus.queued
    assert client.get(generation.id).queue == "generation"
    assert r.zscore("arq:queue:generation", generation.id) is not None
    client.cancel(generation.id)
    assert r.zscore("arq:queue:generation", generation.id) is None, "a cancelled job leaves its own queue"


def test_a_killed_workers_jobs_of_two_queues_run_again_on_another(client: Client, start_worker) -> None:
    victim = start_worker(TASKDECK_QUEUES="generation=2,scraping=2")
    jobs = [client.submit(kind, {"seconds": 2}).id for kind in ("TEST_GENERATE", "TEST_SCRAPE") for _ in range(2)]
    wait_until(lambda: all(client.get(i).status is JobStatus.processing for i in jobs), 15, "all four to run")
    victim.send_signal(signal.SIGKILL)
    start_worker(TASKDECK_QUEUES="generation=2,scraping=2")
    done = [wait_until(lambda i=i: (j := client.get(i)).status.terminal and j, 30, "the job to end") for i in jobs]
    assert [j.status for j in done] == [JobStatus.completed] * 4
    assert all(any(a.outcome == "lost" for a in j.attempt_log) for j in done)


def test_the_stats_line_counts_what_the_records_say(client: Client, start_worker, tmp_path) -> None:
    worker = start_worker(TASKDECK_QUEUES="generation=2,scraping=2")
    ok = [client.submit("TEST_SCRAPE", {"seconds": 0}).id for _ in range(3)]
    bad = client.submit("TEST_FATAL", {}).id  # the default queue: not served here
    cancelled = client.submit("TEST_GENERATE", {"seconds": 60}).id
    wait_until(lambda: client.get(cancelled).status is JobStatus.processing, 15, "the generation job to run")
    client.cancel(cancelled)
    wait_until(lambda: all(client.get(i).status is JobStatus.completed for i in ok), 15, "the scrapes")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    lines = [line for line in (tmp_path / "worker-0.log").read_text().splitlines() if "stats: " in line]
    assert lines[-1].endswith("stats: generation 0 completed, 0 failed, 0 retried, 1 cancelled, 0 lost, "
                              "0 running of 2; scraping 3 completed, 0 failed, 0 retried, 0 cancelled, 0 lost, "
                              "0 running of 2 (at shutdown)")
    assert client.get(bad).status is JobStatus.queued
    assert "recording health" not in (tmp_path / "worker-0.log").read_text(), "ARQ's own health line is replaced"
    client.cancel(bad)


def test_a_job_held_back_by_a_running_limit_goes_back_to_its_own_queue(client: Client, start_worker,
                                                                      r: redis.Redis) -> None:
    start_worker(TASKDECK_QUEUES="scraping=4", TASKDECK_MAX_RUNNING_PER_USER="1")
    first = client.submit("TEST_SCRAPE", {"seconds": 1}, user="ana@x.io")
    held = client.submit("TEST_SCRAPE", {"seconds": 0}, user="ana@x.io")
    parked = wait_until(lambda: (j := client.get(held.id)).waiting_reason and j, 15, "the second to be held back")
    assert "user limit 1" in (parked.waiting_reason or "")
    assert r.zscore("arq:queue:scraping", held.id) is None, "a held-back job waits off its queue"
    done = [wait_until(lambda i=i: (j := client.get(i)).status.terminal and j, 20, "both to end")
            for i in (first.id, held.id)]
    assert [j.status for j in done] == [JobStatus.completed] * 2 and done[1].started_at >= done[0].completed_at


def test_priorities_order_the_jobs_of_one_queue(client: Client, start_worker) -> None:
    lows = [client.submit("TEST_SCRAPE", {"seconds": 0}, priority="low").id for _ in range(3)]
    high = client.submit("TEST_SCRAPE", {"seconds": 0}, priority="high").id
    other = client.submit("TEST_GENERATE", {"seconds": 0}, priority="high").id  # another queue: not served
    start_worker(TASKDECK_QUEUES="scraping=1")
    jobs = [wait_until(lambda i=i: (j := client.get(i)).status.terminal and j, 20, "the scrapes")
            for i in [high, *lows]]
    starts = [j.started_at for j in jobs]
    # the low ones may share a millisecond of queue score, so only the high one's place is certain
    assert starts[0] == min(starts), "the high-priority scrape went first"
    assert client.get(other).status is JobStatus.queued
    client.cancel(other)
