"""Run every benchmark in turn and repeat their verdict lines at the end.

    .venv/bin/python bench/all.py [--quick] [--out results.jsonl] [--skip NAME ...]

Each benchmark starts its own private redis-server and workers; see bench/README.md.
Default scale takes roughly 15-20 minutes on a 2-core machine; --quick about 2-3 minutes.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ["pickup", "throughput", "io", "submit", "progress", "memory", "hotspots"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, help="JSON lines of every round (benchmarks that support --out)")
    parser.add_argument("--skip", nargs="*", default=[], choices=BENCHES)
    args = parser.parse_args()
    verdicts: list[str] = []
    for name in BENCHES:
        if name in args.skip:
            continue
        cmd = [sys.executable, str(HERE / f"{name}.py")] + (["--quick"] if args.quick else [])
        if args.out and name not in ("submit", "hotspots"):
            cmd += ["--out", str(args.out)]
        print(f"\n$ {' '.join(cmd)}", flush=True)
        t = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=HERE.parent)
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            if "target" in line:
                verdicts.append(f"{name:10s} {line.strip()}")
        code = proc.wait()
        print(f"[{name}: exit {code}, {time.monotonic() - t:.0f} s]")
        if code:
            verdicts.append(f"{name:10s} EXITED WITH {code}")
    print("\n== verdicts ==")
    for line in verdicts:
        print(line)


if __name__ == "__main__":
    main()
