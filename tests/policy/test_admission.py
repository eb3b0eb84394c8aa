"""Submit-time checks of the generative types: without an endpoint they are listed but refused, and a
user over their hourly token quota is refused; in both cases nothing is written."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from runner import Client, LimitExceeded, Unavailable
from runner.policy import admission
from runner.reads import llm_status as status
from runner.settings import Settings
from tests.conftest import ROOT

BRIEF = {"brand_name": "Brew", "industry": "coffee"}
NEEDS = "GENERATE_BRAND_KIT needs an LLM endpoint: set TASKDECK_LLM_BASE_URL and TASKDECK_LLM_MODEL"


@pytest.fixture
def no_llm(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TASKDECK_LLM_BASE_URL", "TASKDECK_LLM_MODEL", "TASKDECK_LLM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TASKDECK_LLM_EMBEDDED", "0")  # else the embedded demo model stands in (test_embedded.py)


def test_without_an_endpoint_generative_types_are_listed_but_refused(no_llm: None, r) -> None:
    with Client() as client:
        types = {t.name: t for t in client.types()}
        generative = [name for name, t in types.items() if admission.needs_llm(t) and not name.startswith("TEST_")]
        assert len(generative) == 10 and "SCRAPE_WEBSITE" not in generative and "DEMO" not in generative
        assert admission.unavailable_reason(types["GENERATE_BRAND_KIT"], client.settings).startswith(NEEDS)
        assert admission.unavailable_reason(types["DEMO"], client.settings) is None
        with pytest.raises(Unavailable, match=NEEDS):
            client.submit("GENERATE_BRAND_KIT", BRIEF)
        assert r.dbsize() == 0, "a refused submit must write nothing"
        assert client.submit("DEMO", {"duration_s": 0}).status == "queued"
    llm = status.llm_status(Settings())
    assert not llm.configured and llm.missing == ["TASKDECK_LLM_BASE_URL", "TASKDECK_LLM_MODEL"]


def test_the_cli_refuses_with_one_line_and_exit_2(no_llm: None) -> None:
    out = subprocess.run([sys.executable, "-m", "runner", "submit", "GENERATE_BRAND_KIT", "--payload",
                          '{"brand_name": "Brew", "industry": "coffee"}'], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and NEEDS in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_a_user_over_their_hourly_token_quota_is_refused(llm_env, monkeypatch: pytest.MonkeyPatch, r) -> None:  # noqa: F811
    monkeypatch.setenv("TASKDECK_LLM_USER_TOKENS_PER_HOUR", "1000")
    r.hset(f"taskdeck:m:1h:{int(time.time() // 3600 * 3600)}", "llm_tokens:user:ana@x.io", 1000)
    before = r.dbsize()
    with Client() as client:
        with pytest.raises(LimitExceeded, match=r"ana@x.io has used 1,000 of the 1,000 LLM tokens allowed per hour; "
                                                r"submit again after \d\d:00 UTC"):
            client.submit("GENERATE_BRAND_KIT", BRIEF, user="ana@x.io")
        assert r.dbsize() == before
        assert client.submit("DEMO", {"duration_s": 0}, user="ana@x.io"), "the quota covers LLM types only"
        assert client.submit("GENERATE_BRAND_KIT", BRIEF, user="bo@x.io"), "the quota is per user"


def test_status_names_the_endpoint_in_use(llm_env) -> None:  # noqa: F811
    llm = status.llm_status(Settings())
    assert llm.configured and llm.endpoint.startswith("127.0.0.1:") and llm.endpoint.endswith("/v1")
    assert llm.model == "gpt-4o-mini" and llm.structured_output == "auto (json_schema)" and llm.breaker is None
