"""Throughput and latency of the python backend on CPU, with and without Triton dynamic batching.

Run: ``python bench/serve_cpu.py`` (under a minute on 2 cores). It builds a tiny Llama (nothing is
downloaded), writes two python-backend repositories that differ only in ``engine.dynamicBatching``,
serves each with the real tritonserver on loopback, and sends a bounded number of HTTP generate
requests at concurrency 1 and 8. torch runs on one thread by default, so that other load on a small
shared machine does not stall its OpenMP threads (``--num-threads 0``: all the CPUs it may use).
Results go to stdout as a Markdown table (and JSON with --json); record them in docs/benchmarks.md
under "Serving on CPU".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubetune.api import v1alpha1
from kubetune_trainer.serve import client, repository, server
from kubetune_trainer.tiny import build_tiny_model

PROMPTS = [
    "Where is my order?",
    "I want a refund for the broken item.",
    "我的订单到哪里了？",
    "Can I change my delivery address?",
]


def _percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _one(url: str, index: int, max_tokens: int) -> float:
    """Send one request; return its latency in seconds."""
    start = time.perf_counter()
    answer = client.generate(url, "llm", PROMPTS[index % len(PROMPTS)], max_tokens, timeout=120)
    elapsed = time.perf_counter() - start
    if not isinstance(answer, str):
        raise RuntimeError("no answer")
    return elapsed


def measure(url: str, concurrency: int, requests: int, max_tokens: int) -> dict[str, float]:
    """Run ``requests`` requests with ``concurrency`` in flight; return req/s and latency percentiles."""
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(lambda i: _one(url, i, max_tokens), range(concurrency * 2)))  # warm-up
        start = time.perf_counter()
        latencies = list(pool.map(lambda i: _one(url, i, max_tokens), range(requests)))
        wall = time.perf_counter() - start
    return {
        "requests": requests,
        "req_per_s": requests / wall,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * _percentile(latencies, 0.99),
    }


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    python = platform.python_version()
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": python, "triton": "2.51 (nvidia-pytriton)"}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build, serve and measure both batching settings."""
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kubetune-bench-") as tmp:
        model = build_tiny_model(Path(tmp) / "model", hidden_size=args.hidden_size, num_layers=args.layers)
        for dynamic in (False, True):
            spec = v1alpha1.ServingSpec.model_validate(
                {
                    "backend": "python",
                    "engine": {"maxBatchSize": 8, "dynamicBatching": dynamic, "maxOutputLen": args.max_tokens},
                }
            )
            repo = repository.build_repository(
                model, Path(tmp) / f"repo-{dynamic}", spec, weights="reference", num_threads=args.num_threads
            )
            with server.start_server(repo, log_path=Path(tmp) / f"triton-{dynamic}.log") as running:
                for concurrency in args.concurrency:
                    row = measure(running.http_url, concurrency, args.requests, args.max_tokens)
                    row.update(dynamic_batching=dynamic, concurrency=concurrency)
                    results.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
    return {
        "machine": machine(),
        "model": {"hidden_size": args.hidden_size, "layers": args.layers, "max_tokens": args.max_tokens},
        "num_threads": args.num_threads,
        "results": results,
    }


def markdown(report: dict[str, Any]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| dynamic batching | concurrency | requests | req/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["results"]:
        lines.append(
            f"| {'on' if row['dynamic_batching'] else 'off'} | {row['concurrency']} | {row['requests']} | "
            f"{row['req_per_s']:.1f} | {row['p50_ms']:.0f} | {row['p99_ms']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8], help="requests in flight")
    parser.add_argument("--max-tokens", type=int, default=16, help="tokens generated per request")
    parser.add_argument("--hidden-size", type=int, default=64, help="tiny model width")
    parser.add_argument("--layers", type=int, default=2, help="tiny model decoder layers")
    parser.add_argument(
        "--num-threads", type=int, default=1, help="torch threads in the model (0: all the CPUs it may use)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON too")
    args = parser.parse_args()
    report = run(args)
    print(json.dumps(report["machine"]))
    print(markdown(report))
    if args.json:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
