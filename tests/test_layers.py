"""runner/ is usable without the UI: it never imports streamlit."""
from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import ROOT


def test_runner_source_never_imports_streamlit() -> None:
    offenders = []
    for path in (ROOT / "runner").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "streamlit"]
    assert offenders == []


def test_importing_runner_loads_no_streamlit() -> None:
    code = "import sys, runner, runner.worker, runner.cli, runner.up; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
