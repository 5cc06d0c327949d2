#!/usr/bin/env python3
"""The same model in each format, side by side: GGUF Q4 (llama.cpp), ONNX int4 (onnxruntime-genai) and
PyTorch fp32 for SmolLM2-135M-Instruct; PyTorch fp32 and ONNX for all-MiniLM-L6-v2.

Each format runs in its own process, loaded once, so its peak resident memory (``VmHWM``) is its own.
The processes take turns: one round asks each format in turn, the order rotating from round to round,
and only one computes at a time, so they never compete for the cores and drift in the machine's speed
spreads evenly. Every format gets the same threads.

- Decoders: the same chat prompts, greedy, a fixed number of new tokens (end-of-sequence ignored);
  the figure is decode tokens/s (first to last output token), median over rounds and prompts.
- Encoders: the extractive-QA head at batch 1 on inputs of exactly 128 tokens; the figure is latency
  per example (tokenization included), median over rounds.
- Size: bytes on disk of what each format loads (the PyTorch decoder has no file of its own: it is
  dequantized from the GGUF, so its fp32 weights are counted as parameters x 4 bytes, ``estimated``).

ONNX variants come from ``slm-eval convert`` into the model store (``--models-dir``); missing ones are
converted first (int4 SmolLM2, the MiniLM qa head) and the conversion time is reported.

Targets: ONNX int4 decode tokens/s ≥ 1.0x GGUF Q4; ONNX encoder latency ≤ 0.7x PyTorch at batch 1,
sequence 128.

Example:
    .venv/bin/python benchmarks/formats.py --rounds 5
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from slm_eval.backends.base import EncoderRequest, GenerationRequest, LoadOptions
from slm_eval.backends.catalogue import BACKENDS, load_backend
from slm_eval.devices.cpus import usable_cpu_count
from slm_eval.devices.worker import own_peak_rss_bytes
from slm_eval.evaluation.runner import weights_size_bytes
from slm_eval.models.catalogue import default_registry
from slm_eval.models.store import ModelStore
from slm_eval.optimize.convert import ConvertRequest, convert

DECODER_TARGET = 1.0
ENCODER_TARGET = 0.7
SEQUENCE = 128
PROMPTS = (
    "Write a short report on how officers at a land border check a traveller's passport and visa.",
    "Explain to a traveller, in plain words, which goods must be declared at customs and why.",
    "Describe the steps an officer takes when a document's machine-readable zone does not match.",
)
QUESTION = "Who was detained at the checkpoint?"
PASSAGE = (
    "At 06:40 a white van with plate ATY-754 arrived at the Dover eastern docks checkpoint. Officers "
    "searched the load area and found a machete under the driver's seat and undeclared cigarettes in "
    "the spare wheel well. The driver, Nathaniel Balogun, a Nigerian national travelling on passport "
    "A01234567, was detained and the vehicle was held for a full customs examination. "
)
MIB = 1024 * 1024


@dataclass(frozen=True)
class Format:
    """One way of running a model: a label, the model reference, the backend, and what kind of work it does."""

    label: str
    model: str
    backend: str
    kind: str  # "decoder" or "encoder"


def _serve(fmt: Format, options: dict[str, Any], models_dir: str, cache_dir: str, pipe: Connection) -> None:
    """A child process: load the format once, then answer one round per message until told to stop."""
    card = default_registry().resolve(fmt.model, Path(models_dir))
    backend: Any = load_backend(BACKENDS[fmt.backend], card, LoadOptions(**options), Path(cache_dir))
    pipe.send({"loaded": True, "parameters": backend.parameter_count})
    while True:
        message = pipe.recv()
        if message is None:
            break
        if fmt.kind == "decoder":
            figures = []
            for prompt in PROMPTS:
                request = GenerationRequest(prompt=prompt, max_new_tokens=int(message["tokens"]), ignore_eos=True)
                (generation,) = backend.generate([request])
                figures.append(
                    {"decode_tps": generation.decode_tokens_per_s, "output_tokens": generation.output_tokens}
                )
            pipe.send({"results": figures, "peak_rss_bytes": own_peak_rss_bytes()})
        else:
            latencies, tokens = [], []
            for _ in range(int(message["repeats"])):
                (prediction,) = backend.predict([EncoderRequest(text=QUESTION, context=PASSAGE * 8)])
                latencies.append(prediction.end_to_end_s)
                tokens.append(prediction.input_tokens)
            pipe.send({"latencies_s": latencies, "input_tokens": tokens, "peak_rss_bytes": own_peak_rss_bytes()})
    backend.close()


def _ensure_variant(store: ModelStore, cache_dir: Path, request: ConvertRequest, variant: str) -> float | None:
    """Convert the variant when it is not in the store yet; the seconds it took, or ``None`` if it was there."""
    card = default_registry().resolve(request.model)
    if any(v.name == variant for v in store.variants(card.name)):
        return None
    started = time.perf_counter()
    convert(request, card, store, cache_dir, on_step=lambda message: print(message, file=sys.stderr))
    return time.perf_counter() - started


def _safetensors_bytes(folder: Path) -> int:
    """Bytes of the weights PyTorch loads from a transformers folder (safetensors only, as the backend does)."""
    return sum(item.stat().st_size for item in folder.glob("*.safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per decoder prompt")
    parser.add_argument("--repeats", type=int, default=20, help="encoder examples per round")
    parser.add_argument("--threads", type=int, default=usable_cpu_count())
    parser.add_argument("--models-dir", type=Path, default=Path("data/models"))
    parser.add_argument("--cache-dir", type=Path, default=Path("data/cache"))
    args = parser.parse_args()

    store = ModelStore(args.models_dir)
    conversions = {
        "smollm2-135m-instruct@onnx-int4": _ensure_variant(
            store, args.cache_dir, ConvertRequest("smollm2-135m-instruct", precision="int4"), "onnx-int4"
        ),
        "all-minilm-l6-v2@onnx-qa": _ensure_variant(
            store, args.cache_dir, ConvertRequest("all-minilm-l6-v2", task="qa"), "onnx-qa"
        ),
    }
    formats = [
        Format("gguf-q4", "smollm2-135m-instruct", "llamacpp", "decoder"),
        Format("onnx-int4", "smollm2-135m-instruct@onnx-int4", "onnx", "decoder"),
        Format("pytorch-fp32", "smollm2-135m-instruct", "transformers", "decoder"),
        Format("encoder-pytorch-fp32", "all-minilm-l6-v2", "transformers", "encoder"),
        Format("encoder-onnx-fp32", "all-minilm-l6-v2@onnx-qa", "onnx", "encoder"),
    ]
    options = {"threads": args.threads, "encoder_task": "qa"}
    context = multiprocessing.get_context("spawn")
    children: dict[str, tuple[Any, Connection]] = {}
    parameters: dict[str, int | None] = {}
    for fmt in formats:
        parent_end, child_end = context.Pipe()
        child_options = dict(options, context_length=SEQUENCE if fmt.kind == "encoder" else 1024)
        process = context.Process(
            target=_serve, args=(fmt, child_options, str(args.models_dir), str(args.cache_dir), child_end)
        )
        process.start()
        parameters[fmt.label] = parent_end.recv()["parameters"]
        children[fmt.label] = (process, parent_end)
        print(f"loaded {fmt.label}", file=sys.stderr)

    rates: dict[str, list[float]] = {f.label: [] for f in formats if f.kind == "decoder"}
    latencies: dict[str, list[float]] = {f.label: [] for f in formats if f.kind == "encoder"}
    peaks: dict[str, int | None] = {}
    input_tokens: set[int] = set()
    for round_index in range(args.rounds + 1):  # round 0 warms every format up and is not counted
        order = formats[round_index % len(formats) :] + formats[: round_index % len(formats)]
        for fmt in order:
            _, pipe = children[fmt.label]
            pipe.send({"tokens": args.tokens, "repeats": args.repeats})
            reply = pipe.recv()
            peaks[fmt.label] = reply["peak_rss_bytes"]
            if round_index == 0:
                continue
            if fmt.kind == "decoder":
                rates[fmt.label].extend(float(r["decode_tps"]) for r in reply["results"] if r["decode_tps"])
            else:
                latencies[fmt.label].extend(reply["latencies_s"])
                input_tokens.update(reply["input_tokens"])
        if round_index:
            shown = ", ".join(
                f"{label} {statistics.median(values):.1f} tok/s" for label, values in rates.items() if values
            )
            print(f"round {round_index}: {shown}", file=sys.stderr)
    for process, pipe in children.values():
        pipe.send(None)
        process.join(timeout=60)

    registry = default_registry()
    smollm2 = registry.resolve("smollm2-135m-instruct")
    minilm = registry.resolve("all-minilm-l6-v2")
    sizes = {
        "gguf-q4": weights_size_bytes(smollm2.source.locate(args.cache_dir)) or 0,
        "onnx-int4": store.get(smollm2.name, "onnx-int4").size_bytes,
        "pytorch-fp32": (parameters["pytorch-fp32"] or 0) * 4,
        "encoder-pytorch-fp32": _safetensors_bytes(minilm.source.locate(args.cache_dir)),
        "encoder-onnx-fp32": store.get(minilm.name, "onnx-qa").size_bytes,
    }
    decoders = {
        label: {
            "decode_tokens_per_s": {"value": statistics.median(values), "unit": "tokens/s", "label": "measured"},
            "peak_memory": {"value": (peaks[label] or 0) / MIB, "unit": "MiB", "label": "measured"},
            "size": {
                "value": sizes[label] / MIB,
                "unit": "MiB",
                "label": "estimated" if label == "pytorch-fp32" else "measured",
            },
        }
        for label, values in rates.items()
    }
    encoders = {
        label: {
            "latency_per_example": {"value": statistics.median(values) * 1000, "unit": "ms", "label": "measured"},
            "peak_memory": {"value": (peaks[label] or 0) / MIB, "unit": "MiB", "label": "measured"},
            "size": {"value": sizes[label] / MIB, "unit": "MiB", "label": "measured"},
        }
        for label, values in latencies.items()
    }
    decode_ratio = (
        decoders["onnx-int4"]["decode_tokens_per_s"]["value"] / decoders["gguf-q4"]["decode_tokens_per_s"]["value"]
    )
    encoder_ratio = (
        encoders["encoder-onnx-fp32"]["latency_per_example"]["value"]
        / encoders["encoder-pytorch-fp32"]["latency_per_example"]["value"]
    )
    print(
        json.dumps(
            {
                "benchmark": "formats",
                "threads": args.threads,
                "rounds": args.rounds,
                "decoder_new_tokens": args.tokens,
                "encoder_input_tokens": sorted(input_tokens),
                "decoders": decoders,
                "encoders": encoders,
                "conversion_s": conversions,
                "onnx_int4_vs_gguf_q4_decode_ratio": decode_ratio,
                "onnx_vs_pytorch_encoder_latency_ratio": encoder_ratio,
                "target": {
                    "onnx_int4_vs_gguf_q4_decode_ratio": f">= {DECODER_TARGET}",
                    "onnx_vs_pytorch_encoder_latency_ratio": f"<= {ENCODER_TARGET}",
                },
                "met": {
                    "decoder": decode_ratio >= DECODER_TARGET,
                    "encoder": encoder_ratio <= ENCODER_TARGET,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
