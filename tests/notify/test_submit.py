"""A submit's notify and callback_url: checked before anything is written, stored with the job's creation
in the same script, deleted with the job."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import redis

from runner import Client, InvalidPayload, Settings
from runner.models import utcnow
from runner.storage import transitions
from runner.storage.store import Store, connect
from tests.conftest import ROOT

ROLES = {"boss@x.io": "admin", "ann@x.io": "analyst", "*@x.io": "staff"}
SAM = "sam@x.io"


def job_keys(r: redis.Redis) -> list[str]:
    return sorted(k for k in r.keys("taskdeck:*") if not k.startswith(("taskdeck:profile:", "taskdeck:tokens")))


def test_a_refused_notify_or_callback_writes_nothing(redis_url: str, r: redis.Redis) -> None:
    with Client(Settings(roles=ROLES), user=SAM) as sam:
        with pytest.raises(InvalidPayload, match="private address"):
            sam.submit("DEMO", {}, callback_url="http://127.0.0.1:9/hook")
        with pytest.raises(InvalidPayload, match="only http and https"):
            sam.submit("DEMO", {}, callback_url="file:///etc/passwd")
        with pytest.raises(InvalidPayload, match="SMTP"):
            sam.submit("DEMO", {}, notify={"events": ["failed"], "via": ["email"]})
        with pytest.raises(InvalidPayload, match="webhook URL"):
            sam.submit("DEMO", {}, notify={"events": ["failed"], "via": ["webhook"]})
        with pytest.raises(InvalidPayload, match="notify"):
            sam.submit("DEMO", {}, notify={"events": ["sometimes"]})
        assert sam.list() == []
    assert job_keys(r) == []


async def test_the_subscription_is_stored_with_the_job_and_deleted_with_it(redis_url: str, r: redis.Redis) -> None:
    settings = Settings(roles=ROLES, fetch_allow=["127.0.0.1"])
    with Client(settings, user=SAM) as sam:
        plain = sam.submit("DEMO", {})
        told = sam.submit("DEMO", {}, notify={"events": ["completed", "failed"], "via": ["inbox"]},
                          callback_url="http://127.0.0.1:9/done", idempotency_key="k1")
        again = sam.submit("DEMO", {}, notify={"events": []}, idempotency_key="k1")  # the first job, unchanged
        assert again.id == told.id
        secret = sam.profile().webhook_secret
    keys = Store(connect(settings), settings).keys
    assert not r.exists(keys.notify_subscription(plain.id))  # no notify: the profile decides, nothing stored
    stored = json.loads(r.get(keys.notify_subscription(told.id)) or "{}")
    assert stored == {"events": ["completed", "failed"], "via": ["inbox"],
                      "callback": {"url": "http://127.0.0.1:9/done", "secret": f"user:{SAM}"}}
    assert secret.startswith("whsec_")  # the callback's secret exists before the job ends

    store = Store(connect(settings), settings)
    try:
        job = await store.load(told.id)
        assert job is not None
        assert (await store.apply(told.id, transitions.cancelled(job, utcnow(), store.keys, by=SAM))).applied
        r.rpush(keys.notify_log(told.id), "{}")
        assert (await store.apply(told.id, transitions.purge())).applied
    finally:
        await store.redis.aclose()
    assert not r.exists(keys.job(told.id), keys.notify_subscription(told.id), keys.notify_log(told.id))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TASKDECK_ROLES": json.dumps(ROLES), "TASKDECK_FETCH_ALLOW": '["127.0.0.1"]'}
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=60)


def test_the_command_line_submits_with_notify_and_a_callback(redis_url: str, r: redis.Redis) -> None:
    done = cli("submit", "DEMO", "--notify", "both", "--notify-via", "inbox", "--callback-url",
               "http://127.0.0.1:9/cb", "--json", "--as", SAM)
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)["id"]
    stored = json.loads(r.get(f"taskdeck:notify:sub:{job_id}") or "{}")
    assert stored["events"] == ["completed", "failed"] and stored["callback"]["url"] == "http://127.0.0.1:9/cb"
    quiet = cli("submit", "DEMO", "--notify", "none", "--json", "--as", SAM)
    assert json.loads(r.get(f"taskdeck:notify:sub:{json.loads(quiet.stdout)['id']}") or "{}")["events"] == []
    alone = cli("submit", "DEMO", "--notify-via", "email", "--as", SAM)
    assert alone.returncode == 2 and "--notify-via needs --notify" in alone.stderr
    made = subprocess.run([sys.executable, "-m", "runner", "token", "create", "--user", SAM, "--json"], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "TASKDECK_ROLES": json.dumps(ROLES)},
                          timeout=60)
    record = json.loads(made.stdout)
    assert record["webhook_secret"].startswith("whsec_") and r.hget("taskdeck:tokens:secrets", record["id"])
    revoked = subprocess.run([sys.executable, "-m", "runner", "token", "revoke", record["id"]], cwd=ROOT,
                             capture_output=True, text=True, env=os.environ.copy(), timeout=60)
    assert revoked.returncode == 0 and not r.hexists("taskdeck:tokens:secrets", record["id"])
