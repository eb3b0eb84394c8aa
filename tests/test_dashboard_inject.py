"""Markdown injection on the dashboard: what users and tasks wrote (ids in the URL, payload values, step names,
errors, emails, search text) shows literally on every page, never as a link, an image, HTML or a Streamlit
directive.

Three layers: a source check that every markdown-rendering Streamlit call in dashboard.py, app_pages/ and ui/
gets only safe text (ui/text.py); AppTest runs of the pages fed hostile text; and the real dashboard in
Chromium with a real worker, checking the page's links and images and every request it makes."""
from __future__ import annotations

import ast
import asyncio
import inspect
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, get_type_hints
from urllib.parse import quote, urlparse

import pytest
from streamlit.testing.v1 import AppTest

from runner import AsyncClient, Client, JobStatus
from runner.models import utcnow
from runner.storage import transitions
from tests.browser import CHROMIUM, cell
from tests.conftest import ROOT
from tests.dashboard_fixtures import drive, open_page
from tests.polling import wait_until
from ui import alerts, charts, text
from ui.text import Markdown, literal, md

LINK = "[Session expired - sign in](https://evil.example/login)"
IMAGE = "![x](https://evil.example/p.png)"
IMG_TAG = "<img src=x onerror=alert(1)>"
A_TAG = '<a href="https://evil.example/a">a</a>'
DIRECTIVES = ":red[DANGER] :material/skull: :streamlit:"
HOSTILE = f"{LINK} {IMAGE} {IMG_TAG} {A_TAG} {DIRECTIVES} **bold** `tick` $x^2$ www.evil.example"
MARKERS = ["evil.example", "onerror", "<a ", ":red[", ":material/skull:", "**bold**", "$x^2$"]
WORD_JOINER = "\u2060"


# --- what a markdown string shows as code, and what it leaves to be parsed ------------------------------

CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)


def code_spans(markdown: str) -> list[str]:
    """The text of each code span, as a browser shows it (CommonMark strips one space of padding)."""
    spans = [m.group(2) for m in CODE_SPAN.finditer(markdown)]
    return [(s[1:-1] if s.startswith(" ") and s.endswith(" ") and s.strip() else s).replace(WORD_JOINER, "")
            for s in spans]


def outside_code(markdown: str) -> str:
    return CODE_SPAN.sub("", markdown)


def assert_literal(markdown: str, shown: str = HOSTILE) -> None:
    """`markdown` shows `shown` inside a code span and leaves nothing of it to the markdown parser."""
    rest = outside_code(markdown)
    assert not [m for m in MARKERS if m in rest], f"parsed as markdown: {rest!r}"
    assert any(shown in span for span in code_spans(markdown)), f"{shown!r} not shown literally in {markdown!r}"


def test_literal_and_md_keep_hostile_text_in_one_code_span() -> None:
    for hostile in [HOSTILE, f"`{HOSTILE}`", f"``a`b`` {HOSTILE} ```", "` " + HOSTILE]:
        assert_literal(literal(hostile, 1000), hostile)
        assert_literal(md("Job {} not found", hostile, limit=1000), hostile)
    assert md("{:,} jobs, {}, {}", 12345, md("{}", "x"), 2.5) == "12,345 jobs, `x`, 2.5"
    assert isinstance(md("{}", "x"), Markdown) and isinstance(text.trusted("x"), Markdown)
    assert literal("a\n\nb   c") == "`a b c`" and literal("x" * 300).endswith("x…`")
    assert alerts.message(ValueError(HOSTILE)) == literal(HOSTILE, alerts.ERROR_CHARS)
    assert text.job_link("0" * 32) == f"[open](job?id={'0' * 32})" and text.job_link(LINK) == ""


def test_plotly_text_is_escaped() -> None:
    assert charts.as_plotly_text(A_TAG) == '&lt;a href="https://evil.example/a"&gt;a&lt;/a&gt;'
    assert charts.as_plotly_text("a & b") == "a &amp; b"


# --- the source check -------------------------------------------------------------------------------

SOURCES = [ROOT / "dashboard.py", *sorted((ROOT / "app_pages").glob("*.py")), *sorted((ROOT / "ui").glob("*.py"))]
BODY_FIRST = {"markdown", "caption", "error", "warning", "info", "success", "toast", "write", "title", "header",
              "subheader", "badge", "button", "download_button", "form_submit_button", "expander", "popover",
              "checkbox", "toggle", "text_input", "text_area", "number_input", "date_input", "selectbox",
              "multiselect", "radio", "segmented_control", "slider", "metric", "dialog"}
KEYWORDS = {"metric": {"label", "value", "delta"}, "progress": {"text"}, "page_link": {"label"}}
OPTIONS_RENDERED = {"radio", "segmented_control"}


def safe_calls() -> set[str]:
    """The functions whose result is `Markdown`: ui/text.py's builders and ui/alerts.py's `message`."""
    modules: list[ModuleType] = [text, alerts]
    return {name for module in modules for name, f in vars(module).items()
            if inspect.isfunction(f) and f.__module__ == module.__name__
            and get_type_hints(f).get("return") is Markdown}


def markdown_names(tree: ast.AST) -> set[str]:
    """Names the module annotates as Markdown (parameters and annotated assignments)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None and "Markdown" in ast.unparse(node.annotation):
            names.add(node.arg)
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                and "Markdown" in ast.unparse(node.annotation):
            names.add(node.target.id)
    return names


@dataclass
class Checker:
    calls: set[str]
    names: set[str]

    def safe(self, node: ast.expr) -> bool:
        """Safe by its form: a literal, a call to a function named like a Markdown builder, a name typed
        Markdown, or a combination of those."""
        if isinstance(node, ast.Constant):
            return True
        if isinstance(node, ast.Call):
            func = node.func
            return (func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)) in self.calls
        if isinstance(node, ast.IfExp):
            return self.safe(node.body) and self.safe(node.orelse)
        if isinstance(node, ast.BoolOp):
            return all(self.safe(v) for v in node.values)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return self.safe(node.left) and self.safe(node.right)
        if isinstance(node, (ast.List, ast.Tuple)):
            return all(self.safe(e) for e in node.elts)
        return isinstance(node, ast.Name) and node.id in self.names

    def rendered(self, call: ast.Call) -> list[ast.expr]:
        """The arguments of `call` that Streamlit renders as markdown."""
        name = call.func.attr if isinstance(call.func, ast.Attribute) else ""
        keywords = KEYWORDS.get(name, {"body", "label"} if name in BODY_FIRST else set()) | {"help"}
        found = [k.value for k in call.keywords if k.arg in keywords]
        if name in BODY_FIRST and call.args:
            found.append(call.args[0])
        if name in ("page_link", "progress") and len(call.args) > 1:
            found.append(call.args[1])
        if name == "metric":
            found += call.args[1:3]
        if name == "tabs" and call.args:
            found.append(call.args[0])
        if name in OPTIONS_RENDERED:
            found += call.args[1:2] + [k.value for k in call.keywords if k.arg == "options"]
        return found


def unsafe_markdown_calls(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text())
    checker = Checker(safe_calls(), markdown_names(tree))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for argument in checker.rendered(node):
                if not checker.safe(argument):
                    yield f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(argument)}"


def test_every_markdown_rendering_call_gets_safe_text() -> None:
    """A string literal, `md(...)`/`trusted(...)`/another Markdown builder, or a name typed Markdown: never an
    f-string, `str(e)` or a raw value, which Streamlit would parse as markdown."""
    found = [line for path in SOURCES for line in unsafe_markdown_calls(path)]
    assert found == []


def test_the_checker_catches_what_it_should() -> None:
    source = ('st.warning(str(e))\nst.caption(f"Job {job.id}")\ncol.metric("x", job.attempts)\n'
              'st.button(label)\nst.progress(1, text=job.current_step)\nst.tabs([name])\n'
              'st.info(md("Job {}", e))\nst.caption("static")\nst.toast(message(e))\nst.text_input("q", value=typed)\n'
              'st.metric(trusted(f"Queued {p.value}"), md("{}", n), delta=change)\n')
    tree = ast.parse(source)
    checker = Checker(safe_calls(), markdown_names(tree))
    flagged = [ast.unparse(a) for node in ast.walk(tree) if isinstance(node, ast.Call)
               for a in checker.rendered(node) if not checker.safe(a)]
    assert flagged == ["str(e)", "f'Job {job.id}'", "job.attempts", "label", "job.current_step", "[name]", "change"]


def test_no_html_is_ever_allowed() -> None:
    for path in SOURCES:
        source = path.read_text()
        assert "unsafe_allow_html" not in source and "st.html(" not in source and "components.html" not in source, path


# --- AppTest: each page fed hostile text ------------------------------------------------------------------

MARKDOWN_FIELDS = {"body", "label", "help", "text", "delta"}
PLAIN_ELEMENTS = {"json", "text", "code", "arrow_data_frame", "plotly_chart"}


def proto_strings(message: Any) -> Iterator[str]:
    for field, value in message.ListFields():
        if field.type == field.TYPE_MESSAGE:
            for item in ([value] if hasattr(value, "ListFields") else value):
                yield from proto_strings(item)
        elif field.name in MARKDOWN_FIELDS and isinstance(value, str):
            yield value


def rendered(at: AppTest) -> list[str]:
    """Every string the app handed Streamlit to render as markdown: alert, toast and markdown bodies, metric
    values, labels, help, progress text (st.code, st.json, st.text and tables show text as it is)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None and getattr(node, "type", None) not in PLAIN_ELEMENTS:
            found.extend(proto_strings(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return found


def assert_page_literal(at: AppTest, shown: str | None = HOSTILE) -> None:
    """Nothing hostile reaches the markdown parser anywhere on the page; `shown` is in one of its code spans."""
    strings = rendered(at)
    parsed = [outside_code(s) for s in strings]
    assert not [(m, p) for p in parsed for m in MARKERS if m in p]
    if shown is not None:
        assert any(shown in span for s in strings for span in code_spans(s)), f"{shown!r} not shown literally"


def report_step(job_id: str, step: str) -> None:
    """Start `job_id` as a worker would, running one step named `step`."""
    asyncio.run(_report_step(job_id, step))


async def _report_step(job_id: str, step: str) -> None:
    from runner.models import Step, StepStatus
    async with AsyncClient() as ac:
        store, keys = ac.store, ac.store.keys
        job = await store.load(job_id)
        assert job is not None
        start = utcnow() - timedelta(seconds=2)
        spec = transitions.start(job, "worker-test", (step,), start, keys.arq_in_progress(job.id), 30_000, None, {})
        assert (await store.apply(job.id, spec, start)).applied
        running = await store.load(job_id)
        assert running is not None
        fields = {"progress": 40.0, "current_step": step, "updated_at": start,
                  "steps": [Step(name=step, status=StepStatus.running, progress=40, started_at=start)]}
        assert (await store.apply(job.id, transitions.progress(running.attempts, fields), start)).applied


def test_job_page_for_a_hostile_id(client: Client) -> None:  # noqa: F811
    at = open_page("job", id=HOSTILE)
    assert at.warning and "not found" in at.warning[0].value
    assert_page_literal(at)


def test_submit_page_prefilled_from_a_hostile_id(client: Client) -> None:  # noqa: F811
    at = open_page("submit", **{"from": HOSTILE})
    assert at.warning and "not found" in at.warning[0].value
    assert_page_literal(at)


def test_submit_validation_error_quoting_the_payload(client: Client) -> None:  # noqa: F811
    at = open_page("submit")
    at.selectbox(key="submit_type").set_value("TEST_STEP_TEXT").run()
    at.text_area(key="payload:TEST_STEP_TEXT.text").set_value(f"REFUSE {HOSTILE}")
    next(b for b in at.button if b.label == "Submit job").click().run()
    assert not at.exception and client.list() == []
    assert any("refused" in e.value for e in at.error)
    assert_page_literal(at)


def test_job_page_with_hostile_payload_step_and_progress(client: Client) -> None:  # noqa: F811
    job = client.submit("TEST_STEP_TEXT", {"text": HOSTILE})
    report_step(job.id, HOSTILE)
    at = open_page("job", id=job.id)
    assert [p.proto.text for p in at.get("progress")] == [literal(HOSTILE)]
    assert_page_literal(at, shown=HOSTILE[:150])
    chart = at.get("plotly_chart")[0].proto.spec
    assert "<a href" not in chart and "&lt;a href" in chart


def test_job_page_and_toast_of_a_job_failed_with_hostile_text(client: Client) -> None:  # noqa: F811
    at = open_page("job")
    job = client.submit("TEST_STEP_TEXT", {"text": HOSTILE})
    drive(job.id, "failed", error=f"Fatal: {HOSTILE}")
    at.run()
    toasts = [t.value for t in at.toast]
    assert len(toasts) == 1 and "failed" in toasts[0]
    assert_page_literal(at, shown=HOSTILE[:100])
    at = open_page("job", id=job.id)
    assert f"Fatal: {HOSTILE}" in [c.value for c in at.code]
    assert_page_literal(at, shown=None)


def test_history_search_for_hostile_text(client: Client) -> None:  # noqa: F811
    job = client.submit("TEST_STEP_TEXT", {"text": HOSTILE})
    drive(job.id, "failed", error=HOSTILE)
    at = open_page("history")
    at.text_input(key="h_error").set_value(LINK).run()
    at.text_input(key="h_user").set_value(HOSTILE).run()
    assert not at.exception
    assert_page_literal(at, shown=None)
    at.text_input(key="h_user").set_value("").run()
    assert list(at.dataframe[0].value["Last error"]) == [HOSTILE]
    assert_page_literal(at, shown=None)


def test_settings_flash_quoting_a_hostile_org(client: Client) -> None:  # noqa: F811
    at = open_page("settings")
    at.selectbox(key="limit_kind").set_value("org").run()
    at.text_input(key="limit_name_org").set_value(HOSTILE).run()
    next(b for b in at.button if b.label == "Save override").click().run()
    at.run()
    assert not at.exception and at.toast
    assert_page_literal(at, shown=HOSTILE[:150])


def test_a_hostile_signed_in_email_is_refused_literally(client: Client) -> None:  # noqa: F811
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=30)
    at.secrets["auth"] = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback",
                          "cookie_secret": "a-test-cookie-secret-of-32-chars!",
                          "mock": {"client_id": "x", "client_secret": "y",
                                   "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}}
    at.user = {"is_logged_in": True, "email": f"{LINK}@x.io", "name": "x"}
    at.run()
    assert not at.exception and at.error
    assert_page_literal(at, shown=None)


# --- the real dashboard in Chromium ------------------------------------------------------------------------

OFF_MACHINE = re.compile(r"^(?!(https?|wss?)://127\.0\.0\.1[:/])(?!data:|blob:)")
LINKING_ATTRIBUTES = ["href", "xlink:href", "src", "srcset", "action", "formaction", "poster", "background"]
FOUND_LINKS = """names => [...document.querySelectorAll('*')].flatMap(e => [...e.attributes]
    .filter(a => a.name.startsWith('on') || (names.includes(a.name)
                 && (a.value.includes('evil.example') || (e.tagName === 'IMG' && a.value === 'x'))))
    .map(a => `${e.tagName} ${a.name}=${a.value}`))"""


@dataclass
class Tab:
    page: Any
    requests: list[str]
    refused: list[str]


@pytest.fixture
def tab(browser: Any, dashboard: str) -> Iterator[Tab]:  # noqa: F811
    """A browser tab on the dashboard that records every request and refuses any that leaves the machine."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=dashboard)
    seen: list[str] = []
    refused: list[str] = []

    def refuse(route: Any) -> None:
        refused.append(route.request.url)
        route.abort()

    context.on("request", lambda request: seen.append(request.url))
    context.route(OFF_MACHINE, refuse)
    yield Tab(context.new_page(), seen, refused)
    context.close()


def assert_inert(tab: Tab) -> None:
    """No link, image or handler the hostile text could have made, and no request it could have caused."""
    tab.page.wait_for_load_state("networkidle")
    assert tab.page.evaluate(FOUND_LINKS, LINKING_ATTRIBUTES) == []
    assert [u for u in tab.requests if (urlparse(u).hostname or "").endswith("evil.example")
            or urlparse(u).path == "/x"] == []
    assert tab.refused == []


def shown_code(locator: Any) -> str:
    """The text of the code spans inside `locator`, as a reader sees it."""
    return " ".join(locator.locator("code").all_text_contents()).replace(WORD_JOINER, "")


def in_thread(function: Callable[[], object]) -> object:
    """Run a helper that calls asyncio.run: Playwright's sync API owns this thread's event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(function).result()


RECORD_TOASTS = """() => {
    window.__toasts = [];
    new MutationObserver(() => document.querySelectorAll('[data-testid="stToast"]').forEach(t => {
        const code = [...t.querySelectorAll('code')].map(c => c.textContent).join(' ');
        if (!window.__toasts.some(seen => seen.text === t.textContent))
            window.__toasts.push({text: t.textContent, code: code});
    })).observe(document.body, {childList: true, subtree: true, characterData: true});
}"""


def toasts_seen(page: Any) -> list[dict[str, str]]:
    """Every toast shown since RECORD_TOASTS ran: a full rerun may take one away before a test looks."""
    return list(page.evaluate("window.__toasts"))


def alert_of(tab: Tab, text: str) -> Any:
    found = tab.page.locator('[data-testid="stAlert"]', has_text=text).first
    found.wait_for(timeout=30_000)
    return found


@pytest.mark.e2e
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium")
@pytest.mark.parametrize("path", ["/job?id=", "/submit?from="])
def test_browser_hostile_id_in_the_url(tab: Tab, path: str) -> None:
    tab.page.goto(path + quote(HOSTILE))
    assert HOSTILE in shown_code(alert_of(tab, "not found"))
    assert_inert(tab)


@pytest.mark.e2e
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium")
def test_browser_submit_validation_error_quoting_the_payload(tab: Tab, client: Client) -> None:  # noqa: F811
    source = client.submit("TEST_STEP_TEXT", {"text": "plain"})
    tab.page.goto(f"/submit?from={source.id}")
    box = tab.page.get_by_role("textbox", name="Text")
    box.wait_for(timeout=30_000)
    box.fill(f"REFUSE {HOSTILE}")
    tab.page.get_by_role("button", name="Submit job").click()
    assert f"REFUSE {HOSTILE}" in shown_code(alert_of(tab, "refused"))
    assert len(client.list()) == 1
    assert_inert(tab)


@pytest.mark.e2e
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium")
def test_browser_a_job_with_hostile_payload_step_and_error(tab: Tab, client: Client,  # noqa: F811
                                                           start_worker: Any) -> None:
    job = client.submit("TEST_STEP_TEXT", {"text": HOSTILE, "hold_s": 5})
    page = tab.page
    page.goto(f"/job?id={job.id}")
    page.get_by_text(f"TEST_STEP_TEXT · {job.id[:8]}").wait_for(timeout=30_000)
    watcher = page.context.new_page()
    watcher.goto("/history")
    watcher.get_by_text("Taskdeck · background AI jobs").wait_for(timeout=30_000)
    watcher.evaluate(RECORD_TOASTS)
    start_worker()
    progress = page.locator('[data-testid="stProgress"]', has_text="evil").first
    progress.wait_for(timeout=30_000)
    assert HOSTILE[:150] in shown_code(progress)
    assert_inert(tab)
    failed = wait_until(lambda: [t for t in toasts_seen(watcher) if "failed" in t["text"]], 30, "the failure toast")
    assert HOSTILE[:100] in failed[0]["code"].replace(WORD_JOINER, "")
    last_error = page.locator('[data-testid="stCode"]', has_text="onerror").first
    last_error.wait_for(timeout=30_000)
    assert HOSTILE in (last_error.text_content() or "")
    chart = page.locator('[data-testid="stPlotlyChart"] svg').first
    chart.wait_for(timeout=30_000)
    wait_until(lambda: A_TAG in (chart.text_content() or ""), 10, "the step name as text on the timeline")
    page.get_by_role("tab", name="Payload").click()
    page.get_by_text("onerror=alert(1)", exact=False).first.wait_for(timeout=10_000)
    assert_inert(tab)
    assert client.get(job.id).status is JobStatus.failed


@pytest.mark.e2e
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium")
def test_browser_history_search_with_hostile_text(tab: Tab, client: Client) -> None:  # noqa: F811
    job = client.submit("TEST_STEP_TEXT", {"text": HOSTILE})
    in_thread(lambda: drive(job.id, "failed", error=HOSTILE))
    page = tab.page
    page.goto("/history")
    search = page.get_by_role("textbox", name="Error contains")
    search.wait_for(timeout=30_000)
    search.fill(LINK)
    search.press("Enter")
    cell(page, job.id[:8])
    by = page.get_by_role("textbox", name="Submitted by")
    by.fill(HOSTILE)
    by.press("Enter")
    page.get_by_text("No jobs match these filters").wait_for(timeout=30_000)
    assert_inert(tab)
