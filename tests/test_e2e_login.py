"""Sign-in for real: `streamlit run dashboard.py` with an [auth] section pointing at oidc-provider-mock (a real
OIDC provider on loopback, started here), driven in headless Chromium through st.login. An email on the
allow-list lands with its role in the sidebar and its menu; after logging out, an unknown email is refused.

One host string, 127.0.0.1, everywhere: the OAuth state cookie is scoped to the host the browser used.
The secrets file lives in a temp dir (`--secrets.files`), so the repo's .streamlit/ stays as it is."""
from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner import Client
from tests.conftest import free_port
from tests.servers import dashboard_server

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HOST = "127.0.0.1"
with contextlib.suppress(ImportError):  # Authlib's own "always" filter for its deprecations, set before pytest's
    import authlib.deprecate  # noqa: F401  # per-test filters, so that the mark below can silence them

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]  # Authlib's, inside the mock


@pytest.fixture
def provider() -> Iterator[str]:
    """oidc-provider-mock in this process: any client id is accepted, any email signs in."""
    pytest.importorskip("authlib")
    oidc_provider_mock = pytest.importorskip("oidc_provider_mock")
    from werkzeug.serving import make_server

    server = make_server(HOST, free_port(), oidc_provider_mock.app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{HOST}:{server.server_port}"
    server.shutdown()
    thread.join(5)


@pytest.fixture
def dashboard(redis_url: str, provider: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    url = f"http://{HOST}:{port}"
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(f"""
[auth]
redirect_uri = "{url}/oauth2callback"
cookie_secret = "taskdeck-e2e-cookie-secret-0123456789"

[auth.mock]
client_id = "taskdeck"
client_secret = "taskdeck-secret"
server_metadata_url = "{provider}/.well-known/openid-configuration"
""")
    env = {"REDIS_URL": redis_url, "TASKDECK_ROLES": json.dumps({"alice@example.com": "staff"})}
    with dashboard_server(tmp_path / "streamlit.log", env, "--secrets.files", str(secrets), port=port):
        yield url


def test_sign_in_maps_the_email_to_a_role_and_refuses_unknown_ones(dashboard: str, redis_url: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with Client() as admin:
        own = admin.submit("DEMO", {"duration_s": 30}, user="alice@example.com")
        admin.submit("DEMO", {"duration_s": 30}, user="bob@example.com")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
            (f"http://{HOST}", f"ws://{HOST}", "data:", "blob:")) else route.abort())  # the mock's CDN css
        page = context.new_page()
        try:
            def sign_in(email: str) -> None:
                page.goto(f"{dashboard}/")
                page.get_by_role("button", name="Sign in").click()
                page.get_by_placeholder("sub").fill(email)
                page.get_by_role("button", name="Authorize").click()

            sign_in("alice@example.com")
            sidebar = page.locator('[data-testid="stSidebar"]')
            expect(sidebar.get_by_text("Signed in as alice@example.com")).to_be_visible(timeout=20_000)
            expect(sidebar.get_by_text("Role: staff")).to_be_visible()
            nav = page.locator('[data-testid="stSidebarNav"]')
            expect(nav.get_by_text("Live")).to_be_visible()
            assert "Settings" not in nav.inner_text() and "Metrics" not in nav.inner_text()
            grid = page.locator('[data-testid="stDataFrame"] td', has_text=own.id[:8])
            grid.first.wait_for(state="attached", timeout=20_000)
            cells = page.locator('[data-testid="stDataFrame"] td').all_inner_texts()
            assert sum(own.id[:8] in c for c in cells) == 1 and not any("bob@example.com" in c for c in cells)

            page.goto(f"{dashboard}/settings")
            expect(page.get_by_text("Settings are for admins only; your role is staff")).to_be_visible(
                timeout=20_000)

            sidebar.get_by_role("button", name="Log out").click()
            page.get_by_role("button", name="End session").click()
            expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=20_000)

            sign_in("mallory@evil.example")
            expect(page.get_by_role("heading", name="Access denied")).to_be_visible(timeout=20_000)
            expect(page.get_by_text("mallory@evil.example is not on the allow-list")).to_be_visible()
            expect(page.get_by_role("button", name="Log out")).to_be_visible()
            assert page.locator('[data-testid="stSidebarNav"]').count() == 0
            assert page.locator('[data-testid="stDataFrame"]').count() == 0
        finally:
            context.close()
            browser.close()
