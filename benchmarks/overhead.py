#!/usr/bin/env python3
"""Generation speed through slm-eval's llamacpp backend against a raw llama-cpp-python loop.

Both load the same GGUF with the same threads and context, answer the same chat-formatted prompt with
128 greedy tokens (end-of-sequence ignored so every run has 128), and run interleaved in one process,
alternating which goes first. The raw loop is what a user would write by hand: ``Llama.generate``
plus ``detokenize`` per token. The figure is decode tokens/s (first to last output token).

The ratio held to the target is the median of the per-round ratios (each round's pair runs back to back, so
drift in the machine's speed cancels); the ratio of the two medians is printed beside it.

Target: tokens/s ratio (slm-eval / raw) >= 0.97.

Example:
    .venv/bin/python benchmarks/overhead.py --rounds 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from raw_llama import open_raw, raw_decode_rate
from slm_eval.backends.base import GenerationRequest, LoadOptions
from slm_eval.backends.catalogue import BACKENDS, load_backend
from slm_eval.backends.llamacpp import LlamaCppBackend
from slm_eval.devices.cpus import usable_cpu_count
from slm_eval.models.catalogue import default_registry

TARGET_RATIO = 0.97
PROMPT = "Write a detailed report on how officers at a land border check a traveller's passport and visa."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved pairs of runs")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=usable_cpu_count())
    parser.add_argument("--context-length", type=int, default=1024)
    parser.add_argument("--cache-dir", type=Path, default=Path("data/cache"))
    args = parser.parse_args()

    card = default_registry().resolve(args.model)
    options = LoadOptions(threads=args.threads, context_length=args.context_length)
    backend = load_backend(BACKENDS["llamacpp"], card, options, args.cache_dir)
    assert isinstance(backend, LlamaCppBackend)
    path = card.source.locate(args.cache_dir)
    raw = open_raw(path, args.threads, args.context_length)
    request = GenerationRequest(prompt=PROMPT, max_new_tokens=args.tokens, ignore_eos=True)
    prompt_tokens = backend.tokenize(backend.format_prompt(request))

    def harness_rate() -> float:
        (generation,) = backend.generate([request])
        assert generation.output_tokens == args.tokens, generation.output_tokens
        rate = generation.decode_tokens_per_s
        assert rate is not None
        return rate

    raw_decode_rate(raw, prompt_tokens, args.tokens)  # warm-up, not counted
    harness_rate()
    raw_rates: list[float] = []
    harness_rates: list[float] = []
    for round_index in range(args.rounds):
        if round_index % 2 == 0:
            raw_rates.append(raw_decode_rate(raw, prompt_tokens, args.tokens))
            harness_rates.append(harness_rate())
        else:
            harness_rates.append(harness_rate())
            raw_rates.append(raw_decode_rate(raw, prompt_tokens, args.tokens))
        print(
            f"round {round_index + 1}: raw {raw_rates[-1]:.1f} tok/s, slm-eval {harness_rates[-1]:.1f} tok/s",
            file=sys.stderr,
        )
    backend.close()
    raw.close()

    raw_median = statistics.median(raw_rates)
    harness_median = statistics.median(harness_rates)
    ratio = statistics.median(h / r for h, r in zip(harness_rates, raw_rates, strict=True))
    print(
        json.dumps(
            {
                "benchmark": "overhead",
                "model": card.name,
                "threads": args.threads,
                "prompt_tokens": len(prompt_tokens),
                "new_tokens": args.tokens,
                "rounds": args.rounds,
                "label": "measured",
                "unit": "tokens/s",
                "raw_llama_cpp": {"median": round(raw_median, 2), "runs": [round(r, 2) for r in raw_rates]},
                "slm_eval": {"median": round(harness_median, 2), "runs": [round(r, 2) for r in harness_rates]},
                "ratio": round(ratio, 4),
                "ratio_of_medians": round(harness_median / raw_median, 4),
                "target": {"ratio_min": TARGET_RATIO},
                "pass": ratio >= TARGET_RATIO,
            }
        )
    )


if __name__ == "__main__":
    main()
