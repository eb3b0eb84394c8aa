"""Sign-in and roles in the dashboard: local mode without [auth]; with [auth], st.user's email mapped to a
role by TASKDECK_ROLES (AppTest seeds st.user as a signed-in session would); unknown emails refused."""
from __future__ import annotations

import json

import pytest

from runner import Client, JobStatus
from runner.policy.access import Principal, Role
from tests.dashboard_fixtures import app, button, drive, open_page, texts
from ui import menu

ROLES = {"sam@x.io": "staff", "ann@x.io": "analyst", "*@boss.io": "admin"}


@pytest.fixture(autouse=True)
def roles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKDECK_ROLES", json.dumps(ROLES))


def test_local_mode_says_who_you_are(client: Client) -> None:
    at = open_page("live")
    assert "Local mode: you are admin@local (no sign-in configured)" in texts(at.sidebar)
    assert not [b for b in at.button if b.label == "Log out"]


def test_nobody_signed_in_sees_only_the_sign_in_button(client: Client) -> None:
    at = app(as_user="").run()
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.dataframe and not at.exception


def test_an_unknown_email_gets_access_denied_and_nothing_else(client: Client) -> None:
    client.submit("DEMO", {})
    at = app(as_user="eve@evil.io").run()
    assert [t.value for t in at.title] == ["Access denied"]
    assert "eve@evil.io is not on the allow-list (TASKDECK_ROLES)" in at.error[0].value
    assert [b.label for b in at.button] == ["Log out"]
    assert not at.dataframe and not at.metric and not at.sidebar.children and not at.exception


def test_the_local_admins_name_is_not_an_admin_account_when_signing_in(client: Client) -> None:
    at = app(as_user="admin@local").run()
    assert [t.value for t in at.title] == ["Access denied"]


def test_staff_sees_and_acts_on_their_own_jobs_only(client: Client) -> None:
    own = client.submit("DEMO", {"fail_always": True}, user="sam@x.io")
    other = client.submit("DEMO", {}, user="bob@x.io")
    at = open_page("live", as_user="Sam@X.io")
    assert "Signed in as `sam@x.io`" in texts(at.sidebar)
    assert "Role: staff" in texts(at.sidebar)
    assert [b.label for b in at.sidebar.button] == ["Log out"]
    assert list(at.dataframe[0].value["Job"]) == [f"job?id={own.id}"]
    assert not [t for t in at.toggle if t.key == "live_mine"]
    assert button(at, "Cancel selected")

    drive(own.id, "failed", error="DemoFailure: x")
    at = open_page("job", as_user="sam@x.io", id=own.id)
    assert [b.label for b in at.button if b.label in ("Cancel", "Retry")] == ["Cancel", "Retry"]
    button(at, "Retry").click().run()
    again = client.get(own.id)
    assert again.status is JobStatus.queued and again.retried_by == "sam@x.io"

    at = open_page("job", as_user="sam@x.io", id=other.id)
    assert "not found" in texts(at)
    at = open_page("history", as_user="sam@x.io")
    at.multiselect(key="h_status").set_value([]).run()
    assert list(at.dataframe[0].value["Job"]) == [f"job?id={own.id}"]
    at = open_page("metrics", as_user="sam@x.io")
    assert "may not read everyone's jobs" in texts(at)


def test_an_analyst_reads_everything_and_changes_nothing(client: Client) -> None:
    mine = client.submit("DEMO", {"fail_always": True})
    drive(mine.id, "failed", error="DemoFailure: x")
    queued = client.submit("DEMO", {}, user="sam@x.io")
    at = open_page("live", as_user="ann@x.io")
    assert list(at.dataframe[0].value["Job"]) == [f"job?id={queued.id}"]
    assert not [b for b in at.button if b.label.startswith("Cancel")]
    at = open_page("job", as_user="ann@x.io", id=mine.id)
    assert not [b for b in at.button if b.label in ("Cancel", "Retry")] and not at.main.get("page_link")
    at = open_page("history", as_user="ann@x.io")
    assert list(at.dataframe[0].value["Job"]) == [f"job?id={mine.id}"]
    assert not [b for b in at.button if b.label.startswith("Retry")]
    assert "Read-only" in texts(at)
    at = open_page("submit", as_user="ann@x.io")
    assert "Your role (analyst) reads jobs and metrics but does not submit jobs" in texts(at)
    assert not at.get("form")
    at = open_page("metrics", as_user="ann@x.io")
    assert [m.value for m in at.metric][:3] == ["2", "0", "1"]
    assert client.get(mine.id).status is JobStatus.failed


def test_an_admin_by_pattern_has_everything(client: Client) -> None:
    client.submit("DEMO", {}, user="sam@x.io")
    at = open_page("settings", as_user="kim@boss.io")
    assert [t.label for t in at.tabs] == ["Running limits", "Schedules", "Alert rules", "Audit log"]
    assert "sam@x.io" not in texts(at) and at.dataframe[-1].value["Who"][0] == "admin@local"


def test_each_role_sees_its_pages_in_the_menu() -> None:
    def pages(role: Role) -> list[str]:
        return menu.visible(Principal("p@x.io", role))
    assert pages(Role.admin) == ["submit", "live", "job", "history", "metrics", "workers", "settings", "inbox",
                                 "profile"]
    assert pages(Role.staff) == ["submit", "live", "job", "history", "workers", "inbox", "profile"]
    assert pages(Role.analyst) == ["live", "job", "history", "metrics", "workers", "inbox", "profile"]
