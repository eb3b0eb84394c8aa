"""pytest plugin for compat/arq_suite.py: each test's outcome, by node id, as JSON in $ARQ_COMPAT_OUTCOMES.

A test counts as failed if any of its phases (setup, call, teardown) failed, as passed if its call
passed and nothing failed, and as skipped otherwise. The file is rewritten after each test, so that a
run stopped for hanging still tells what ran.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

outcomes: dict[str, str] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed:
        outcomes[report.nodeid] = "failed"
    elif report.skipped:
        outcomes.setdefault(report.nodeid, "skipped")
    elif report.when == "call":
        outcomes.setdefault(report.nodeid, "passed")
    if report.when == "teardown":
        Path(os.environ["ARQ_COMPAT_OUTCOMES"]).write_text(json.dumps(outcomes, indent=1))
