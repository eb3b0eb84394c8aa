"""Dashboard figures: first paint on an empty store, and History's first page at 10k and 100k jobs.

    .venv/bin/python bench/dashboard.py [--sizes 10000 100000] [--runs 7] [--no-browser]

Starts its own redis-server and `streamlit run dashboard.py` on free ports (no worker needed).

1. First paint: Chromium opens /live on the empty store; time from navigation to the rendered page
   ("No queued or running jobs" visible). The first session after the server starts (cold: the page
   modules, pandas and plotly are imported then) and the median of warm new sessions.
2. History: the store is filled with finished jobs (90 % completed, 8 % failed, 2 % cancelled, 20
   users, submitted over 7 days) by the submit transition (lua/transition.lua) in pipelines of 1,000,
   then the first page of 50 is read: `Client.history()` (the runner call the page makes) for the
   default filter, a cross-index filter (user) and a text search (error), and the whole History page
   script run server-side in AppTest (reads + table building).
"""
from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
import redis  # noqa: E402

from runner import Client, JobStatus, redis_server, transitions  # noqa: E402
from runner.history import HistoryQuery  # noqa: E402
from runner.keys import Keys  # noqa: E402
from runner.models import Job, utcnow  # noqa: E402
from runner.settings import Settings  # noqa: E402
from runner.store import TRANSITION, encode  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
USERS = [f"user{n}@acme.io" for n in range(19)] + ["admin@local"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def start_dashboard(url: str) -> tuple[subprocess.Popen[bytes], str, float]:
    port = free_port()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard.py", "--server.port", str(port),
                             "--server.headless", "true", "--server.address", "127.0.0.1"], cwd=ROOT,
                            env={**os.environ, "REDIS_URL": url}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, preexec_fn=redis_server.die_with_parent)
    base = f"http://127.0.0.1:{port}"
    while True:
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=1):
                return proc, base, time.perf_counter() - start
        except OSError:
            if proc.poll() is not None or time.perf_counter() - start > 60:
                raise RuntimeError("the dashboard did not start")
            time.sleep(0.02)


def first_paint(base: str, runs: int) -> tuple[float, float]:
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        times = []
        for _ in range(runs + 1):
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            start = time.perf_counter()
            page.goto(f"{base}/live", wait_until="commit")
            page.get_by_text("No queued or running jobs").wait_for(timeout=60_000)
            times.append(time.perf_counter() - start)
            context.close()
        browser.close()
    return times[0], statistics.median(times[1:])


def fill(url: str, total: int, have: int) -> float:
    """Finished jobs, written by the same Lua transition as submit, in pipelines of 1,000."""
    settings = Settings()
    keys = Keys(settings.prefix, settings.queue_name)
    client = redis.Redis.from_url(url, decode_responses=True)
    script = client.register_script(TRANSITION)
    now = utcnow()
    start = time.perf_counter()
    rng = random.Random(have)
    for first in range(have, total, 1000):
        with client.pipeline(transaction=False) as pipe:
            for _ in range(first, min(first + 1000, total)):
                queued = now - timedelta(seconds=rng.uniform(60, 7 * 86400))
                roll = rng.random()
                status = JobStatus.completed if roll < 0.9 else JobStatus.failed if roll < 0.98 else JobStatus.cancelled
                job = Job(id=uuid.uuid4().hex, type="DEMO", payload={"duration_s": 1.0, "steps": 3},
                          user_id=rng.choice(USERS), status=status, queued_at=queued, updated_at=queued,
                          started_at=queued + timedelta(seconds=2), completed_at=queued + timedelta(seconds=9),
                          attempts=1, max_attempts=3, progress=100.0 if status is JobStatus.completed else 40.0,
                          last_error=f"DemoFailure: simulated failure {rng.randint(1, 50)}"
                          if status is JobStatus.failed else None,
                          result={"output": "x" * 200} if status is JobStatus.completed else None)
                spec = transitions.create(job, keys, settings.priority_aging_s, by=job.user_id)
                spec.update(status=status.value, calls=[], wake=False, set=encode(job.model_dump(
                    exclude={"attempt_log", "partial", "status"})), retention=30 * 86400, maxlen=1000, queue=keys.queue)
                args = [keys.prefix, repr(queued.timestamp()), orjson.dumps(spec).decode()]
                script(keys=[keys.job(job.id)], args=args, client=pipe)
            pipe.execute()
    client.close()
    return time.perf_counter() - start


def history_page_run(runs: int) -> float:
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60)
    at.run()
    at.switch_page("app_pages/history.py").run()
    assert not at.exception, at.exception
    return median_time(at.run, runs)


def history(url: str, size: int, have: int, runs: int) -> None:
    took = fill(url, size, have)
    print(f"\n{size:,} finished jobs (filled {size - have:,} in {took:.1f} s)")
    with Client() as c:
        c.history(limit=50)
        for name, query in [("default (finished, newest first)", HistoryQuery()),
                            ("user filter (cross-index)", HistoryQuery(user="user3@acme.io")),
                            ("error search (bounded scan)", HistoryQuery(error="failure 7"))]:
            page = c.history(query, limit=50)
            exact = "exact" if page.exact else f"lower bound, {page.scanned:,} entries scanned"
            print(f"  Client.history {name:36} {ms(median_time(lambda: c.history(query, limit=50), runs)):>10}"
                  f"   total {page.total:,} ({exact})")
    print(f"  History page script run (AppTest, server side)        {ms(history_page_run(runs)):>10}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--no-browser", action="store_true")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        port = free_port()
        server = redis_server.start(Path(data), port, persistent=False)
        url = f"redis://127.0.0.1:{port}/0"
        os.environ["REDIS_URL"] = url
        try:
            if not options.no_browser:
                dashboard, base, ready = start_dashboard(url)
                try:
                    cold, warm = first_paint(base, options.runs)
                finally:
                    dashboard.terminate()
                    dashboard.wait(10)
                print("First paint of /live on an empty store (navigation -> rendered page):")
                print(f"  server start -> /_stcore/health  {ms(ready)}")
                print(f"  first session (cold)             {ms(cold)}")
                print(f"  new session, warm (median of {options.runs}) {ms(warm)}")
            have = 0
            for size in sorted(options.sizes):
                history(url, size, have, options.runs)
                have = size
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
