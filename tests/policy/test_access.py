"""The role matrix: each role × each action × own and another user's job, enforced in runner."""
from __future__ import annotations

import pytest

from runner import AccessDenied, Client, JobNotFound, JobStatus, Settings

ROLES = {"staff@x.io": "staff", "other@x.io": "staff", "analyst@x.io": "analyst", "boss@x.io": "admin"}
ALLOWED = {  # (role, action, whose job) -> allowed
    ("staff", "get", "own"): True, ("staff", "get", "other"): False,
    ("staff", "cancel", "own"): True, ("staff", "cancel", "other"): False,
    ("staff", "retry", "own"): True, ("staff", "retry", "other"): False,
    ("analyst", "get", "own"): True, ("analyst", "get", "other"): True,
    ("analyst", "cancel", "own"): False, ("analyst", "cancel", "other"): False,
    ("analyst", "retry", "own"): False, ("analyst", "retry", "other"): False,
    ("admin", "get", "own"): True, ("admin", "get", "other"): True,
    ("admin", "cancel", "own"): True, ("admin", "cancel", "other"): True,
    ("admin", "retry", "own"): True, ("admin", "retry", "other"): True,
}
EMAIL = {"staff": "staff@x.io", "analyst": "analyst@x.io", "admin": "boss@x.io"}


def as_user(email: str) -> Client:
    return Client(Settings(roles=ROLES), user=email)


@pytest.mark.parametrize(("role", "action", "whose"), list(ALLOWED))
def test_role_matrix(redis_url: str, role: str, action: str, whose: str) -> None:
    me = EMAIL[role]
    owner = me if whose == "own" else "other@x.io"
    with Client(Settings(roles=ROLES)) as admin:
        job = admin.submit("DEMO", {}, user=owner)
        if action == "retry":
            admin.cancel(job.id)
    with as_user(me) as client:
        act = {"get": client.get, "cancel": client.cancel, "retry": client.retry}[action]
        if ALLOWED[(role, action, whose)]:
            result = act(job.id)
            assert result.id == job.id
        else:
            error = AccessDenied if role == "analyst" else JobNotFound
            with pytest.raises(error) as refused:
                act(job.id)
            if error is JobNotFound:
                assert str(refused.value) == f"job {job.id!r} not found; `python -m runner list` shows recent jobs"
    with Client(Settings(roles=ROLES)) as admin:
        expected = {"cancel": JobStatus.cancelled, "retry": JobStatus.queued}.get(action)
        if expected and ALLOWED[(role, action, whose)]:
            assert admin.get(job.id).status is expected


def test_submit_and_list_per_role(redis_url: str) -> None:
    with as_user("staff@x.io") as staff, as_user("analyst@x.io") as analyst, as_user("boss@x.io") as boss:
        own = staff.submit("DEMO", {})
        assert own.user_id == "staff@x.io"
        with pytest.raises(AccessDenied, match="staff@x.io may not submit on behalf of other@x.io"):
            staff.submit("DEMO", {}, user="other@x.io")
        on_behalf = boss.submit("DEMO", {}, user="other@x.io")
        with pytest.raises(AccessDenied, match="analyst@x.io may not submit jobs"):
            analyst.submit("DEMO", {})
        assert [j.id for j in staff.list()] == [own.id]
        assert staff.list(user="other@x.io") == []
        assert {j.id for j in analyst.list()} == {own.id, on_behalf.id}
        with pytest.raises(AccessDenied):
            staff.audit()
        actions = [(e["action"], e["by"], e["owner"]) for e in boss.audit()]
        assert actions == [("submit", "boss@x.io", "other@x.io"), ("submit", "staff@x.io", "staff@x.io")]


def test_unknown_email_is_refused(redis_url: str) -> None:
    with pytest.raises(AccessDenied, match="eve@evil.io is not on the allow-list"):
        as_user("eve@evil.io")
