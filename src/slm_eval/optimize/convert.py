"""``slm-eval convert``: export a model to ONNX, prove it behaves like the original, store it as a variant.

Decoders go through onnxruntime-genai's model builder (:mod:`slm_eval.optimize.onnx_decoder_export`),
encoders through ``torch.onnx`` and graph simplification (:mod:`slm_eval.optimize.onnx_encoder_export`).
Either way the export is written into a temporary folder of the model store, checked against the PyTorch
original on fixed inputs, and renamed into ``data/models/<model>/<variant>/`` with its ``manifest.json``
only when the parity check passes; a failed export or check leaves nothing behind.

Example:
    slm-eval convert --model smollm2-135m-instruct --format onnx --precision int4
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from slm_eval.backends.base import EncoderTask
from slm_eval.errors import UserError
from slm_eval.logs import get_logger
from slm_eval.models.registry import ModelCard
from slm_eval.models.store import (
    ModelStore,
    Variant,
    check_variant_name,
    sha256_tree,
    split_reference,
    write_manifest,
)

log = get_logger(__name__)

Target = Literal["cpu", "cuda", "mobile"]
Precision = Literal["fp32", "int8", "int4"]
TARGETS: tuple[Target, ...] = ("cpu", "cuda", "mobile")
PRECISIONS: tuple[Precision, ...] = ("fp32", "int8", "int4")
FORMATS = ("onnx",)
# Prompts whose greedy outputs the decoder parity check compares.
PARITY_PROMPTS = (
    "What document must a traveller show at the border?",
    "Translate to French: Please open your bag.",
    "List three items a customs officer checks.",
)


@dataclass(frozen=True)
class ConvertRequest:
    """What the user asked for.

    Attributes:
        model: a catalogued model or alias (not an API, not already ONNX).
        format: the output format; ``onnx`` in this version.
        target: ``cpu``, ``cuda`` or ``mobile`` (the execution provider and settings of the export).
        precision: decoders: ``fp32`` (default), ``int8`` or ``int4`` weights; encoders export ``fp32``.
        task: encoders: the task head to export (``qa``, ``ner`` or ``classify``).
        name: the variant's name; by default ``onnx-<precision>`` (decoders) or ``onnx-<task>`` (encoders),
            with ``-<target>`` added for a target other than ``cpu``.
        force: replace an existing variant of the same name.
        seed: the seed a randomly initialised encoder head is built from (as in evaluate).
    """

    model: str
    format: str = "onnx"
    target: str = "cpu"
    precision: str | None = None
    task: EncoderTask = "qa"
    name: str | None = None
    force: bool = False
    seed: int = 0


@dataclass(frozen=True)
class ConvertOutcome:
    """The stored variant, with what the export and the parity check found."""

    variant: Variant
    export: Mapping[str, Any]
    parity: Mapping[str, Any]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view for ``--json``."""
        return {
            "variant": self.variant.reference,
            "path": str(self.variant.path),
            "size_bytes": self.variant.size_bytes,
            "export": dict(self.export),
            "parity": dict(self.parity),
            "seconds": self.seconds,
        }


def _choice(value: str, allowed: tuple[str, ...], flag: str) -> str:
    chosen = value.strip().lower()
    if chosen not in allowed:
        raise UserError(f"unknown {flag} '{value}': choose one of {', '.join(allowed)}")
    return chosen


def variant_name(card: ModelCard, request: ConvertRequest, precision: str) -> str:
    """The variant's name: the user's, else one that says what it is (``onnx-int4``, ``onnx-qa-cuda``)."""
    if request.name is not None:
        return check_variant_name(request.name)
    what = precision if card.kind == "decoder" else request.task
    suffix = "" if request.target == "cpu" else f"-{request.target}"
    _, parent_variant = split_reference(card.name)
    prefix = f"{parent_variant}-" if parent_variant else ""
    return check_variant_name(f"{prefix}onnx-{what}{suffix}")


def check_request(card: ModelCard, request: ConvertRequest) -> tuple[str, str]:
    """The target and precision to use, after checking that ``card`` can be converted as asked.

    Raises:
        UserError: an API model, a model already in ONNX, an unknown format, target or precision, or a
            quantized precision asked of an encoder.
    """
    _choice(request.format, FORMATS, "--format")
    target = _choice(request.target, TARGETS, "--target")
    if card.kind == "api":
        raise UserError(f"{card.name} runs on a remote API: it has no weights to convert")
    if card.source.format == "onnx":
        raise UserError(f"{card.name} is already an ONNX model")
    if Path(card.name).is_absolute():
        raise UserError("convert works on catalogued models and their variants (see 'slm-eval models'), not on a path")
    if card.kind == "encoder":
        precision = _choice(request.precision or "fp32", PRECISIONS, "--precision")
        if precision != "fp32":
            raise UserError(
                f"encoders export in fp32; quantize the exported variant afterwards (asked for {precision})"
            )
        return target, precision
    return target, _choice(request.precision or "fp32", PRECISIONS, "--precision")


def convert(
    request: ConvertRequest,
    card: ModelCard,
    store: ModelStore,
    cache_dir: Path,
    *,
    on_step: Callable[[str], None] | None = None,
) -> ConvertOutcome:
    """Export ``card`` to ONNX, check parity with the original, and store the variant with its manifest.

    Raises:
        UserError: bad options (see :func:`check_request`), weights not on this machine, an unsupported
            architecture, or a parity check that failed (the variant is then not stored).
        MissingDependencyError: the onnx extra is not installed.
    """
    target, precision = check_request(card, request)
    name = variant_name(card, request, precision)
    step = on_step or (lambda message: log.info("%s", message))
    source = card.source.locate(cache_dir)
    from slm_eval.backends.transformers_adapter import refuse_adapter

    refuse_adapter(source, card.name, "convert")
    if source.is_dir() and (source / "quantization.json").is_file():
        raise UserError(
            f"{card.name} is a quantized PyTorch variant; convert the original model to ONNX, then quantize "
            "that with --format onnx"
        )
    started = time.perf_counter()
    parent, _ = split_reference(card.name)
    with store.writing(parent, name, replace=request.force) as folder:
        if card.kind == "decoder":
            step(f"exporting {card.name} with onnxruntime-genai's model builder ({precision}, {target})")
            export, parity = _decoder(source, folder, precision, target, cache_dir, step)
            method = f"onnxruntime-genai model builder, {precision}"
        else:
            step(f"exporting {card.name} with its {request.task} head through torch.onnx")
            export, parity = _encoder(card, source, folder, request, step)
            method = "torch.onnx export + onnxslim"
        final = store.folder(parent, name)
        export, parity = _relocated(export, folder, final), _relocated(parity, folder, final)
        if not parity.get("passed"):
            raise UserError(
                f"parity check failed for {card.name}@{name}: {_parity_line(parity)}; the variant was not stored"
            )
        step(f"parity passed: {_parity_line(parity)}; hashing the source")
        export_facts = {k: v for k, v in export.items() if k not in ("tool_versions", "versions", "output_dir")}
        facts = {
            "model": parent,
            "variant": name,
            "format": "onnx",
            "kind": card.kind,
            "method": method,
            "precision": precision,
            "target": target,
            "source": {
                "model": card.name,
                "format": card.source.format,
                "path": str(source),
                "sha256": sha256_tree(source),
            },
            "encoder_task": request.task if card.kind == "encoder" else None,
            "tool_versions": export.get("tool_versions") or export.get("versions") or {},
            "export": export_facts,
            "parity": parity,
        }
        write_manifest(folder, facts)
    variant = store.get(parent, name)
    return ConvertOutcome(variant, export_facts, parity, time.perf_counter() - started)


def _decoder(
    source: Path, folder: Path, precision: str, target: str, cache_dir: Path, step: Callable[[str], None]
) -> tuple[dict[str, Any], dict[str, Any]]:
    from slm_eval.optimize.decoder_parity import check_decoder_parity
    from slm_eval.optimize.onnx_decoder_export import export_decoder

    export = export_decoder(source, folder, precision, target, cache_dir=cache_dir)
    step("checking parity: logits on fixed inputs and greedy outputs against the PyTorch original")
    parity = check_decoder_parity(source, folder, PARITY_PROMPTS, precision=precision)
    return as_facts(export), as_facts(parity)


def _encoder(
    card: ModelCard, source: Path, folder: Path, request: ConvertRequest, step: Callable[[str], None]
) -> tuple[dict[str, Any], dict[str, Any]]:
    from slm_eval.optimize.encoder_parity import check_encoder_parity
    from slm_eval.optimize.onnx_encoder_export import export_encoder

    export = export_encoder(card, source, folder, request.task, seed=request.seed)
    step("checking parity: head outputs on fixed inputs against the PyTorch original")
    parity = check_encoder_parity(card, source, folder, seed=request.seed)
    return as_facts(export), as_facts(parity)


def as_facts(value: Any) -> dict[str, Any]:
    """A report dataclass as JSON-ready facts (its own ``to_dict`` when it has one)."""
    if hasattr(value, "to_dict"):
        facts: dict[str, Any] = _jsonable(value.to_dict())
        return facts
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields: dict[str, Any] = _jsonable(dataclasses.asdict(value))
        return fields
    raise TypeError(f"cannot record {type(value).__name__} in a manifest")


def _relocated(facts: dict[str, Any], temporary: Path, final: Path) -> dict[str, Any]:
    """``facts`` with paths inside the temporary folder pointing at the variant's final folder."""
    old, new = str(temporary), str(final)

    def move(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(old, new)
        if isinstance(value, Mapping):
            return {k: move(v) for k, v in value.items()}
        if isinstance(value, list):
            return [move(v) for v in value]
        return value

    relocated: dict[str, Any] = move(facts)
    return relocated


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _parity_line(parity: Mapping[str, Any]) -> str:
    """One line with the parity figures the report carries (max abs diff, cosine, greedy agreement)."""
    shown = []
    for key in ("max_abs_diff", "cosine", "min_cosine", "greedy_agreement", "token_agreement"):
        value = parity.get(key)
        if isinstance(value, int | float):
            shown.append(f"{key.replace('_', ' ')} {value:.4g}")
    return ", ".join(shown) or "see the parity section of the output"
