#!/usr/bin/env python3
"""Quantized variants against their fp32 original: size, peak memory, speed, accuracy, time to quantize.

SmolLM2-135M-Instruct: PyTorch fp32 (dequantized from its GGUF: the reference), then ONNX int8 and int4
(onnxruntime-genai's builder), GGUF Q8_0 and Q4_K_M (llama.cpp's quantizer, requantizing the bundled Q4_1
file), and the bundled Q4_1 GGUF itself. all-MiniLM-L6-v2: PyTorch fp32 and ONNX dynamic int8.

Every variant is made through slm-eval's own ``quantize`` path into a scratch model store, then each model
answers the same border-qa examples (same seed) in the evaluation worker, one after another, on the same
threads: generated answers for SmolLM2, the extractive-QA head for MiniLM (its head is untrained and
seeded, so its F1 is low, but the same for every variant: the ratio says what quantization changed).
Sizes are bytes on disk (fp32 SmolLM2: its dequantized safetensors). The int8 encoder's sentence
embeddings (mean-pooled last hidden state) are compared with fp32's by cosine on fixed sentences.

Targets: 4-bit size <= 0.3x fp32 (SmolLM2 ONNX int4, GGUF Q4_K_M); the int8 encoder <= 0.3x fp32; the int8
encoder's embeddings keep cosine >= 0.99 to fp32.

Example:
    .venv/bin/python benchmarks/quantize.py --limit 20
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from slm_eval.devices.profiles import default_evaluation_config_path, load_evaluation_config
from slm_eval.evaluation.evaluate import EvaluateRequest, execute, plan_run
from slm_eval.models.catalogue import default_registry
from slm_eval.models.store import ModelStore
from slm_eval.optimize.convert import ConvertRequest, convert
from slm_eval.optimize.quantize import QuantizeRequest, plan_quantize, quantize
from slm_eval.results.records import RunPaths

SIZE_TARGET_4BIT = 0.3
SIZE_TARGET_ENCODER_INT8 = 0.3
COSINE_TARGET = 0.99
MIB = 1024 * 1024
SMOLLM2 = "smollm2-135m-instruct"
MINILM = "all-minilm-l6-v2"
DECODER_VARIANTS = (
    QuantizeRequest(SMOLLM2, bits=8, format="onnx"),
    QuantizeRequest(SMOLLM2, bits=4, format="onnx"),
    QuantizeRequest(SMOLLM2, bits=8, format="gguf", allow_requantize=True),
    QuantizeRequest(SMOLLM2, bits=4, format="gguf", allow_requantize=True),
)
ENCODER_VARIANTS = (QuantizeRequest(MINILM, bits=8, format="onnx", method="onnx-dynamic-int8"),)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _make(request: QuantizeRequest, store: ModelStore, cache: Path) -> dict[str, Any]:
    card = default_registry().resolve(request.model)
    plan = plan_quantize(request, card, cache)
    _log(f"quantizing {card.name} -> {plan.variant} ({plan.method.name})")
    variant = quantize(plan, store, cache, suitability={}).variant
    return {
        "reference": variant.reference,
        "method": variant.manifest["method"],
        "quant_type": variant.manifest.get("quant_type"),
        "bytes": variant.size_bytes,
        "quantize_s": variant.manifest["quantize_time"]["value"],
        "path": variant.path,
    }


def _evaluate(
    model: str, backend: str | None, work: Path, store: Path, cache: Path, limit: int, seed: int
) -> dict[str, Any]:
    config = load_evaluation_config(default_evaluation_config_path())
    request = EvaluateRequest(
        model=model,
        device="host",
        metrics=("accuracy", "latency", "memory"),
        dataset="border-qa",
        limit=limit,
        seed=seed,
        max_new_tokens=64,
        threads=None,
        context_length=2048 if "minilm" not in model else 512,
        backend=backend,
        models_dir=store,
    )
    settings, card = plan_run(request, config)
    folder = work / "runs" / f"{model.replace('@', '-')}-{backend or 'default'}"
    folder.mkdir(parents=True, exist_ok=True)
    _log(f"evaluating {model} on {backend or 'its default backend'}")
    summary = execute(settings, card, RunPaths(folder), cache, measure_host=False, write_report=False).summary
    metrics = summary["metrics"]
    return {
        "f1": metrics["accuracy"]["f1"]["mean"],
        "decode_tokens_per_s": (metrics["latency"].get("decode_tokens_per_s") or {}).get("p50"),
        "latency_p50_ms": (metrics["latency"].get("end_to_end") or {}).get("p50"),
        "peak_memory_mib": metrics["memory"]["peak_rss_kernel"]["value"],
    }


def _row(
    name: str,
    size: int,
    size_label: str,
    figures: dict[str, Any],
    reference: dict[str, Any],
    fp32_bytes: int,
    quantize_s: float | None,
) -> dict[str, Any]:
    relative = figures["f1"] / reference["f1"] if reference["f1"] else None
    return {
        "variant": name,
        "size": {"value": size / MIB, "unit": "MiB", "label": size_label},
        "size_ratio_to_fp32": {"value": size / fp32_bytes, "unit": "ratio", "label": "measured"},
        "peak_memory": {"value": figures["peak_memory_mib"], "unit": "MiB", "label": "measured"},
        "decode_tokens_per_s": {"value": figures["decode_tokens_per_s"], "unit": "tokens/s", "label": "measured"},
        "latency_p50": {"value": figures["latency_p50_ms"], "unit": "ms", "label": "measured"},
        "f1": {"value": figures["f1"], "unit": "score (0-1)", "label": "measured"},
        "accuracy_relative_to_fp32": {"value": relative, "unit": "ratio", "label": "measured"},
        "time_to_quantize": {"value": quantize_s, "unit": "s", "label": "measured"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=20, help="border-qa examples per model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=None, help="scratch store and runs (default: a temp dir)")
    parser.add_argument("--cache-dir", type=Path, default=Path("data/cache"))
    args = parser.parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="slm-eval-quantize-"))
    store_dir = work / "models"
    store = ModelStore(store_dir)
    cache: Path = args.cache_dir

    from slm_eval.optimize.embedding_check import embedding_cosine
    from slm_eval.optimize.onnx_decoder_export import dequantize_gguf

    registry = default_registry()
    gguf = registry.resolve(SMOLLM2).source.locate(cache)
    started = time.perf_counter()
    fp32_folder = work / "smollm2-fp32"
    dequantize_gguf(gguf, fp32_folder)
    fp32_bytes = sum(p.stat().st_size for p in fp32_folder.glob("*.safetensors"))
    _log(f"SmolLM2 fp32 from its GGUF: {fp32_bytes / MIB:.1f} MiB in {time.perf_counter() - started:.1f} s")
    made = [_make(request, store, cache) for request in DECODER_VARIANTS]

    reference = _evaluate(SMOLLM2, "transformers", work, store_dir, cache, args.limit, args.seed)
    decoders = [_row("pytorch-fp32", fp32_bytes, "measured", reference, reference, fp32_bytes, None)]
    source = _evaluate(SMOLLM2, "llamacpp", work, store_dir, cache, args.limit, args.seed)
    decoders.append(_row("gguf-q4_1 (bundled)", gguf.stat().st_size, "measured", source, reference, fp32_bytes, None))
    for item in made:
        figures = _evaluate(item["reference"], None, work, store_dir, cache, args.limit, args.seed)
        decoders.append(
            _row(
                item["reference"].split("@")[1],
                item["bytes"],
                "measured",
                figures,
                reference,
                fp32_bytes,
                item["quantize_s"],
            )
        )

    minilm = registry.resolve(MINILM).source.locate(cache)
    encoder_fp32_bytes = sum(p.stat().st_size for p in minilm.glob("*.safetensors"))
    encoder_reference = _evaluate(MINILM, "transformers", work, store_dir, cache, args.limit, args.seed)
    encoders = [
        _row(
            "pytorch-fp32",
            encoder_fp32_bytes,
            "measured",
            encoder_reference,
            encoder_reference,
            encoder_fp32_bytes,
            None,
        )
    ]
    fp32_onnx = convert(ConvertRequest(MINILM, task="qa"), registry.resolve(MINILM), store, cache).variant
    encoder_made = [_make(request, store, cache) for request in ENCODER_VARIANTS]
    cosine = embedding_cosine(fp32_onnx.path, encoder_made[0]["path"])
    for item in encoder_made:
        figures = _evaluate(item["reference"], None, work, store_dir, cache, args.limit, args.seed)
        encoders.append(
            _row(
                item["reference"].split("@")[1],
                item["bytes"],
                "measured",
                figures,
                encoder_reference,
                encoder_fp32_bytes,
                item["quantize_s"],
            )
        )

    by_name = {row["variant"]: row for row in decoders}
    four_bit = {name: by_name[name]["size_ratio_to_fp32"]["value"] for name in ("onnx-int4", "gguf-q4_k_m")}
    encoder_ratio = encoders[1]["size_ratio_to_fp32"]["value"]
    print(
        json.dumps(
            {
                "benchmark": "quantize",
                "examples": args.limit,
                "dataset": "border-qa",
                "decoders": decoders,
                "encoders": encoders,
                "int8_encoder_embedding_cosine": {"value": cosine, "unit": "cosine", "label": "measured"},
                "four_bit_size_ratio_to_fp32": four_bit,
                "encoder_int8_size_ratio_to_fp32": encoder_ratio,
                "target": {
                    "four_bit_size_ratio_to_fp32": f"<= {SIZE_TARGET_4BIT}",
                    "encoder_int8_size_ratio_to_fp32": f"<= {SIZE_TARGET_ENCODER_INT8}",
                    "int8_encoder_embedding_cosine": f">= {COSINE_TARGET}",
                },
                "met": {
                    "four_bit_size": all(value <= SIZE_TARGET_4BIT for value in four_bit.values()),
                    "encoder_int8_size": encoder_ratio <= SIZE_TARGET_ENCODER_INT8,
                    "encoder_int8_embedding_cosine": cosine >= COSINE_TARGET,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
