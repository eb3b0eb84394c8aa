"""Losing the Redis primary (issue 24): a real primary, replica and three sentinels (runner.ops.redis_server, as
`up --ha` starts them), real workers and the HTTP API. Reduced in the suite; `./taskdeck test -m slow` runs
the full 200 jobs."""
from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
import redis

from runner import Client, JobNotFound, JobStatus, RedisUnavailable, Settings
from runner.errors import NotReplicated
from runner.ops import redis_server
from runner.storage.keys import Keys
from tests.conftest import free_ports
from tests.polling import wait_until

MASTER = "mymaster"
T = TypeVar("T")


@dataclass
class Ha:
    started: redis_server.HighAvailability
    port: int
    data: Path
    restarted: list[subprocess.Popen[bytes]]

    def restart(self, name: str, port: int, *extra: str) -> None:
        """Start the node that kept its files in data/<name> again, on its old port."""
        self.restarted.append(redis_server.start(self.data / name, port, extra=extra))

    @property
    def sentinels(self) -> str:
        return self.started.setting

    def primary_port(self) -> int:
        with redis.Redis(port=self.started.sentinel_ports[0], decode_responses=True) as sentinel:
            return int(sentinel.sentinel_get_master_addr_by_name(MASTER)[1])

    def followed(self) -> bool:
        """The primary has a replica again (the sentinels point the other one at it after a promotion)."""
        with redis.Redis(port=self.primary_port(), decode_responses=True) as primary:
            return int(primary.info("replication")["connected_slaves"]) >= 1

    def role(self, port: int) -> str:
        with redis.Redis(port=port, decode_responses=True, socket_connect_timeout=0.5) as node:
            return str(node.info("replication")["role"])

    def settings(self, **more: object) -> Settings:
        return Settings(redis_sentinels=self.sentinels, **more)


@pytest.fixture
def ha(tmp_path: Path) -> Iterator[Ha]:
    port = free_ports(6)
    # two replicas: with TASKDECK_REDIS_MIN_REPLICAS=1, the promoted one still has one to confirm its writes
    started = redis_server.start_ha(tmp_path / "ha", port, MASTER, down_after_ms=1000, replicas=2)
    ha = Ha(started, port, tmp_path / "ha", [])
    yield ha
    for proc in [started.primary, *started.replicas, *started.sentinels, *ha.restarted]:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
        proc.wait(10)


def scale(reduced: int, full: int) -> list:
    return [pytest.param(reduced, id=f"n{reduced}"), pytest.param(full, id=f"n{full}", marks=pytest.mark.slow)]


def every_job_over(client: Client, ids: list[str]) -> bool:
    return all(client.get(i).status.terminal for i in ids)


@pytest.mark.parametrize("n", scale(60, 200))
def test_primary_killed_mid_run_loses_no_acknowledged_job(ha: Ha, start_worker, own_api, tmp_path: Path,
                                                         n: int) -> None:
    env = {"TASKDECK_REDIS_SENTINELS": ha.sentinels, "TASKDECK_REDIS_MIN_REPLICAS": "1", "TASKDECK_MAX_JOBS": "20",
           "TASKDECK_LEASE_S": "10"}
    for _ in range(2):
        start_worker(**env)
    api = own_api(**env)
    runs = tmp_path / "runs.txt"
    payload = {"path": str(runs), "seconds": 0.5}
    with Client(ha.settings(redis_min_replicas=1)) as client:
        acked = [client.submit("TEST_RECORD", payload).id for _ in range(n // 2)]
        wait_until(lambda: client.stats().by_status[JobStatus.processing] >= 5, 20, "jobs to run")
        ha.started.primary.kill()
        killed = time.monotonic()
        with pytest.raises(RedisUnavailable, match="failing over.*nothing was submitted"):
            client.submit("TEST_RECORD", payload)
        refused_in = time.monotonic() - killed
        wait_until(lambda: ha.primary_port() != ha.port, 30, "the sentinels to promote a replica")
        promoted = time.monotonic()
        # until the other replica follows the new primary, a submit is made but not confirmed (NotReplicated)
        wait_until(ha.followed, 30, "the other replica to follow the new primary")
        wait_until(lambda: httpx.get(f"{api}/api/health", timeout=2).status_code == 200, 10, "the API to answer")
        api_back = time.monotonic() - promoted
        acked += [client.submit("TEST_RECORD", payload).id for _ in range(n - len(acked))]
        wait_until(lambda: every_job_over(client, acked), 60 + n / 5, "every acknowledged job to end")
        jobs = [client.get(i) for i in acked]
        ran = Counter(runs.read_text().split())
        print(f"\n{n} jobs, primary SIGKILLed with jobs running: submit refused in {refused_in:.2f} s, promotion "
              f"{promoted - killed:.1f} s after the kill, API answering {api_back:.1f} s after it; "
              f"{sum(j.status is JobStatus.completed for j in jobs)} completed, "
              f"{sum(c > 1 for c in ran.values())} ran twice")
        assert [j.status for j in jobs] == [JobStatus.completed] * n, "an acknowledged job was lost or failed"
        assert all(j.result == {"ran": j.id} for j in jobs)
        assert [i for i in acked if ran[i] != 1] == [], "a job ran to its end twice, or never"
        assert refused_in < 5 and api_back < 10

        # the old primary comes back: the sentinels make it a replica of the new one, and nothing changes
        new_primary = ha.primary_port()
        ha.restart("primary", ha.port)
        wait_until(lambda: ha.role(ha.port) == "slave", 30, "the old primary to rejoin as a replica")
        later = [client.submit("TEST_RECORD", payload).id for _ in range(10)]
        wait_until(lambda: every_job_over(client, later), 30, "jobs submitted after it rejoined to end")
        assert all(client.get(i).status is JobStatus.completed for i in later)
        assert ha.primary_port() == new_primary


def test_without_min_replicas_an_acknowledged_submit_can_be_lost(ha: Ha) -> None:
    """Replication is asynchronous: a submit the replica had not received when the primary died is gone
    after the promotion. TASKDECK_REDIS_MIN_REPLICAS=1 turns that silent loss into an error naming the job."""
    keys = Keys(Settings().prefix, Settings().queue_name)
    with Client(ha.settings()) as loose, Client(ha.settings(redis_min_replicas=1, redis_wait_timeout_s=0.5)) as safe:
        kept = loose.submit("DEMO", {}).id
        with redis.Redis(port=ha.port + 1) as replica:
            wait_until(lambda: replica.exists(keys.job(kept)), 10, "the replicas to have the first job")
        for replica in ha.started.replicas:
            replica.send_signal(signal.SIGSTOP)  # what the primary sends now waits in their sockets
        lost = loose.submit("DEMO", {}).id  # acknowledged at once
        with pytest.raises(NotReplicated, match="reached 0 of 1 replicas") as refused:
            safe.submit("DEMO", {})
        assert refused.value.job_id in str(refused.value)
        # every machine goes down; the replicas had not read the last writes; one comes back from its files
        for proc in [ha.started.primary, *ha.started.replicas]:
            proc.kill()
            proc.wait()
        ha.restart("replica-1", ha.port + 1, "--replicaof", "127.0.0.1", str(ha.port))
        wait_until(lambda: ha.primary_port() == ha.port + 1, 30, "the sentinels to promote the replica")
        assert wait_until(lambda: answers(lambda: loose.get(kept)), 10, "the new primary to answer").id == kept
        for gone in (lost, refused.value.job_id):
            with pytest.raises(JobNotFound):
                loose.get(gone)


def answers(call: Callable[[], T]) -> T | None:
    """call(), or None while Redis cannot be reached."""
    try:
        return call()
    except RedisUnavailable:
        return None
