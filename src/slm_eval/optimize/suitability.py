"""Is this model worth quantizing this way? A check from file headers, run before any quantization work.

It reads the model's tensors without loading it (:mod:`slm_eval.optimize.weight_inventory`), sorts them into
groups (embeddings, the output head, normalisation, linear layers, biases and other tensors), says which groups
the method quantizes and which stay in higher precision, estimates the size of the variant, and gives a verdict:

- ``unsuitable``: an API model, a method that does not handle the model's kind, bits or weight format, a source
  with no linear layers, or weights that are already quantized when requantizing is not allowed;
- ``warning``: 4 bits on a model so small that it costs more accuracy than it saves, a variant that keeps most of
  its parameters in higher precision, a variant no smaller than its source, or a lossy requantization;
- ``suitable``: otherwise.

Example::

    check = check_suitability(card, Path("model.gguf"), "gguf", METHODS["llama-quantize"], 4)
    print(check.verdict, check.reasons, check.warnings)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from slm_eval.metrics.figures import Figure
from slm_eval.models.registry import ModelCard
from slm_eval.optimize.quantize_methods import QuantizeMethod
from slm_eval.optimize.weight_inventory import FLOAT_TYPES, TensorInfo, WeightInventory, read_inventory

if TYPE_CHECKING:
    from rich.table import Table

Verdict = Literal["suitable", "warning", "unsuitable"]
# How the method treats a group: quantized to the target bits; kept as stored; kept in higher precision but
# dequantized to float32 first (a quantized GGUF read by transformers); or given llama.cpp's higher-precision
# quantized type (the output head).
Treatment = Literal["quantized", "kept", "dequantized", "higher"]
GROUPS: tuple[str, ...] = ("embeddings", "output_head", "norm", "linear", "other")
GROUP_TITLES: Mapping[str, str] = {
    "embeddings": "embeddings",
    "output_head": "output head",
    "norm": "normalisation",
    "linear": "linear layers",
    "other": "biases and other",
}

# Heuristics, not published cut-offs. Below these sizes each weight carries more of the model's capacity, so the
# rounding error of post-training 4-bit quantization costs a larger share of the accuracy, while the embedding
# table (left in higher precision) is a larger share of the parameters, so less is saved. The issue names ~30M
# for encoders (MiniLM-L6 at 22.7M is one: its embeddings are over half of it). For decoders, 4-bit is the usual
# sweet spot at 1B and above; for sub-100M decoders the loss at 4 bits is disproportionate often enough to warn.
# Either way the warning asks for a measurement (``slm-eval evaluate`` on both variants), not a refusal.
ENCODER_4BIT_MIN_PARAMETERS = 30_000_000
DECODER_4BIT_MIN_PARAMETERS = 100_000_000
# Below this share of parameters quantized, the size gain is small: the rest stays in higher precision.
MIN_QUANTIZED_SHARE = 0.5
# Bits per quantized weight, scales included (estimates from each format's layout):
# llama.cpp Q4_K is 4.5 (144 bytes per 256) and Q4_K_M moves some attention and feed-forward tensors to Q6_K,
# about 4.85 overall; Q8_0 is 8.5 (34 bytes per 32). MatMulNBits: a float16 scale per block of 32 weights.
# torchao int4: a float16 scale and an int8 zero point per group of 32.
# bitsandbytes NF4: a float32 absmax per 64 weights.
# The int8 methods keep one scale per tensor or per output channel, which is negligible.
BITS_PER_WEIGHT: Mapping[tuple[str, int], float] = {
    ("llama-quantize", 4): 4.85,
    ("llama-quantize", 8): 8.5,
    ("onnx-matmulnbits", 4): 4.5,
    ("onnx-matmulnbits", 8): 8.5,
    ("torchao", 4): 4.75,
    ("torchao", 8): 8.0,
    ("bnb", 4): 4.5,
    ("bnb", 8): 8.0,
    ("onnx-dynamic-int8", 8): 8.0,
    ("torch-dynamic-int8", 8): 8.0,
}
# llama.cpp gives the output head (or a tied embedding table serving as one) Q6_K, or Q8_0 when its rows are not
# a whole number of 256-weight super-blocks (SmolLM2's 576-wide rows) or when the target is 8-bit.
LLAMA_HEAD_TYPES: Mapping[str, float] = {"Q6_K": 6.5625, "Q8_0": 8.5}
# A K-quant needs rows that are whole 256-weight super-blocks; llama.cpp stores other tensors in a legacy type
# instead (Q4_K falls back to Q5_0: 22 bytes per 32 weights).
LLAMA_FALLBACK_BITS = 5.5
_K_QUANT_ROW = 256

_NORM = re.compile(r"norm|^ln(_\w+|\d*)$", re.IGNORECASE)
_EMBEDDING = re.compile(
    r"^(wte|wpe|shared|token_types|embed_in|embed_tokens|embed_positions|tok_embeddings|embed)$|embeddings?$|_embd$",
    re.IGNORECASE,
)
_HEAD_ANYWHERE = frozenset({"lm_head", "qa_outputs", "classifier", "score", "vocab_projector", "embed_out"})
_HEAD_MODULE = frozenset({"output", "decoder", "cls"})
_SUFFIXES = frozenset({"weight", "bias", "weight_scale", "scale", "gamma", "beta"})


@dataclass(frozen=True)
class GroupFacts:
    """One group of tensors and what the method does to it.

    Attributes:
        name: ``embeddings``, ``output_head``, ``norm``, ``linear`` or ``other``.
        parameters: parameters it holds (counted from the headers).
        tensors: tensors in it.
        dtypes: the types they are stored in.
        stored_bytes: bytes of their data now (from the headers).
        treatment: what the method does to it (see :data:`Treatment`).
        precision_after: the precision it will have, in words (``int4, about 4.5 bits per weight``).
        estimated_bytes: bytes of their data after quantization (an estimate).
    """

    name: str
    parameters: int
    tensors: int
    dtypes: tuple[str, ...]
    stored_bytes: int
    treatment: Treatment
    precision_after: str
    estimated_bytes: int

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view, each figure with its unit and label."""
        return {
            "name": self.name,
            "parameters": Figure(self.parameters, "parameters", "measured").to_dict(),
            "tensors": self.tensors,
            "dtypes": list(self.dtypes),
            "stored": Figure(self.stored_bytes, "bytes", "measured").to_dict(),
            "treatment": self.treatment,
            "precision_after": self.precision_after,
            "after": Figure(self.estimated_bytes, "bytes", "estimated").to_dict(),
        }


@dataclass(frozen=True)
class KeptPrecision:
    """A group left in higher precision: its name, parameters and the precision it keeps."""

    name: str
    parameters: int
    precision: str


@dataclass(frozen=True)
class Suitability:
    """The verdict of :func:`check_suitability` and the facts behind it.

    Attributes:
        model: the model's name.
        kind: ``decoder``, ``encoder`` or ``api``.
        architecture: the architecture the files or the card name.
        parameters: parameters counted from the file headers (``None`` for an API model).
        source: the weights read.
        source_format: ``gguf``, ``transformers`` or ``onnx``.
        method: the method's name.
        bits: the target bit width.
        verdict: ``suitable``, ``warning`` or ``unsuitable``.
        reasons: why it is unsuitable (empty otherwise).
        warnings: what to weigh before going on.
        notes: facts worth knowing (tied embeddings, a head added at load time, dequantization).
        groups: each group's facts, in :data:`GROUPS` order (empty groups left out).
        kept_precision: the groups left in higher precision.
        quantized_share: the share of parameters the method quantizes to ``bits`` (an estimate: it follows
            from the method's rules, not from a quantized file).
        current_size_bytes: the weight files' size on disk now (measured).
        estimated_size_bytes: the weights' size after quantization (estimated).
        already_quantized: the quantization the source already carries, or ``None``.
        tied_embeddings: true when the output head is the embedding table.
        allow_requantize: whether requantizing was allowed.
    """

    model: str
    kind: str
    architecture: str
    parameters: int | None
    source: str | None
    source_format: str
    method: str
    bits: int
    verdict: Verdict
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    notes: tuple[str, ...]
    groups: tuple[GroupFacts, ...]
    kept_precision: tuple[KeptPrecision, ...]
    quantized_share: float | None
    current_size_bytes: int | None
    estimated_size_bytes: int | None
    already_quantized: str | None
    tied_embeddings: bool
    allow_requantize: bool

    def group(self, name: str) -> GroupFacts | None:
        """The facts of one group, or ``None`` when the model has none of it."""
        return next((group for group in self.groups if group.name == name), None)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view, each figure with its unit and label (``measured`` or ``estimated``)."""
        share = None if self.quantized_share is None else round(self.quantized_share, 4)
        return {
            "model": self.model,
            "kind": self.kind,
            "architecture": self.architecture,
            "parameters": Figure(self.parameters, "parameters", "measured").to_dict(),
            "source": self.source,
            "source_format": self.source_format,
            "method": self.method,
            "bits": self.bits,
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "groups": {group.name: group.to_dict() for group in self.groups},
            "kept_precision": [
                {"group": kept.name, "parameters": kept.parameters, "precision": kept.precision}
                for kept in self.kept_precision
            ],
            "quantized_share": Figure(share, "fraction of parameters", "estimated").to_dict(),
            "current_size": Figure(self.current_size_bytes, "bytes", "measured").to_dict(),
            "estimated_size": Figure(self.estimated_size_bytes, "bytes", "estimated").to_dict(),
            "already_quantized": self.already_quantized,
            "tied_embeddings": self.tied_embeddings,
            "allow_requantize": self.allow_requantize,
        }


def classify(tensor: TensorInfo) -> str:
    """The group of one tensor, from its name, its shape and (for ONNX) the node that uses it.

    >>> classify(TensorInfo("model.embed_tokens.weight", "", (49152, 576), "F32", 1, 4))
    'embeddings'
    """
    parts = [part for part in re.split(r"[./]", tensor.name) if part]
    module_parts = parts[:-1] if len(parts) > 1 and parts[-1].lower() in _SUFFIXES else parts
    module = module_parts[-1].lower() if module_parts else ""
    if tensor.hint == "norm" or (len(tensor.shape) <= 1 and _NORM.search(module)):
        return "norm"
    if tensor.hint == "embeddings" or _EMBEDDING.search(module):
        return "embeddings"
    if module in _HEAD_MODULE or _HEAD_ANYWHERE.intersection(part.lower() for part in module_parts):
        return "output_head"
    matrix = len(tensor.shape) == 2 or (len(tensor.shape) == 3 and re.search(r"exps|experts", tensor.name) is not None)
    if tensor.hint == "linear" or (matrix and tensor.parameters > 0 and "conv" not in module):
        return "linear"
    return "other"


def check_suitability(
    card: ModelCard,
    source: Path,
    source_format: str,
    method: QuantizeMethod,
    bits: int,
    *,
    allow_requantize: bool = False,
) -> Suitability:
    """Whether ``card``'s weights at ``source`` are worth quantizing with ``method`` to ``bits``, and why.

    Reads file headers only; never loads the model.

    Raises:
        UserError: the source is missing or its headers cannot be read.
        MissingDependencyError: an ONNX source without the ``onnx`` package.
    """
    if card.kind == "api" or source_format == "api":
        return _api(card, source_format, method, bits, allow_requantize)
    inventory = read_inventory(source, source_format)
    by_group: dict[str, list[TensorInfo]] = {name: [] for name in GROUPS}
    for tensor in inventory.tensors:
        by_group[classify(tensor)].append(tensor)
    parameters = sum(t.parameters for t in inventory.tensors)
    head_parameters = sum(t.parameters for t in by_group["output_head"])
    tied = inventory.head_tied is True or (
        card.kind == "decoder" and head_parameters == 0 and inventory.head_tied is not False
    )
    tied = tied and any(t.parameters for t in by_group["embeddings"])
    dequantized = inventory.already_quantized is not None and source_format == "gguf" and method.format != "gguf"
    groups = tuple(
        _group_facts(name, tensors, method, bits, tied, dequantized) for name, tensors in by_group.items() if tensors
    )
    quantized = sum(g.parameters for g in groups if g.treatment == "quantized")
    share = quantized / parameters if parameters else None
    estimated = inventory.size_bytes + sum(g.estimated_bytes - g.stored_bytes for g in groups)
    kept = tuple(
        KeptPrecision(g.name, g.parameters, g.precision_after)
        for g in groups
        if g.treatment != "quantized" and g.parameters
    )
    reasons = _fit_reasons(card, source_format, method, bits)
    if not any(g.name == "linear" and g.parameters for g in groups):
        reasons.append(f"{source} holds no linear layers to quantize (nothing for {method.name} to work on)")
    warnings: list[str] = []
    if inventory.already_quantized is not None:
        if allow_requantize:
            warnings.append(
                f"the weights are already quantized ({inventory.already_quantized}): requantizing is lossy, the "
                "rounding errors of both quantizations add up; quantize the original weights when you can"
            )
        else:
            reasons.append(
                f"the weights are already quantized ({inventory.already_quantized}): requantizing is lossy; pass "
                "--allow-requantize to do it anyway, or quantize the original (unquantized) weights"
            )
    warnings.extend(_size_warnings(card.kind, parameters, bits))
    warnings.extend(_share_warnings(groups, share, parameters, estimated, inventory.size_bytes))
    verdict: Verdict = "unsuitable" if reasons else "warning" if warnings else "suitable"
    return Suitability(
        model=card.name,
        kind=card.kind,
        architecture=inventory.architecture or card.architecture,
        parameters=parameters,
        source=str(source),
        source_format=source_format,
        method=method.name,
        bits=bits,
        verdict=verdict,
        reasons=tuple(reasons),
        warnings=tuple(warnings),
        notes=tuple(_notes(card, groups, tied, dequantized, inventory, method)),
        groups=groups,
        kept_precision=kept,
        quantized_share=share,
        current_size_bytes=inventory.size_bytes,
        estimated_size_bytes=estimated,
        already_quantized=inventory.already_quantized,
        tied_embeddings=tied,
        allow_requantize=allow_requantize,
    )


def suitability_table(check: Suitability) -> Table:
    """The check as a rich table (see :func:`slm_eval.optimize.suitability_output.suitability_table`)."""
    from slm_eval.optimize.suitability_output import suitability_table as render

    return render(check)


def _api(card: ModelCard, source_format: str, method: QuantizeMethod, bits: int, allow: bool) -> Suitability:
    return Suitability(
        model=card.name,
        kind=card.kind,
        architecture=card.architecture,
        parameters=None,
        source=None,
        source_format=source_format,
        method=method.name,
        bits=bits,
        verdict="unsuitable",
        reasons=(f"{card.name} is served over an API: it has no local weights to quantize",),
        warnings=(),
        notes=(),
        groups=(),
        kept_precision=(),
        quantized_share=None,
        current_size_bytes=None,
        estimated_size_bytes=None,
        already_quantized=None,
        tied_embeddings=False,
        allow_requantize=allow,
    )


def _fit_reasons(card: ModelCard, source_format: str, method: QuantizeMethod, bits: int) -> list[str]:
    """What the catalogue says the method cannot do for this model: its bits, kinds and source formats."""
    reasons = []
    if bits not in method.bits:
        reasons.append(f"{method.name} makes {' or '.join(map(str, method.bits))}-bit weights, not {bits}-bit")
    if card.kind not in method.kinds:
        reasons.append(f"{method.name} quantizes {' and '.join(method.kinds)} models, not {card.kind}s")
    if source_format not in method.sources:
        reasons.append(f"{method.name} reads {', '.join(method.sources)} weights, not {source_format}")
    return reasons


def _group_facts(
    name: str, tensors: list[TensorInfo], method: QuantizeMethod, bits: int, tied: bool, dequantized: bool
) -> GroupFacts:
    parameters = sum(t.parameters for t in tensors)
    stored = sum(t.stored_bytes for t in tensors)
    dtypes = tuple(sorted({t.dtype for t in tensors}))
    treatment, label, bits_of = _treatment(name, method, bits, tied, dequantized, dtypes)
    if bits_of is None:
        return GroupFacts(name, parameters, len(tensors), dtypes, stored, treatment, label, stored)
    weights = sum(bits_of(t) * t.parameters for t in tensors)
    estimated = round(weights / 8) + sum(t.stored_bytes for t in tensors if not t.parameters)  # buffers unchanged
    if treatment == "quantized":
        label = f"{label}, about {weights / parameters if parameters else 0:.3g} bits per weight"
    elif treatment == "higher":
        types = sorted({_llama_head_type(bits, t) for t in tensors if t.parameters})
        label = f"{'/'.join(types)} (llama.cpp's type for the output head)"
    return GroupFacts(name, parameters, len(tensors), dtypes, stored, treatment, label, estimated)


def _treatment(
    name: str, method: QuantizeMethod, bits: int, tied: bool, dequantized: bool, dtypes: tuple[str, ...]
) -> tuple[Treatment, str, Callable[[TensorInfo], float] | None]:
    """What the method does to a group: the treatment, the precision in words, and each tensor's bits per weight
    after it (``None``: as stored).

    Linear layers are quantized by every method. Embeddings, the output head and normalisation stay in higher
    precision, except under llama.cpp's rules: an untied token table is quantized like the layers, and the
    output head (or the tied table serving as one) gets Q6_K or Q8_0.
    """
    if method.name == "llama-quantize":
        if name == "output_head" or (name == "embeddings" and tied):
            return "higher", "", partial(_llama_head_bits, bits)
        if name in ("linear", "embeddings"):
            return "quantized", "Q8_0" if bits >= 8 else "Q4_K_M", partial(_llama_bits, bits)
    if name == "linear":
        target = BITS_PER_WEIGHT.get((method.name, bits), bits + 0.5)
        return "quantized", f"int{bits}", lambda _tensor: target
    if dequantized and any(d not in FLOAT_TYPES for d in dtypes if d not in ("I8", "I16", "I32", "I64")):
        return "dequantized", "float32 (dequantized from the GGUF file)", lambda _tensor: 32.0
    return "kept", f"{'/'.join(dtypes)} as stored", None


def _llama_bits(bits: int, tensor: TensorInfo) -> float:
    """llama.cpp's storage for a quantized tensor: Q8_0; Q4_K_M, or Q5_0 for rows not a multiple of 256."""
    if bits >= 8:
        return BITS_PER_WEIGHT[("llama-quantize", 8)]
    return LLAMA_FALLBACK_BITS if tensor.row_length % _K_QUANT_ROW else BITS_PER_WEIGHT[("llama-quantize", 4)]


def _llama_head_type(bits: int, tensor: TensorInfo) -> str:
    """llama.cpp's type for the output head: Q6_K, or Q8_0 for an 8-bit target or rows not a multiple of 256."""
    return "Q8_0" if bits >= 8 or tensor.row_length % _K_QUANT_ROW else "Q6_K"


def _llama_head_bits(bits: int, tensor: TensorInfo) -> float:
    return LLAMA_HEAD_TYPES[_llama_head_type(bits, tensor)]


def _size_warnings(kind: str, parameters: int, bits: int) -> list[str]:
    limits = {"encoder": ENCODER_4BIT_MIN_PARAMETERS, "decoder": DECODER_4BIT_MIN_PARAMETERS}
    limit = limits.get(kind)
    if bits > 4 or limit is None or parameters >= limit:
        return []
    return [
        f"4-bit costs more accuracy than it saves on a model this small ({parameters / 1e6:.1f}M parameters, under "
        f"{limit / 1e6:.0f}M for {kind}s): prefer 8-bit, or evaluate both variants before choosing"
    ]


def _share_warnings(
    groups: Iterable[GroupFacts], share: float | None, parameters: int, estimated: int, current: int
) -> list[str]:
    warnings = []
    kept = [g for g in groups if g.treatment != "quantized" and g.parameters]
    if share is not None and share < MIN_QUANTIZED_SHARE and kept:
        largest = max(kept, key=lambda g: g.parameters)
        warnings.append(
            f"only {share:.0%} of the parameters would be quantized: the {GROUP_TITLES[largest.name]} hold "
            f"{largest.parameters / parameters:.0%} of them and stay at {largest.precision_after}, so the size gain "
            "is limited unless they are quantized too"
        )
    if estimated >= current:
        warnings.append(
            f"the variant is estimated at {estimated / 2**20:.1f} MiB, no smaller than the source's "
            f"{current / 2**20:.1f} MiB"
        )
    return warnings


def _notes(
    card: ModelCard,
    groups: tuple[GroupFacts, ...],
    tied: bool,
    dequantized: bool,
    inventory: WeightInventory,
    method: QuantizeMethod,
) -> list[str]:
    notes = []
    embeddings = next((g for g in groups if g.name == "embeddings"), None)
    if tied and embeddings is not None:
        notes.append(
            f"tied embeddings: the output head shares the embedding table ({embeddings.parameters:,} parameters), "
            f"which is kept at {embeddings.precision_after}"
        )
    if card.kind == "encoder" and not any(g.name == "output_head" and g.parameters for g in groups):
        notes.append("the source has no task head: the qa, ner or classify head added at load time stays in float")
    if dequantized:
        notes.append(
            f"{method.name} reads the GGUF file through transformers, which dequantizes every tensor to float32 "
            "first: what it does not quantize grows to float32"
        )
    if inventory.files:
        notes.append(f"read {len(inventory.tensors)} tensors from {len(inventory.files)} file(s) without loading them")
    return notes
