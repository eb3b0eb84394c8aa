"""Notices end to end: real worker processes run a failing job and a completing one, and the notices arrive
in the inbox, in a real SMTP server and at a real webhook receiver; callbacks POST the final record, signed;
a scheduled run tells the admin who saved the schedule."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from runner import Client, JobNotFound, Settings
from runner.client.schedules import Schedule
from runner.policy import tokens
from runner.policy.access import Role
from runner.storage.store import Store, connect
from tests.api_server import token
from tests.conftest import WorkerFactory
from tests.notify.receivers import Receiver, SMTPServer, receiver, smtp_server
from tests.polling import wait_until

__all__ = ["receiver", "smtp_server"]  # fixtures
ROLES = {"boss@x.io": "admin", "ann@x.io": "analyst", "*@x.io": "staff"}
SAM, OLGA, BOSS = "sam@x.io", "olga@x.io", "boss@x.io"
PUBLIC = "https://taskdeck.example"


def environment(smtp: SMTPServer) -> dict[str, str]:
    """The settings the worker (and the test's own clients) run with."""
    return {**smtp.settings, "TASKDECK_FETCH_ALLOW": '["127.0.0.1"]', "TASKDECK_NOTIFY_BACKOFF_S": "0.2",
            "TASKDECK_PUBLIC_URL": PUBLIC, "TASKDECK_ROLES": json.dumps(ROLES)}


def settings(smtp: SMTPServer) -> Settings:
    return Settings(roles=ROLES, fetch_allow=["127.0.0.1"], smtp_host=smtp.host, smtp_port=smtp.port, smtp_tls="none",
                    public_url=PUBLIC)


def finished(client: Client, job_id: str) -> Any:
    job = client.get(job_id)
    return job if job.status.terminal else None


def test_a_failing_and_a_completing_job_are_told_everywhere(start_worker: WorkerFactory, smtp_server: SMTPServer,
                                                            receiver: Receiver) -> None:
    start_worker(**environment(smtp_server))
    with Client(settings(smtp_server), user=SAM) as sam:
        profile = sam.set_profile(webhook_url=f"{receiver.url}/sam", events=["completed", "failed"],
                                  via=["inbox", "email", "webhook"])
        receiver.secrets["/sam"] = receiver.secrets["/callback"] = profile.webhook_secret
        receiver.fail_first["/callback"] = 1  # the first callback fails: retried by the worker
        bad = sam.submit("TEST_FATAL", {}, notify={"events": ["failed"], "via": ["inbox", "email", "webhook"]},
                         callback_url=f"{receiver.url}/callback")
        good = sam.submit("DEMO", {"duration_s": 0}, callback_url=f"{receiver.url}/callback")  # the profile decides
        wait_until(lambda: finished(sam, bad.id) and finished(sam, good.id), 30, "both jobs to end")

        page = wait_until(lambda: items if len(items := sam.notifications().items) == 2 else None, 20, "two notices")
        by_event = {item.event: item for item in page}
        failed, completed = by_event["failed"], by_event["completed"]
        assert failed.title == f"Job TEST_FATAL {bad.id[:8]} failed" and failed.link == f"/job?id={bad.id}"
        assert "the input can never work" in failed.body and completed.link == f"/job?id={good.id}"

        mails = wait_until(lambda: smtp_server.mailbox.messages if len(smtp_server.mailbox.messages) == 2 else None,
                           20, "two mails")
        assert sorted(m["Subject"] for m in mails) == sorted([failed.title, completed.title])
        assert all(m["To"] == SAM for m in mails)
        assert any(f"{PUBLIC}/job?id={bad.id}" in m.get_content() for m in mails)

        notices = wait_until(lambda: receiver.at("/sam") if len(receiver.at("/sam")) == 2 else None, 20,
                             "two signed webhook notices")
        assert {got.id for got in notices} == {failed.id, completed.id} and not receiver.refused

        callbacks = wait_until(lambda: receiver.at("/callback") if len(receiver.at("/callback")) == 2 else None, 30,
                               "both callbacks")
        records = {got.json["id"]: got.json for got in callbacks}
        for job in (bad, good):
            assert records[job.id] == json.loads(sam.get(job.id).model_dump_json())  # as GET /api/jobs/{id}
        assert records[bad.id]["status"] == "failed" and records[good.id]["status"] == "completed"
        assert len(receiver.failed) == 1

        log = sam.deliveries(bad.id)
        channels = {(a.channel.value, a.outcome) for a in log}
        assert {("inbox", "delivered"), ("email", "delivered"), ("webhook", "delivered")} <= channels
        callback_log = [a for a in log + sam.deliveries(good.id) if a.what.startswith("callback")]
        assert [a.outcome for a in callback_log].count("delivered") == 2 and "retrying" in {
            a.outcome for a in callback_log}
        health = sam.delivery_health()
        assert health.queued == 0 and health.last_error == "webhook: HTTP 503"
    with Client(settings(smtp_server), user=OLGA) as olga, pytest.raises(JobNotFound):
        olga.deliveries(bad.id)  # another user's job answers like a missing one
    with Client(settings(smtp_server), user="ann@x.io") as analyst, pytest.raises(JobNotFound):
        analyst.deliveries(bad.id)  # analysts read jobs, not where their owners' notices go


def test_a_scheduled_run_tells_the_admin_who_saved_the_schedule(start_worker: WorkerFactory,
                                                                smtp_server: SMTPServer) -> None:
    start_worker(**environment(smtp_server))
    with Client(settings(smtp_server), user=BOSS) as boss:
        boss.save_schedule(Schedule(name="nightly", type="TEST_FATAL", cron="0 3 * * *"))
        run = boss.run_schedule("nightly")
        assert run.user_id == "scheduler@local"
        wait_until(lambda: finished(boss, run.id), 30, "the scheduled run to fail")
        items = wait_until(lambda: boss.notifications().items, 20, "the admin's notice")
        assert [(i.job_id, i.event) for i in items] == [(run.id, "failed")]
        assert boss.inbox_counts().failed_since_looked == 0


async def token_secret(values: Settings, token_id: str) -> str | None:
    store = Store(connect(values), values)
    try:
        return await tokens.webhook_secret(store, token_id)
    finally:
        await store.redis.aclose()


def test_an_api_submit_is_called_back_signed_with_its_tokens_secret(start_worker: WorkerFactory, own_api: Any,
                                                                    smtp_server: SMTPServer,
                                                                    receiver: Receiver) -> None:
    api = own_api(**environment(smtp_server))
    start_worker(**environment(smtp_server))
    auth = token(SAM, role=Role.staff)
    secret = asyncio.run(token_secret(settings(smtp_server), auth["Authorization"].split("_")[1]))
    assert secret and secret.startswith("whsec_")
    receiver.secrets["/api-callback"] = secret
    refused = httpx.post(f"{api}/api/jobs", headers=auth, json={"type": "DEMO", "callback_url": "http://10.1.2.3/x"})
    assert refused.status_code == 422 and "private address" in refused.json()["detail"]
    created = httpx.post(f"{api}/api/jobs", headers=auth, json={
        "type": "DEMO", "payload": {"duration_s": 0}, "callback_url": f"{receiver.url}/api-callback",
        "notify": {"events": ["completed"], "via": ["inbox"]}})
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    got = wait_until(lambda: receiver.at("/api-callback"), 30, "the callback")[0]
    assert got.json["id"] == job_id and got.json["status"] == "completed" and not receiver.refused
    assert got.json == httpx.get(f"{api}/api/jobs/{job_id}", headers=auth).json()
    inbox = wait_until(lambda: httpx.get(f"{api}/api/notifications", headers=auth).json()["items"], 20, "the notice")
    assert [item["job_id"] for item in inbox] == [job_id]
    deliveries = httpx.get(f"{api}/api/jobs/{job_id}/deliveries", headers=auth).json()
    assert {(d["channel"], d["outcome"]) for d in deliveries} >= {("inbox", "delivered"), ("webhook", "delivered")}
