"""Hardening of the dashboard: job text is never executed as HTML in the browser, cross-origin
WebSockets and foreign Host headers are refused, uploads need the XSRF token, and users never see
tracebacks."""
from __future__ import annotations

import socket
import tomllib
import urllib.error
import urllib.request

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from runner import Client, JobStatus
from tests.browser import CHROMIUM
from tests.conftest import ROOT
from tests.polling import wait_until

XSS = ('<script>window.__xss=1</script><img src=x onerror="window.__xss=1;alert(1)">'
       '<svg onload="window.__xss=1"></svg>"><iframe srcdoc="<script>parent.__xss=1</script>"></iframe>')
PAGES = ["/live", "/history", "/metrics", "/workers", "/submit"]


def test_config_is_hardened() -> None:
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    server, client = config["server"], config["client"]
    assert server["address"] == "127.0.0.1"
    assert server["enableXsrfProtection"] is True and server["enableCORS"] is True
    assert server["allowedHosts"] == ["127.0.0.1", "localhost"]
    assert client["showErrorDetails"] == "none"
    assert config["browser"]["gatherUsageStats"] is False


def test_cross_origin_and_rebound_websockets_are_refused(dashboard: str) -> None:
    port = int(dashboard.rsplit(":", 1)[1])
    stream = f"ws://127.0.0.1:{port}/_stcore/stream"
    with connect(stream, origin=dashboard):
        pass
    with pytest.raises(InvalidStatus), connect(stream, origin="http://evil.example"):
        pass
    rebound = socket.create_connection(("127.0.0.1", port))  # DNS rebinding: evil.example resolving here
    with (pytest.raises(InvalidStatus),
          connect(f"ws://evil.example:{port}/_stcore/stream", sock=rebound, origin=f"http://evil.example:{port}")):
        pass


def test_upload_without_xsrf_token_is_refused(dashboard: str) -> None:
    request = urllib.request.Request(f"{dashboard}/_stcore/upload_file/x/y", data=b"--", method="PUT",
                                     headers={"Content-Type": "multipart/form-data; boundary=-"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code in (400, 403)


@pytest.mark.e2e
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium")
def test_script_bearing_job_text_never_executes(page, redis_url: str, start_worker) -> None:  # noqa: F811
    start_worker()
    with Client() as client:
        failed = client.submit("TEST_FAIL_WITH", {"message": XSS}, user=f"x{XSS[:40]}@x.io")
        done = client.submit("DEMO", {"duration_s": 0, "output": XSS})
        wait_until(lambda: client.get(failed.id).status is JobStatus.failed
                   and client.get(done.id).status is JobStatus.completed, 30, "the jobs to finish")
        waiting = client.submit("DEMO", {"duration_s": 1, "output": XSS}, priority="low")
        client.cancel(waiting.id)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    for path in [*PAGES, f"/job?id={failed.id}", f"/job?id={done.id}"]:
        page.goto(path)
        page.locator('[data-testid="stMain"]').first.wait_for(timeout=30_000)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("window.__xss === undefined"), f"job text ran as script on {path}"
    page.goto(f"/job?id={failed.id}")
    page.get_by_text("window.__xss=1", exact=False).first.wait_for(state="attached", timeout=30_000)
    assert page.evaluate("window.__xss === undefined")
    assert page.locator("main img[src='x'], main svg[onload], main iframe[srcdoc]").count() == 0
    assert dialogs == []
