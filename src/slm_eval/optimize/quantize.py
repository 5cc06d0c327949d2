"""``slm-eval quantize``: check a model is suitable, quantize it, store the variant, gate its accuracy.

The one wiring point of quantization: the request is checked (format, bits, method, hardware), the
suitability check runs before any work, the chosen method writes into a temporary folder of the model
store that is renamed into place only when complete (with its manifest: parent and its sha256, method,
bits, block size, tool versions, size and compression ratio), and then the accuracy gate evaluates the
variant against its parent on the same examples and records ``gate: passed`` or ``gate: failed`` in the
manifest. A failed gate keeps the variant, marked, and warns loudly.

Example:
    python run.py quantize --model smollm2-135m-instruct --bits 4 --format onnx
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slm_eval.errors import UserError
from slm_eval.logs import get_logger
from slm_eval.models.registry import ModelCard
from slm_eval.models.store import (
    ModelStore,
    Variant,
    check_variant_name,
    sha256_tree,
    split_reference,
    update_manifest,
    write_manifest,
)
from slm_eval.optimize.quantize_methods import (
    STORED_FORMAT,
    QuantFormat,
    QuantizeJob,
    QuantizeMethod,
    choose_method,
    parse_format,
)

log = get_logger(__name__)

# The format a model's weights are quantized in when --format is not given: its own.
FORMAT_OF_WEIGHTS: dict[str, QuantFormat] = {"gguf": "gguf", "transformers": "pytorch", "onnx": "onnx"}
GGUF_DEFAULT_TYPES = {8: "Q8_0", 4: "Q4_K_M"}
BYTES_PER_FP32 = 4


@dataclass(frozen=True)
class QuantizeRequest:
    """What the user asked for (see ``slm-eval quantize --help``)."""

    model: str
    bits: int
    format: str | None = None
    method: str | None = None
    block_size: int | None = None
    quant_type: str | None = None
    allow_requantize: bool = False
    task: str = "qa"
    name: str | None = None
    force: bool = False
    seed: int = 0


@dataclass(frozen=True)
class QuantizePlan:
    """A checked request: the model, its weights, the method and the variant's name."""

    card: ModelCard
    parent: str
    source: Path
    source_format: str
    format: QuantFormat
    method: QuantizeMethod
    bits: int
    block_size: int | None
    quant_type: str | None
    variant: str
    request: QuantizeRequest


def cuda_available() -> bool:
    """Whether torch is installed and sees a CUDA GPU."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def plan_quantize(
    request: QuantizeRequest,
    card: ModelCard,
    cache_dir: Path,
    has_cuda: Callable[[], bool] = cuda_available,
) -> QuantizePlan:
    """Check the request against the model and this machine, and name the variant.

    Raises:
        UserError: an API model, an unknown format or method, unsupported bits (the message lists the
            supported ones), a CUDA-only method without CUDA (it names the CPU alternative), a block size
            the method does not take, or weights that are not on this machine.
    """
    if card.kind == "api":
        raise UserError(f"{card.name} runs on a remote API: it has no weights here to quantize")
    if Path(card.name).is_absolute():
        raise UserError("quantize works on catalogued models and their variants (see 'slm-eval models'), not a path")
    source_format = card.source.format
    fmt = parse_format(request.format) if request.format else FORMAT_OF_WEIGHTS[source_format]
    method = choose_method(fmt, request.method, request.bits, card.kind, source_format, has_cuda)
    block_size = request.block_size
    if block_size is not None and block_size not in method.block_sizes:
        allowed = ", ".join(map(str, method.block_sizes)) or "none"
        raise UserError(f"--block-size {block_size} is not taken by {method.name} (block sizes: {allowed})")
    quant_type = request.quant_type
    if fmt == "gguf" and quant_type is None:
        quant_type = GGUF_DEFAULT_TYPES[request.bits]
    if fmt != "gguf" and quant_type is not None:
        raise UserError("--type names a llama.cpp quantization type (Q4_K_M, Q8_0, ...): it applies to --format gguf")
    parent, parent_variant = split_reference(card.name)
    name = request.name or default_variant_name(method, request.bits, block_size, quant_type, card.kind, request.task)
    if request.name is None and parent_variant:
        name = f"{parent_variant}-{name}"
    source = card.source.locate(cache_dir)
    from slm_eval.backends.transformers_adapter import refuse_adapter

    refuse_adapter(source, card.name, "quantize")
    return QuantizePlan(
        card=card,
        parent=parent,
        source=source,
        source_format=source_format,
        format=fmt,
        method=method,
        bits=request.bits,
        block_size=block_size,
        quant_type=quant_type,
        variant=check_variant_name(name),
        request=request,
    )


def default_variant_name(
    method: QuantizeMethod, bits: int, block_size: int | None, quant_type: str | None, kind: str, task: str
) -> str:
    """A name that says what the variant is: ``onnx-int4``, ``onnx-qa-int8-dynamic``, ``gguf-q4_k_m``."""
    if method.format == "gguf":
        return f"gguf-{(quant_type or GGUF_DEFAULT_TYPES[bits]).lower()}"
    head = f"-{task}" if kind == "encoder" else ""
    suffix = {
        "onnx-dynamic-int8": "-dynamic",
        "torch-dynamic-int8": "-dynamic",
        "bnb": "-bnb",
    }.get(method.name, "")
    blocks = f"-b{block_size}" if block_size is not None else ""
    return f"{method.format}{head}-int{bits}{suffix}{blocks}"


@dataclass(frozen=True)
class QuantizeOutcome:
    """The stored variant and its manifest; the gate, when it ran."""

    variant: Variant
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view for ``--json``."""
        return {
            "variant": self.variant.reference,
            "path": str(self.variant.path),
            "manifest": dict(self.variant.manifest),
        }


def quantize(plan: QuantizePlan, store: ModelStore, cache_dir: Path, *, suitability: dict[str, Any]) -> QuantizeOutcome:
    """Run the method into a temporary folder of the store and rename it into place with its manifest.

    Raises:
        UserError: the variant exists (without ``force``), or the method failed (nothing is stored then).
    """
    request = plan.request
    started = time.perf_counter()
    with store.writing(plan.parent, plan.variant, replace=request.force) as folder:
        job = QuantizeJob(
            card=plan.card,
            source=plan.source,
            source_format=plan.source_format,
            bits=plan.bits,
            output_dir=folder,
            cache_dir=cache_dir,
            block_size=plan.block_size,
            quant_type=plan.quant_type,
            allow_requantize=request.allow_requantize,
            encoder_task=request.task,
            seed=request.seed,
        )
        result = plan.method.load_runner()(job)
        seconds = time.perf_counter() - started
        parent_bytes = _bytes(plan.source)
        facts = {
            "model": plan.parent,
            "variant": plan.variant,
            "format": STORED_FORMAT[plan.format],
            "kind": plan.card.kind,
            "method": plan.method.name,
            "method_description": plan.method.description,
            "bits": plan.bits,
            "block_size": plan.block_size,
            "quant_type": result.quant_type,
            "encoder_task": request.task if plan.card.kind == "encoder" else None,
            "requantized": result.requantized,
            "kept_precision": list(result.kept_precision),
            "source": {
                "model": plan.card.name,
                "format": plan.source_format,
                "path": str(plan.source),
                "bytes": parent_bytes,
                "sha256": sha256_tree(plan.source),
            },
            "tool_versions": dict(result.facts.get("tool_versions", {})),
            "quantize": {k: v for k, v in result.facts.items() if k != "tool_versions"},
            "quantize_time": {"value": seconds, "unit": "s", "label": "measured"},
            "suitability": suitability,
            "gate": {"status": "pending"},
        }
        size = _bytes(folder)  # the manifest, written once below, hashes every file
        parameters = plan.card.parameters
        ratios = {
            "compression_ratio": {
                "value": size / parent_bytes if parent_bytes else None,
                "unit": "variant size / parent size on disk",
                "label": "measured",
            },
            "size_ratio_to_fp32": {
                "value": size / (parameters * BYTES_PER_FP32) if parameters else None,
                "unit": "variant size / (parameters x 4 bytes)",
                "label": "estimated",
            },
        }
        write_manifest(folder, {**facts, **ratios}, entry=result.entry)
    variant = store.get(plan.parent, plan.variant)
    return QuantizeOutcome(variant, time.perf_counter() - started)


def record_gate(variant: Variant, gate: dict[str, Any]) -> Variant:
    """Write the gate's outcome into the variant's manifest."""
    return update_manifest(variant, {"gate": gate})


def _bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file() and item.name != "manifest.json")


@dataclass(frozen=True)
class GateOptions:
    """How the accuracy gate runs after quantizing (``enabled=False`` skips it)."""

    enabled: bool = True
    limit: int = 10
    dataset: str | None = None
    threshold: float = 0.99


@dataclass(frozen=True)
class Places:
    """Where quantization reads and writes: the model store, the cache, the gate's runs, the evaluation config."""

    models: Path
    cache: Path
    results: Path
    eval_config: Path


def gate_folder(places: Places, parent: str, gate: GateOptions, seed: int) -> Path:
    """Where the gate's runs of one parent live; the parent's own runs there are shared by its variants."""
    from slm_eval.results.records import safe_name

    key = f"{safe_name(gate.dataset or 'suite', keep='-._')}-limit{gate.limit}-seed{seed}"
    return places.results / "quantize-gates" / parent / key


def quantize_and_gate(
    plan: QuantizePlan,
    places: Places,
    gate: GateOptions,
    suitability: dict[str, Any],
    on_step: Callable[[str], None],
) -> Variant:
    """Quantize per ``plan`` into the store, then run the accuracy gate and record it in the manifest."""
    from slm_eval.models.catalogue import default_registry

    store = ModelStore(places.models)
    on_step(f"quantizing {plan.card.name} with {plan.method.name} ({plan.bits}-bit) into {plan.parent}@{plan.variant}")
    variant = quantize(plan, store, places.cache, suitability=suitability).variant
    if not gate.enabled:
        return variant
    from slm_eval.devices.profiles import load_evaluation_config
    from slm_eval.optimize.accuracy_gate import run_gate

    registry = default_registry()
    result = run_gate(
        registry.resolve(plan.card.name, places.models),
        registry.resolve(variant.reference, places.models),
        folder=gate_folder(places, plan.parent, gate, plan.request.seed),
        config=load_evaluation_config(places.eval_config),
        cache_dir=places.cache,
        models_dir=places.models,
        dataset=gate.dataset,
        limit=gate.limit,
        seed=plan.request.seed,
        threshold=gate.threshold,
        on_step=on_step,
    )
    if result.status == "failed":
        log.warning(
            "gate failed for %s: %s; the variant is kept, marked gate: failed", variant.reference, result.reason
        )
    return record_gate(variant, result.to_dict())


def sweep_requests(
    card: ModelCard, allow_requantize: bool, task: str, seed: int, cuda: bool, only: QuantFormat | None = None
) -> list[QuantizeRequest]:
    """Every format, method and bit width that can quantize ``card`` on this machine, one request each.

    GGUF methods on an already-quantized GGUF are included only with ``allow_requantize``; CUDA-only methods
    only with CUDA. Methods whose packages are missing are left out. ``only`` keeps one format.
    """
    from slm_eval.optimize.quantize_methods import METHODS

    requests = []
    for method in METHODS.values():
        if card.kind not in method.kinds or card.source.format not in method.sources:
            continue
        if only is not None and method.format != only:
            continue
        if (method.needs_cuda and not cuda) or method.missing_packages():
            continue
        if method.format == "gguf" and card.source.format == "gguf" and not allow_requantize:
            continue
        for bits in method.bits:
            requests.append(
                QuantizeRequest(
                    model=card.name,
                    bits=bits,
                    format=method.format,
                    method=method.name,
                    allow_requantize=allow_requantize,
                    task=task,
                    seed=seed,
                )
            )
    return requests
