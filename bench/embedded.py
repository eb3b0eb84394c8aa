"""The embedded demo model's endpoint (`python -m runner llm serve`): speed, time to first token and memory,
with 1 slot and with 4 (`--parallel`), in alternating rounds (a fresh endpoint per run).

    .venv/bin/python bench/embedded.py [--rounds 3] [--requests 4] [--tokens 128] [--threads N] [--quick]

Per run, on one endpoint:
  load s         spawn → /health answers 200 (Python start, llama.cpp loading the GGUF)
  RSS idle MB    the endpoint once loaded: its front and llama.cpp's process (model + the slots' KV cache)
  1 req tok/s    one request alone, unconstrained, exactly --tokens tokens (ignore_eos): completion tokens /
                 (last chunk − first content chunk), the decode speed one job sees
  1 req TTFT ms  that request: sent → first content chunk (prompt of ~100 tokens)
  json tok/s     one request alone held to a task's JSON schema (GENERATE_VIRAL_IDEAS' angles, as the LLM
                 client sends it, bounded by the front): constrained sampling costs extra
  N req tok/s    --requests concurrent requests (as above, unconstrained): all completion tokens / wall time;
                 with 1 slot they queue, with 4 they are computed together
  N TTFT p50/max the same requests' time to first token: queued ones wait for a slot
  RSS peak MB    the endpoint's peak resident memory over the run (VmHWM of both processes, summed)
Every figure depends on what else runs on the machine: read the same-round rows side by side.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _harness import ROOT, footer, free_port, header, spread  # noqa: E402

from runner.llm import embedded, structured  # noqa: E402
from runner.tasks.ideas import Angles  # noqa: E402

PROMPT = [{"role": "system", "content": "You are a creator-economy strategist who knows what spreads on each "
                                        "platform. Write every text field in English."},
          {"role": "user", "content": 'Brief (JSON):\n{"niche": "coffee", "platform": "TikTok", "count": 3}\n\n'
                                      "Task: Find 4-8 angles that make content in this niche spread on TikTok, "
                                      "and why each works."}]
METRICS = [("load_s", "load s"), ("rss_idle_mb", "RSS idle MB"), ("single_tps", "1 req tok/s"),
           ("single_ttft_ms", "1 req TTFT ms"), ("json_tps", "json tok/s"), ("many_tps", "N req tok/s"),
           ("many_ttft_p50_ms", "N TTFT p50 ms"), ("many_ttft_max_ms", "N TTFT max ms"), ("rss_peak_mb", "RSS peak MB")]


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """`field` of the endpoint: its front and llama.cpp's process under it, summed (VmHWM: each one's peak)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return sum(status_kb(int(p), field) for p in [pid, *children]) / 1024


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def start(parallel: int, threads: int, log: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    port = free_port()
    started = time.monotonic()
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "runner", "llm", "serve", "--port", str(port), "--parallel",
                                 str(parallel), "--threads", str(threads)], cwd=ROOT, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url, time.monotonic() - started
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"the endpoint exited with {proc.returncode}; see {log}")
        time.sleep(0.05)
    raise SystemExit(f"the endpoint did not load within 120 s; see {log}")


async def one(http: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, float]:
    """One streamed completion: seconds to the first content chunk and to the end, completion tokens."""
    sent = time.monotonic()
    first = end = 0.0
    tokens = 0
    async with http.stream("POST", "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = orjson.loads(line[6:])
            if not first and any((c.get("delta") or {}).get("content") for c in chunk.get("choices", [])):
                first = time.monotonic()
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    end = time.monotonic()
    return {"ttft": first - sent, "decode": end - first, "wall": end - sent, "tokens": tokens}


def request(tokens: int, schema: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"model": embedded.MODEL, "messages": PROMPT, "stream": True, "max_tokens": tokens,
                            "stream_options": {"include_usage": True}}
    if schema:
        body["response_format"] = structured.response_format("json_schema", Angles)
    else:
        body["ignore_eos"] = True  # llama.cpp: exactly `tokens` tokens, so runs compare
    return body


async def measure(url: str, requests: int, tokens: int) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        await one(http, request(8))  # warm-up
        single = await one(http, request(tokens))
        constrained = await one(http, request(4 * tokens, schema=True))
        started = time.monotonic()
        many = await asyncio.gather(*(one(http, request(tokens)) for _ in range(requests)))
        wall = time.monotonic() - started
    ttfts = [m["ttft"] * 1000 for m in many]
    return {"single_tps": single["tokens"] / single["decode"], "single_ttft_ms": single["ttft"] * 1000,
            "json_tps": constrained["tokens"] / max(constrained["decode"], 1e-9),
            "many_tps": sum(m["tokens"] for m in many) / wall, "many_ttft_p50_ms": statistics.median(ttfts),
            "many_ttft_max_ms": max(ttfts)}


def run_one(parallel: int, args: argparse.Namespace, log: Path) -> dict[str, float]:
    proc, url, load_s = start(parallel, args.threads, log)
    try:
        idle = rss_mb(proc.pid)
        row = asyncio.run(measure(url, args.requests, args.tokens))
        return {"load_s": load_s, "rss_idle_mb": idle, **row, "rss_peak_mb": rss_mb(proc.pid, "VmHWM")}
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=4, help="concurrent requests in the N-request phase")
    parser.add_argument("--tokens", type=int, default=128, help="completion tokens per unconstrained request")
    parser.add_argument("--threads", type=int, default=embedded.EmbeddedOptions().threads)
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 4], help="--parallel values to compare")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, 32 tokens")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.tokens = 1, 32
    if reason := embedded.not_installed(embedded.EmbeddedOptions(url=None)):
        raise SystemExit(reason)
    header("embedded demo model endpoint", model=embedded.MODEL, threads=args.threads, requests=args.requests,
           tokens=args.tokens, rounds=args.rounds, context=embedded.EmbeddedOptions().context)
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "taskdeck-bench-embedded.log"
    results: dict[str, list[dict[str, float]]] = {f"{n} slot(s)": [] for n in args.slots}
    for i in range(args.rounds):
        for n in args.slots:
            t = time.monotonic()
            row = run_one(n, args, log)
            results[f"{n} slot(s)"].append(row)
            shown = ", ".join(f"{k}={v:.3g}" for k, v in row.items())
            print(f"  round {i + 1} {n} slot(s): {shown}   [{time.monotonic() - t:.0f} s]", flush=True)
    print()
    width = max(len(name) for name in results) + 2
    print(f"{'endpoint':{width}s}" + "".join(f" | {label}" for _, label in METRICS))
    for name, rows in results.items():
        cells = [f"{spread([row[key] for row in rows]):>{len(label)}s}" for key, label in METRICS]
        print(f"{name:{width}s}" + "".join(f" | {c}" for c in cells))
    footer()


if __name__ == "__main__":
    main()
