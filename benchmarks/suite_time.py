#!/usr/bin/env python3
"""Wall time of the whole border-control suite, the share spent outside the model, and the prefix-cache gain.

1. The full suite (every example of the five use cases, no robustness) on SmolLM2 with llama.cpp on 2
   threads, with the KV cache of the shared prompt prefix reused. "Inside the model" is the worker's
   generation time of every request (warm-up and timing requests included) plus model loading; everything
   else — starting workers, building prompts, parsing, scoring, writing records and summaries — is
   outside. Target: outside share <= 2%.
2. The prefix cache's speed-up: one use case run with and without reuse, interleaved, same examples;
   reported as the ratio of generation time without reuse to with reuse.

Example:
    .venv/bin/python benchmarks/suite_time.py               # the full suite (about 10-15 minutes here)
    .venv/bin/python benchmarks/suite_time.py --limit 10    # a quicker look
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from slm_eval.devices.profiles import default_evaluation_config_path, load_evaluation_config
from slm_eval.evaluation.benchmark import BenchmarkRequest, plan_benchmark, run_cells
from slm_eval.evaluation.summary import HostPerformanceSource
from slm_eval.results.records import read_json, read_records

TARGET_OUTSIDE_SHARE = 0.02


def run_suite(
    limit: int | None, use_cases: tuple[str, ...] | None, prefix_cache: bool, threads: int, cache_dir: Path
) -> dict[str, float]:
    """Run the suite in a temporary folder; returns wall, model and outside seconds."""
    config = load_evaluation_config(default_evaluation_config_path())
    request = BenchmarkRequest(
        models=("smollm2-135m-instruct",),
        devices=("host",),
        use_cases=use_cases,
        limit=limit,
        seed=0,
        robustness=False,
        threads=threads,
        context_length=2048,
        prefix_cache=prefix_cache,
    )
    _, cells = plan_benchmark(request, config)
    host = HostPerformanceSource(1.0, 1.0)  # the projection is not what is timed here
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        started = time.perf_counter()
        run_cells(root, cells, cache_dir, host=host)
        wall = time.perf_counter() - started
        generation = 0.0
        loading = 0.0
        requests = 0
        for cell in cells:
            run = cell.folder(root)
            records = [r for r in read_records(run / "records.jsonl")]
            generation += sum(float(r["e2e_ms"]) for r in records) / 1000
            requests += len(records)
            loading += float(read_json(run / "summary.json")["model"]["load_time"]["value"] or 0.0)
    model = generation + loading
    return {
        "wall_s": wall,
        "generation_s": generation,
        "load_s": loading,
        "outside_s": wall - model,
        "requests": requests,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="examples per use case (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prefix-use-case", default="document-verification")
    parser.add_argument("--prefix-limit", type=int, default=20)
    parser.add_argument("--cache-dir", type=Path, default=Path("data/cache"))
    args = parser.parse_args()

    suite = run_suite(args.limit, None, True, args.threads, args.cache_dir)
    share = suite["outside_s"] / suite["wall_s"]
    print(f"suite: {json.dumps(suite)}", flush=True)

    with_cache = []
    without_cache = []
    for round_index in range(2):
        order = (True, False) if round_index == 0 else (False, True)
        for reuse in order:
            result = run_suite(args.prefix_limit, (args.prefix_use_case,), reuse, args.threads, args.cache_dir)
            (with_cache if reuse else without_cache).append(result["generation_s"])
    speedup = sum(without_cache) / sum(with_cache)
    print(
        json.dumps(
            {
                "benchmark": "suite_time",
                "model": "smollm2-135m-instruct",
                "threads": args.threads,
                "limit_per_use_case": args.limit,
                "label": "measured",
                "unit": "s",
                "suite_wall_s": round(suite["wall_s"], 2),
                "suite_generation_s": round(suite["generation_s"], 2),
                "suite_load_s": round(suite["load_s"], 2),
                "suite_outside_s": round(suite["outside_s"], 2),
                "suite_requests": suite["requests"],
                "outside_share": round(share, 4),
                "prefix_cache": {
                    "use_case": args.prefix_use_case,
                    "examples": args.prefix_limit,
                    "generation_s_with_reuse": [round(v, 2) for v in with_cache],
                    "generation_s_without_reuse": [round(v, 2) for v in without_cache],
                    "speedup": round(speedup, 3),
                },
                "target": {"outside_share_max": TARGET_OUTSIDE_SHARE},
                "pass": share <= TARGET_OUTSIDE_SHARE,
            }
        )
    )


if __name__ == "__main__":
    main()
