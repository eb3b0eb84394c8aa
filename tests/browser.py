"""Browser fixtures shared by the Chromium suites: a real `streamlit run` dashboard per module, Debian's
Chromium through Playwright, and a tab that fails its test if it fetched anything off this machine.
Registered for every test module by tests/conftest.py (pytest_plugins)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import dashboard_server

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def dashboard(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("dashboard") / "streamlit.log"
    with dashboard_server(log, {"REDIS_URL": redis_url}) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, dashboard: str) -> Iterator[object]:
    """A browser tab on the dashboard; fails the test if any tab fetched anything off this machine."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=dashboard)
    outside: list[str] = []
    context.on("request", lambda request: request.url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:",
                                                                  "blob:")) or outside.append(request.url))
    tab = context.new_page()
    yield tab
    context.close()
    assert outside == []


def cell(tab, text: str, timeout: float = 30_000):
    """A data grid cell by its text: the grid is a canvas, its text lives in a hidden table."""
    return tab.locator('[data-testid="stDataFrame"] td', has_text=text).first.wait_for(state="attached",
                                                                                        timeout=timeout)
