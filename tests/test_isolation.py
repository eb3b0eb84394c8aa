"""Issue 12's defects, each as an attack a hostile staff user with a valid identity tried: idempotency keys,
schedule slots, tokens outliving the allow-list, retry without admission, limits, the local admin, emails
that fold, organisations, and the CLI's payload files. Each test failed on the main before the fix."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from runner import AccessDenied, AsyncClient, Client, InvalidPayload, JobStatus, LimitExceeded, Settings
from runner.client.schedules import Schedule, Scheduler
from runner.errors import Unavailable
from runner.models import utcnow
from runner.policy import tokens
from runner.policy.access import Role, principal
from runner.storage.keys import Keys, bucket_start
from runner.storage.store import Store, connect
from tests.conftest import ROOT

ROLES = {"boss@x.io": "admin", "ann@x.io": "analyst", "*@x.io": "staff", "*@acme.io": "staff"}
ORGS = {"*@acme.io": "acme"}


def as_user(email: str | None, **settings: object) -> Client:
    return Client(Settings(roles=ROLES, orgs=ORGS, **settings), user=email)  # type: ignore[arg-type]


def on_store(work, **settings: object):  # type: ignore[no-untyped-def]
    async def run():  # type: ignore[no-untyped-def]
        s = Settings(roles=ROLES, orgs=ORGS, **settings)  # type: ignore[arg-type]
        store = Store(connect(s), s)
        try:
            return await work(store)
        finally:
            await store.redis.aclose()
    return asyncio.run(run())


def test_idempotency_keys_live_in_the_submitters_namespace(redis_url: str) -> None:
    with as_user("a@x.io") as a, as_user("b@x.io") as b, as_user("boss@x.io") as boss:
        first = a.submit("DEMO", {}, idempotency_key="weekly-plan")
        assert a.submit("DEMO", {}, idempotency_key="weekly-plan").id == first.id
        theirs = b.submit("DEMO", {}, idempotency_key="weekly-plan")
        assert theirs.id != first.id and theirs.user_id == "b@x.io"
        admins = boss.submit("DEMO", {}, idempotency_key="weekly-plan")
        assert admins.id not in (first.id, theirs.id) and admins.user_id == "boss@x.io"
        # an admin submitting on A's behalf acts in A's namespace: the same key is A's job
        assert boss.submit("DEMO", {}, user="a@x.io", idempotency_key="weekly-plan").id == first.id


def test_a_staff_user_cannot_take_a_schedule_slot_over(redis_url: str) -> None:
    async def scenario() -> tuple[str, str]:
        admin = AsyncClient(Settings(roles=ROLES))
        schedule = await Scheduler(admin).save(Schedule(name="nightly", type="DEMO", cron="0 3 * * *"))
        slot = schedule.slot_key()
        async with AsyncClient(Settings(roles=ROLES), user="mallory@x.io") as mallory:
            for guess in (f"schedule:nightly:{slot}", f"idem:schedule:nightly:{slot}",
                          f"taskdeck:idem:schedule:nightly:{slot}", f"../schedule:nightly:{slot}"):
                await mallory.submit("TEST_SLEEP", {"seconds": 300}, idempotency_key=guess)
        assert schedule.next_run_at is not None
        fired = await Scheduler(admin).fire(schedule, schedule.next_run_at)
        assert fired is not None
        run = await admin.get(fired)
        await admin.close()
        return run.user_id, run.type

    assert asyncio.run(scenario()) == ("scheduler@local", "DEMO")


def test_a_token_follows_the_allow_list_on_every_use(redis_url: str) -> None:
    secret, record = on_store(lambda store: tokens.create(store, "pat@x.io", Role.staff))
    assert len(record.id) == 16
    assert on_store(lambda store: tokens.verify(store, secret)).role is Role.staff
    # removed from the allow-list: refused, not served with the role it was made with
    with pytest.raises(AccessDenied, match="not on the allow-list"):
        asyncio.run(_verify_with({"boss@x.io": "admin"}, secret))
    # demoted to analyst: staff and analyst do not hold each other, so the token stops
    with pytest.raises(AccessDenied, match="does not fit"):
        asyncio.run(_verify_with({"pat@x.io": "analyst"}, secret))
    admin_secret, _ = on_store(lambda store: tokens.create(store, "boss@x.io", Role.admin))
    demoted = asyncio.run(_verify_with({"boss@x.io": "staff"}, admin_secret))
    assert demoted is not None and demoted.role is Role.staff


async def _verify_with(roles: dict[str, str], secret: str):  # type: ignore[no-untyped-def]
    settings = Settings(roles=roles)  # type: ignore[arg-type]
    store = Store(connect(settings), settings)
    try:
        return await tokens.verify(store, secret)
    finally:
        await store.redis.aclose()


def test_tokens_are_refused_for_users_off_the_allow_list_and_revoke_removes_every_match(r: redis.Redis) -> None:
    with pytest.raises(AccessDenied):
        on_store(lambda store: tokens.create(store, "stranger@elsewhere.io", Role.staff))
    secret, record = on_store(lambda store: tokens.create(store, "pat@x.io"))
    twin = tokens.Token(id=record.id, user="twin@x.io", role=Role.staff, created_at=utcnow())
    r.hset("taskdeck:tokens", tokens.digest("td_twin"), twin.model_dump_json())
    on_store(lambda store: tokens.revoke(store, record.id))
    assert r.hlen("taskdeck:tokens") == 0
    assert on_store(lambda store: tokens.verify(store, secret)) is None


def test_retry_is_admitted_like_a_submit(redis_url: str, r: redis.Redis) -> None:
    with as_user("a@x.io", max_submits_per_user_per_hour=1) as a:
        job = a.submit("DEMO", {"duration_s": 60})
        a.cancel(job.id)
        with pytest.raises(LimitExceeded, match="retries count too") as refused:
            a.retry(job.id)
        assert refused.value.retry_after_s and refused.value.retry_after_s > 3000
        assert a.get(job.id).status is JobStatus.cancelled
    llm = {"llm_base_url": "http://127.0.0.1:9/v1", "llm_model": "m", "llm_user_tokens_per_hour": 100}
    with as_user("a@x.io", **llm) as a:
        gen = a.submit("GENERATE_VIRAL_IDEAS", {"niche": "tea"})
        a.cancel(gen.id)
        r.hset(Keys("taskdeck:").metrics("1h", bucket_start("1h", time.time())), "llm_tokens:user:a@x.io", 500)
        with pytest.raises(LimitExceeded, match="LLM tokens"):
            a.retry(gen.id)
    with as_user("a@x.io", llm_embedded=False) as a, pytest.raises(Unavailable, match="LLM endpoint"):
        a.retry(gen.id)


@pytest.mark.parametrize("value", [2.5, float("inf"), float("nan"), True, -1, 10**7, "3"])
def test_set_limit_refuses_values_that_are_not_whole_numbers(redis_url: str, value: object) -> None:
    with as_user("boss@x.io") as boss:
        with pytest.raises(InvalidPayload, match="whole number"):
            boss.set_limit("user", "a@x.io", value)  # type: ignore[arg-type]
        assert boss.limits() == {}


def test_set_limit_normalises_the_scope(redis_url: str) -> None:
    with as_user("boss@x.io") as boss:
        boss.set_limit("user", "  A@X.io ", 2)
        assert boss.limits() == {"user:a@x.io": 2}
        with pytest.raises(InvalidPayload):
            boss.set_limit("org", "", 2)
        with pytest.raises(Exception, match="NOPE"):
            boss.set_limit("type", "NOPE", 2)


def test_staff_see_only_the_limits_that_apply_to_them_and_no_schedule_payloads(redis_url: str) -> None:
    with as_user("boss@x.io") as boss:
        for kind, name in (("user", "a@acme.io"), ("user", "b@x.io"), ("org", "acme"), ("org", "rival"),
                           ("type", "DEMO")):
            boss.set_limit(kind, name, 3)
        boss.save_schedule(Schedule(name="s1", type="DEMO", cron="0 3 * * *", payload={"duration_s": 7}))
        assert boss.schedules()[0].payload["duration_s"] == 7
    with as_user("a@acme.io") as a:
        assert a.limits() == {"user:a@acme.io": 3, "org:acme": 3, "type:DEMO": 3}
        assert a.schedules()[0].payload == {}
    with as_user("ann@x.io") as analyst:
        assert len(analyst.limits()) == 5


def test_the_local_admins_address_listed_with_a_lower_role_gets_that_role() -> None:
    assert principal(Settings(), None).role is Role.admin
    listed = Settings(roles={"admin@local": "analyst"})  # type: ignore[arg-type]
    assert principal(listed, None).role is Role.analyst
    assert principal(listed, "ADMIN@local").role is Role.analyst


@pytest.mark.parametrize("address", ["\u212aate@x.io", "stra\u00dfe@x.io", "\uff41@x.io"])
def test_addresses_that_fold_into_another_are_refused(address: str) -> None:
    with pytest.raises(AccessDenied, match="not a plain address"):
        principal(Settings(roles=ROLES), address)  # type: ignore[arg-type]


def test_organisations_come_from_the_identity_not_the_submitter(redis_url: str) -> None:
    with as_user("a@acme.io") as a:
        assert a.principal.org == "acme"
        assert a.submit("DEMO", {}).org_id == "acme"
        assert a.submit("DEMO", {}, org="acme").org_id == "acme"
        with pytest.raises(AccessDenied, match="organisation 'rival'"):
            a.submit("DEMO", {}, org="rival")
    with as_user("b@x.io") as b:
        assert b.submit("DEMO", {}).org_id == ""
        with pytest.raises(AccessDenied):
            b.submit("DEMO", {}, org="acme")
    with as_user("boss@x.io") as boss:
        assert boss.submit("DEMO", {}, org="rival").org_id == "rival"
        assert boss.submit("DEMO", {}, user="c@acme.io").org_id == "acme"
    _, record = on_store(lambda store: tokens.create(store, "t@x.io", Role.staff, org="tea"))
    assert record.org == "tea"


def test_the_per_org_running_limit_applies_to_every_submitter(redis_url: str, start_worker) -> None:
    start_worker(TASKDECK_ROLES=json.dumps(ROLES), TASKDECK_ORGS=json.dumps(ORGS), TASKDECK_MAX_RUNNING_PER_ORG="1")
    with as_user("a@acme.io") as a, as_user("b@acme.io") as b:
        first = a.submit("TEST_SLEEP", {"seconds": 30})
        second = b.submit("TEST_SLEEP", {"seconds": 30})
        deadline = time.monotonic() + 15
        while a.get(first.id).status is not JobStatus.processing and time.monotonic() < deadline:
            time.sleep(0.05)
        assert a.get(first.id).status is JobStatus.processing
        while not b.get(second.id).waiting_reason and time.monotonic() < deadline:
            time.sleep(0.05)
        waiting = b.get(second.id)
        assert waiting.status is JobStatus.queued and "org" in (waiting.waiting_reason or "")


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


def test_cli_payload_files_are_read_no_further_than_the_limit(redis_url: str, tmp_path: Path) -> None:
    started = time.monotonic()
    out = cli("submit", "DEMO", "--payload", "@/dev/zero", env={"TASKDECK_MAX_PAYLOAD_BYTES": "1000"})
    assert out.returncode == 2 and "over 1,000 bytes" in out.stderr and "Traceback" not in out.stderr
    assert time.monotonic() - started < 30
    binary = tmp_path / "payload.bin"
    binary.write_bytes(b"\xff\xfe\x00{\x80")
    out = cli("submit", "DEMO", "--payload", f"@{binary}")
    assert out.returncode == 2 and "not valid JSON" in out.stderr and "Traceback" not in out.stderr
    assert json.loads(cli("list", "--json").stdout) == []


def test_llm_errors_are_stored_without_credentials() -> None:
    from runner.llm.client import scrub

    echoed = 'HTTP 400: {"headers": {"Authorization": "Bearer sk-live-0123456789abcdef"}, "x-api-key": "k3y"}'
    cleaned = scrub(echoed)
    assert "sk-live" not in cleaned and "k3y" not in cleaned and "[redacted]" in cleaned
    assert scrub("HTTP 404: model gpt-x not found") == "HTTP 404: model gpt-x not found"


def test_history_filters_by_a_folded_address_find_nothing(redis_url: str) -> None:
    with as_user("boss@x.io") as boss:
        boss.submit("DEMO", {}, user="kate@x.io")
        assert [j.user_id for j in boss.list(user="KATE@x.io")] == ["kate@x.io"]
        assert boss.list(user="\u212aate@x.io") == []
