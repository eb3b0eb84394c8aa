"""runner/ is usable without the UI: it never imports streamlit."""
from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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
    code = "import sys, runner, runner.worker, runner.ops.cli, runner.ops.up; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# runner/'s parts from the top down; a module may import from its own part and the parts below it only.
LAYERS = [
    {"__main__", "ops"},
    {"api"},
    {"tasks"},
    {"worker"},
    {"client"},
    {"notify"},
    {"archive"},
    {"policy"},
    {"reads"},
    {"web"},
    {"llm"},
    {"storage"},
    {"registry"},
    {"context"},
    {"queues"},
    {"process", "models", "errors", "settings"},
]


def part(module: str) -> str:
    """`runner.storage.store` -> `storage`; the package's own __init__ is the public face, above everything."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported(path: Path) -> Iterator[str]:
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = module.split(".")[: len(module.split(".")) - node.level + (path.name == "__init__.py")]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        if target.startswith("runner"):
            yield from ([target] if node.module else [f"{target}.{a.name}" for a in node.names])


def rank(name: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if name in layer)


def test_every_part_has_a_layer() -> None:
    parts = {part(".".join(p.relative_to(ROOT).with_suffix("").parts)) for p in (ROOT / "runner").rglob("*.py")}
    assert parts - {"__init__"} <= set().union(*LAYERS)


def test_imports_only_point_down() -> None:
    upward = []
    for path in (ROOT / "runner").rglob("*.py"):
        source = part(".".join(path.relative_to(ROOT).with_suffix("").parts))
        if source == "__init__":
            continue
        upward += [f"{path.relative_to(ROOT)} -> {target}" for target in imported(path)
                   if part(target) != "__init__" and rank(part(target)) < rank(source)]
    assert upward == []


def test_runner_face_imports_nothing_it_does_not_export() -> None:
    import runner

    assert {name for name in runner.__all__ if not hasattr(runner, name)} == set()
