#!/usr/bin/env python3
"""Does the harness measure what an independent tool measures? Speed against a raw loop, memory against time -v.

1. Decode tokens/s: the sandboxed worker running the llamacpp backend (what ``evaluate`` uses) against a
   raw llama-cpp-python loop in this process, same GGUF, prompt and threads, 128 greedy tokens, rounds
   interleaved. The ratio held to the target is the median of the per-round ratios (each round's pair runs
   back to back, so drift in the machine's speed cancels); the ratio of the two medians is printed too.
   Target: within 3% (0.97 .. 1.03).
2. Peak memory: the worker's reported peak resident size (the kernel's ``ru_maxrss`` from ``wait4``, and
   the parent's psutil samples) against ``/usr/bin/time -v``'s "Maximum resident set size" for the same
   job run under it. Target: within 5%.

Example:
    .venv/bin/python benchmarks/timing_accuracy.py --rounds 6
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from raw_llama import open_raw, raw_decode_rate
from slm_eval.devices.cpus import usable_cpu_count, usable_cpus
from slm_eval.devices.sandbox import WorkerProcess, limits_for
from slm_eval.models.catalogue import default_registry

SPEED_TOLERANCE = 0.03
MEMORY_TOLERANCE = 0.05
PROMPT = "Describe, step by step, how a border officer checks the machine-readable zone of a passport."


def worker_job(model: str, threads: int, tokens: int, requests: int, cache_dir: Path) -> dict[str, Any]:
    """A job with one untimed warm-up and ``requests`` timed requests of ``tokens`` greedy tokens."""
    return {
        "model": model,
        "backend": "llamacpp",
        "cache_dir": str(cache_dir),
        "load": {"threads": threads, "context_length": 1024},
        "requests": [
            {"key": f"r{index}", "prompt": PROMPT, "max_new_tokens": tokens, "ignore_eos": True}
            for index in range(requests + 1)
        ],
    }


def time_v_peak_kib(job: dict[str, Any]) -> int:
    """``/usr/bin/time -v``'s maximum resident set size of the worker running ``job``, in KiB."""
    completed = subprocess.run(
        ["/usr/bin/time", "-v", sys.executable, "-m", "slm_eval.devices.worker"],
        input=json.dumps({**job, "limits": {}}),
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", completed.stderr)
    if match is None:
        raise SystemExit("/usr/bin/time -v printed no maximum resident set size")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=usable_cpu_count())
    parser.add_argument("--cache-dir", type=Path, default=Path("data/cache"))
    args = parser.parse_args()
    if not Path("/usr/bin/time").exists():
        raise SystemExit("this benchmark needs GNU time at /usr/bin/time (Debian: apt-get install time)")

    card = default_registry().resolve(args.model)
    path = card.source.locate(args.cache_dir)
    cpus = usable_cpus()
    worker = WorkerProcess(limits_for(None, None, cpus), use_cgroup=False)
    job = worker_job(card.name, args.threads, args.tokens, 1, args.cache_dir)

    raw = open_raw(path, args.threads, 1024)
    # The same chat-formatted prompt the backend builds.
    from slm_eval.backends.base import GenerationRequest, LoadOptions
    from slm_eval.backends.llamacpp import load

    formatter = load(card, path, LoadOptions(threads=1, context_length=1024))
    prompt_tokens = formatter.tokenize(formatter.format_prompt(GenerationRequest(prompt=PROMPT)))
    formatter.close()

    raw_decode_rate(raw, prompt_tokens, args.tokens)  # warm-up
    raw_rates: list[float] = []
    harness_rates: list[float] = []
    for round_index in range(args.rounds):
        results: list[dict[str, Any]] = []
        keep = results.append
        raw_first = round_index % 2 == 0
        if raw_first:
            raw_rates.append(raw_decode_rate(raw, prompt_tokens, args.tokens))
        worker.run(job, lambda event, keep=keep: keep(event) if event["event"] == "result" else None)
        harness_rates.append(float(results[-1]["decode_tps"]))
        if not raw_first:
            raw_rates.append(raw_decode_rate(raw, prompt_tokens, args.tokens))
        print(
            f"round {round_index + 1}: raw {raw_rates[-1]:.1f}, harness {harness_rates[-1]:.1f} tok/s", file=sys.stderr
        )
    raw.close()

    memory_job = worker_job(card.name, args.threads, args.tokens, 3, args.cache_dir)
    outcome = worker.run(memory_job, lambda event: None)
    reference_bytes = time_v_peak_kib(memory_job) * 1024
    reported = outcome.peak_rss_bytes or 0
    sampled = outcome.sampled_peak_rss_bytes or 0

    speed_ratio = statistics.median(h / r for h, r in zip(harness_rates, raw_rates, strict=True))
    memory_ratio = reported / reference_bytes
    print(
        json.dumps(
            {
                "benchmark": "timing_accuracy",
                "model": card.name,
                "threads": args.threads,
                "label": "measured",
                "decode_tokens_per_s": {
                    "raw_median": round(statistics.median(raw_rates), 2),
                    "harness_median": round(statistics.median(harness_rates), 2),
                    "raw_runs": [round(r, 2) for r in raw_rates],
                    "harness_runs": [round(r, 2) for r in harness_rates],
                    "ratio": round(speed_ratio, 4),
                    "ratio_of_medians": round(statistics.median(harness_rates) / statistics.median(raw_rates), 4),
                },
                "peak_memory_mib": {
                    "time_v": round(reference_bytes / 2**20, 1),
                    "worker_kernel": round(reported / 2**20, 1),
                    "worker_sampled": round(sampled / 2**20, 1),
                    "ratio": round(memory_ratio, 4),
                    "sampled_ratio": round(sampled / reference_bytes, 4),
                },
                "target": {"speed_ratio_within": SPEED_TOLERANCE, "memory_ratio_within": MEMORY_TOLERANCE},
                "pass": abs(speed_ratio - 1) <= SPEED_TOLERANCE and abs(memory_ratio - 1) <= MEMORY_TOLERANCE,
            }
        )
    )


if __name__ == "__main__":
    main()
