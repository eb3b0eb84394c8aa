"""The real dashboard (`streamlit run dashboard.py`) and a real worker, driven in headless Chromium:
submit from the form, watch Live reach 100 %, cancel a running job, retry a failed one from History,
open the Job page. Screenshots of Live, Job and Metrics go to the test's temporary folder, or to docs/ (README's
pictures) when TASKDECK_SCREENSHOTS=docs: a test run never writes into tracked files by itself."""
from __future__ import annotations

import asyncio
import os
import re
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from runner import AsyncClient, Client, JobStatus
from runner.storage import counters
from tests.browser import CHROMIUM, cell
from tests.conftest import ROOT
from tests.polling import wait_until

DOCS = ROOT / "docs" if os.environ.get("TASKDECK_SCREENSHOTS") == "docs" else Path(tempfile.mkdtemp(prefix="shots-"))
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium")]


async def sample_depth() -> None:
    """A queue-depth sample of the backlog, as a worker's heartbeat takes them."""
    async with AsyncClient() as ac:
        await counters.sample_depth(ac.store)


def row_texts(tab) -> list[str]:
    return [" | ".join(row.locator("td").all_inner_texts())
            for row in tab.locator('[data-testid="stDataFrame"] tbody tr').all()]


def tick_row(tab, n: int) -> None:
    box = tab.locator('[data-testid="stDataFrame"]').first.bounding_box()
    tab.mouse.click(box["x"] + 18, box["y"] + 35 + 35 * n + 17)


def toast(tab, pattern: str, timeout: float = 15_000) -> None:
    tab.locator('[data-testid="stToast"]', has_text=re.compile(pattern)).first.wait_for(timeout=timeout)


def test_submit_from_the_form_and_watch_it_complete_on_live(page, browser, client_for_e2e: Client,
                                                            start_worker) -> None:
    start_worker()
    live = page
    live.goto("/live")
    live.get_by_text("No queued or running jobs").wait_for(timeout=30_000)
    long_ones = [client_for_e2e.submit("DEMO", {"duration_s": 40, "steps": 4}) for _ in range(2)]
    client_for_e2e.submit("DEMO", {"duration_s": 40, "steps": 2}, priority="low")
    form = live.context.new_page()
    form.goto("/submit")
    form.get_by_test_id("stSelectbox").filter(has_text="Task type").click(timeout=30_000)  # the generative types
    form.get_by_role("option", name=re.compile(r"^DEMO\b")).click()  # run on the demo model now: DEMO isn't first
    form.get_by_role("spinbutton", name="Duration (s)").wait_for(timeout=30_000)
    form.get_by_role("spinbutton", name="Duration (s)").fill("3")
    form.get_by_role("spinbutton", name="Steps", exact=True).fill("3")
    form.get_by_role("button", name="Submit job").click()
    toast(form, "submitted")
    job = next(j for j in client_for_e2e.list() if j.payload.get("duration_s") == 3)
    assert job.payload["steps"] == 3
    cell(live, job.id[:8])
    cell(live, "Step 2 of 3")
    live.screenshot(path=str(DOCS / "live.png"))
    cell(live, "completed")
    wait_until(lambda: any(job.id[:8] in r and " | completed | 1 | " in r for r in row_texts(live)), 20,
               "the form's job at 100 % on Live")
    assert client_for_e2e.get(job.id).status is JobStatus.completed

    rows = row_texts(live)
    target = next(i for i, r in enumerate(rows) if long_ones[0].id[:8] in r)
    tick_row(live, target)
    live.get_by_role("button", name=re.compile(r"Cancel selected \(1\)")).click()
    toast(live, "Cancelled 1 of 1")
    wait_until(lambda: client_for_e2e.get(long_ones[0].id).status is JobStatus.cancelled, 10, "the cancel")
    wait_until(lambda: any(long_ones[0].id[:8] in r and "cancelled" in r for r in row_texts(live)), 10,
               "the cancelled row on Live")
    assert client_for_e2e.get(long_ones[1].id).status is JobStatus.processing

    job_tab = live.context.new_page()
    job_tab.goto(f"/job?id={job.id}")
    job_tab.get_by_text(f"DEMO · {job.id[:8]}").wait_for(timeout=30_000)
    job_tab.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=30_000)
    job_tab.wait_for_timeout(500)
    job_tab.screenshot(path=str(DOCS / "job.png"))


def test_retry_a_failed_job_from_history(page, client_for_e2e: Client, start_worker) -> None:
    start_worker()
    failed = client_for_e2e.submit("DEMO", {"fail_always": True})
    client_for_e2e.submit("DEMO", {"duration_s": 0.5, "steps": 2})
    wait_until(lambda: client_for_e2e.get(failed.id).status is JobStatus.failed, 30, "DEMO fail_always to fail")
    page.goto("/history")
    page.get_by_role("textbox", name="Job id starts with").fill(failed.id[:12])
    page.get_by_role("textbox", name="Job id starts with").press("Enter")
    cell(page, "failed")
    wait_until(lambda: len(row_texts(page)) == 1, 10, "the search to leave one row")
    tick_row(page, 0)
    page.get_by_role("button", name=re.compile(r"Retry selected \(1\)")).click()
    toast(page, r"Retried 1 job")
    again = client_for_e2e.get(failed.id)
    assert again.retried_by == "admin@local" and again.retried_from == "failed" and again.attempts >= 3

    page.goto(f"/job?id={failed.id}")
    page.get_by_text(f"DEMO · {failed.id[:8]}").wait_for(timeout=30_000)
    page.get_by_text("Attempts").first.wait_for()


def test_metrics_page(page, client_for_e2e: Client, start_worker) -> None:
    for n in range(12):
        client_for_e2e.submit("DEMO", {"duration_s": 0.1 * n, "fail_always": n % 6 == 5},
                              priority="high" if n < 2 else "low" if n > 8 else "normal")
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API owns this thread's event loop
        pool.submit(asyncio.run, sample_depth()).result()
    start_worker()
    wait_until(lambda: client_for_e2e.count("completed") == 10, 30, "ten DEMO jobs to complete")
    page.set_viewport_size({"width": 1400, "height": 1900})
    page.goto("/metrics")
    page.get_by_text("1h", exact=True).click()
    charts = page.locator('[data-testid="stPlotlyChart"]')
    wait_until(lambda: charts.count() >= 4, 30, "the metrics charts")
    page.wait_for_timeout(1000)
    page.screenshot(path=str(DOCS / "metrics.png"))


@pytest.fixture
def client_for_e2e(redis_url: str) -> Iterator[Client]:
    with Client() as c:
        yield c
