"""PyTorch quantization: dynamic int8 and torchao weight-only int8/int4 on the CPU, bitsandbytes on CUDA.

Each method reads a decoder (a transformers folder, or a GGUF file dequantized to float32 by transformers)
or an encoder with its task head (:func:`~slm_eval.backends.transformers_encoder.load_head_model`, so an
untrained head is the one initialised from ``job.seed``), quantizes the ``nn.Linear`` layers of the model's
body (its ``base_model``: every decoder layer's attention and MLP projections, every encoder layer's) and
keeps the embeddings, the norms and the output head (``lm_head``, ``qa_outputs``, ``classifier``) in float32.

* ``torch-dynamic-int8``: ``torch.ao.quantization.quantize_dynamic`` on the body's Linear layers: int8
  weights (one scale per tensor), activations quantized at run time; CPU kernels only (fbgemm/x86 or
  qnnpack on ARM).
* ``torchao``: torchao weight-only int8 (``Int8WeightOnlyConfig``: one scale per output row; torch's int8
  weight matmul on the CPU) or int4 (``IntxWeightOnlyConfig``: asymmetric, a float16 scale and an int8 zero
  point per group of ``job.block_size`` inputs, 32 by default; dequantized per matmul). torchao holds int4
  values one per byte in memory; on disk they are packed two per byte.
* ``bnb``: bitsandbytes NF4 (4-bit) or LLM.int8 (8-bit) through transformers' ``BitsAndBytesConfig``; CUDA
  only. On a CPU-only machine it is refused with the catalogue's CPU alternative.

The CPU methods store the quantized tensors themselves, in safetensors, with a ``quantization.json`` recipe
(:mod:`slm_eval.backends.transformers_quantized`), so the size on disk is the quantized size and nothing is
pickled. Before anything is kept the method checks its own work on a fixed input: the quantized logits
against float32 (centred cosine, top-1 agreement; recorded) and the variant reloaded from disk against the
quantized model in memory (must be identical; otherwise nothing is stored).

Example:
    slm-eval quantize --model smollm2-135m-instruct --format pytorch --bits 4 --method torchao
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slm_eval.backends.transformers_quantized import (
    BNB,
    DYNAMIC_INT8,
    RECIPE_FILE,
    TORCHAO,
    WEIGHTS_FILE,
    QuantizationRecipe,
    import_torchao,
    load_quantized,
    save_quantized,
    shared_tensors,
)
from slm_eval.errors import UserError, extra_install_hint, first_line, require_module
from slm_eval.logs import get_logger, quiet_library_notices
from slm_eval.optimize.export_facts import tool_versions
from slm_eval.optimize.quantize_methods import METHODS, QuantizeJob, QuantizeResult

log = get_logger(__name__)

PROBE_TEXT = "The officer checks the passport at the border and stamps the entry permit."
FLOAT_GGUF_TYPES = frozenset({"F32", "F16", "BF16", "F64"})
# Stored weights must reload exactly as quantized in memory: same int8 values, same kernels.
RELOAD_TOLERANCE = 1e-5
TORCHAO_WEIGHTS = {8: "int8", 4: "int4"}
TORCHAO_GROUP = 32  # int4 group size when --block-size is not given
BNB_WEIGHTS = {8: "int8", 4: "nf4"}
TOOLS = {
    DYNAMIC_INT8: ("torch", "transformers", "safetensors"),
    TORCHAO: ("torch", "transformers", "safetensors", "torchao"),
    BNB: ("torch", "transformers", "safetensors", "bitsandbytes"),
}


@dataclass
class _Source:
    """The float32 model to quantize, as loaded, with what is known about where it came from."""

    model: Any
    tokenizer: Any
    auto_class: Any
    task: str | None
    head_trained: bool | None
    source_types: dict[str, int]

    @property
    def requantized(self) -> bool:
        """True when the source's weights were already quantized (a GGUF file with quantized tensors)."""
        return any(name not in FLOAT_GGUF_TYPES for name in self.source_types)


def quantize_dynamic_int8(job: QuantizeJob) -> QuantizeResult:
    """PyTorch dynamic int8 quantization of the body's Linear layers (CPU).

    Raises:
        UserError: bits other than 8, an unreadable source, a model with no Linear layers to quantize, or a
            stored variant that does not reproduce the quantized model.
    """
    _check_bits(job, DYNAMIC_INT8)
    return _quantize(job, DYNAMIC_INT8, "qint8")


def quantize_torchao(job: QuantizeJob) -> QuantizeResult:
    """torchao weight-only int8 (per row) or int4 (per group) quantization of the body's Linear layers (CPU).

    Raises:
        MissingDependencyError: torchao is not installed.
        UserError: bits other than 4 or 8, a block size with 8 bits, an unreadable source, a model with no
            Linear layers to quantize, or a stored variant that does not reproduce the quantized model.
    """
    _check_bits(job, TORCHAO)
    if job.bits == 8 and job.block_size is not None:
        raise UserError("--block-size applies to 4-bit torchao weights; 8-bit ones have one scale per row")
    import_torchao("quantization")
    return _quantize(job, TORCHAO, TORCHAO_WEIGHTS[job.bits])


def quantize_bitsandbytes(job: QuantizeJob) -> QuantizeResult:
    """bitsandbytes NF4 (4-bit) or LLM.int8 (8-bit) through transformers' ``BitsAndBytesConfig``; CUDA only.

    Raises:
        UserError: no CUDA GPU (the message names the CPU alternative), bits other than 4 or 8, an
            unreadable source, or a stored variant that does not reload like the quantized model.
        MissingDependencyError: bitsandbytes is not installed.
    """
    _check_bits(job, BNB)
    torch = require_module("torch", "bitsandbytes quantization", extra_install_hint("torch"))
    method = METHODS[BNB]
    if not torch.cuda.is_available():
        alternative = f"; on this machine use --method {method.cpu_alternative}" if method.cpu_alternative else ""
        raise UserError(f"--method {BNB} needs a CUDA GPU, and none is available here{alternative}")
    require_module("bitsandbytes", "bitsandbytes quantization", method.install)
    return _quantize(job, BNB, BNB_WEIGHTS[job.bits])


def _check_bits(job: QuantizeJob, name: str) -> None:
    supported = METHODS[name].bits
    if job.bits not in supported:
        raise UserError(f"--bits {job.bits} is not supported by {name}: choose one of {', '.join(map(str, supported))}")


def _quantize(job: QuantizeJob, method: str, weights: str) -> QuantizeResult:
    """Load the source, quantize it with ``method``, store it, reload it and check it against float32."""
    import torch

    source = _load_source(job)
    model = source.model.to("cpu").eval()
    names = body_linear_modules(model)
    if not names:
        raise UserError(
            f"{job.card.name} has no nn.Linear layers in its body to quantize (its architecture uses other "
            "layer types); use --format onnx or gguf instead"
        )
    kept = kept_precision(model, names)
    counts = _weight_counts(model, names)
    float_bytes = _tensor_bytes(model)
    probe = _probe(source)
    with torch.no_grad():
        reference = _outputs(model, probe)
    recipe = QuantizationRecipe(
        method=method,
        bits=job.bits,
        weights=weights,
        modules=() if method == BNB else tuple(names),
        architecture=type(model).__name__,
        kind=job.card.kind,
        tied=shared_tensors(model),
        encoder_task=source.task,
        head_trained=source.head_trained,
        seed=job.seed if source.task is not None else None,
    )
    started = time.perf_counter()
    _write_folder(job.output_dir, model, source)
    layout: dict[str, Any] = {}
    if method == BNB:
        from slm_eval.optimize.quantize_bnb import quantize_and_save

        model = quantize_and_save(model, source.auto_class, job, names, recipe)
    else:
        if method == DYNAMIC_INT8:
            _apply_dynamic(model, names)
        else:
            layout = _apply_torchao(model, names, job.bits, job.block_size or TORCHAO_GROUP)
        save_quantized(model, job.output_dir, recipe)
    seconds = time.perf_counter() - started
    with torch.no_grad():
        quantized = _outputs(model, probe)
    del model
    source.model = None  # free the float32 weights before the variant is reloaded
    reloaded = load_quantized(job.output_dir, recipe, source.auto_class)
    with torch.no_grad():
        again = _outputs(reloaded, probe)
    reload_diff = float((again - quantized).abs().max())
    # The CPU methods reload the very same int8/int4 values and kernels; bitsandbytes' CUDA kernels may not
    # be bit-for-bit deterministic, so it is held to its outputs' own scale.
    tolerance = RELOAD_TOLERANCE if method != BNB else 1e-2 * float(quantized.abs().max())
    if reload_diff > tolerance:
        raise UserError(
            f"the stored {method} variant of {job.card.name} does not reload as quantized (max abs diff "
            f"{reload_diff:.3g}); nothing was stored"
        )
    cosine, top1 = closeness(reference, quantized)
    log.info("%s: %s of %d layers, centred cosine %.4f vs float32", job.card.name, method, len(names), cosine)
    facts: dict[str, Any] = {
        "tool_versions": tool_versions(TOOLS[method]),
        "stored_as": _stored_as(method, weights, len(names)),
        "quantized_layers": len(names),
        "quantized_weights": counts,
        **({"layout": layout} if layout else {}),
        "weights_bytes": {"value": _weights_bytes(job.output_dir), "unit": "bytes", "label": "measured"},
        "float32_tensor_bytes": {"value": float_bytes, "unit": "bytes", "label": "measured"},
        "check": {
            "input": probe["text"],
            "centred_cosine": cosine,
            "top1_agreement": top1,
            "reload_max_abs_diff": reload_diff,
            "label": "measured",
        },
        "quantize_seconds": {"value": seconds, "unit": "s", "label": "measured"},
        "recipe": RECIPE_FILE,
    }
    if source.source_types:
        facts["source_tensor_types"] = source.source_types
    if source.head_trained is not None:
        facts["head_trained"] = source.head_trained
    return QuantizeResult(
        entry=None,
        quant_type=_quant_type(method, weights, layout),
        kept_precision=kept,
        requantized=source.requantized,
        facts=facts,
    )


def _load_source(job: QuantizeJob) -> _Source:
    """The float32 model to quantize: a decoder from a folder or GGUF file, or an encoder with its head."""
    require_module("torch", "PyTorch quantization", extra_install_hint("torch"))
    transformers = require_module("transformers", "PyTorch quantization", extra_install_hint("torch"))
    quiet_library_notices()
    transformers.logging.disable_progress_bar()  # its bars would mix with the command's own output
    if job.source_format not in ("gguf", "transformers"):
        raise UserError(f"PyTorch quantization reads GGUF or transformers weights, not {job.source_format}")
    if job.source.is_dir() and (job.source / RECIPE_FILE).is_file():
        raise UserError(f"{job.card.name} is already quantized (it has a {RECIPE_FILE}); quantize the original model")
    if job.card.kind == "encoder":
        from slm_eval.backends.encoder_heads import HEAD_CLASSES, parse_encoder_task
        from slm_eval.backends.transformers_encoder import load_head_model

        task = parse_encoder_task(job.encoder_task)
        head = load_head_model(job.card, job.source, task, seed=job.seed)
        head.model.config.architectures = [type(head.model).__name__]
        return _Source(head.model, head.tokenizer, getattr(transformers, HEAD_CLASSES[task]), task, head.trained, {})
    if job.card.kind != "decoder":
        raise UserError(f"{job.card.name} is an {job.card.kind} model: only decoders and encoders can be quantized")
    from slm_eval.optimize.onnx_decoder_export import load_torch_decoder

    model, tokenizer = load_torch_decoder(job.source)
    types = gguf_tensor_types(job.source) if job.source.is_file() else {}
    # A GGUF file was dequantized to plain float32 tensors; only the loader's bookkeeping still says "gguf".
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.architectures = [type(model).__name__]
    return _Source(model, tokenizer, transformers.AutoModelForCausalLM, None, None, types)


def gguf_tensor_types(path: Path) -> dict[str, int]:
    """How many tensors of each type (``Q4_1``, ``F32``, ...) a GGUF file holds, most frequent first."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the GGUF file {path} ({first_line(exc)})") from exc
    counts = Counter(tensor.tensor_type.name for tensor in reader.tensors)
    return dict(counts.most_common())


def body_linear_modules(model: Any) -> list[str]:
    """The ``nn.Linear`` modules inside the model's body (its ``base_model``), by full name.

    The output head (``lm_head``, ``qa_outputs``, ``classifier``) lives outside the body and stays float.
    """
    import torch

    body = getattr(model, "base_model", model)
    prefix = next((name for name, module in model.named_modules() if module is body), "")
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = []
    for name, module in body.named_modules():
        if isinstance(module, torch.nn.Linear) and module is not output:
            names.append(f"{prefix}.{name}" if prefix else name)
    return names


def kept_precision(model: Any, quantized: Sequence[str]) -> tuple[str, ...]:
    """What stays in float32: the embeddings, the output head, the norms and any other weighted layer."""
    import torch

    body = getattr(model, "base_model", model)
    inside = {id(module) for module in body.modules()}
    groups: dict[str, list[str]] = {"embeddings": [], "output head": [], "norms": [], "other": []}
    done = set(quantized)
    for name, module in model.named_modules():
        if name in done or not any(True for _ in module.parameters(recurse=False)):
            continue
        if isinstance(module, torch.nn.Embedding):
            groups["embeddings"].append(name)
        elif id(module) not in inside:
            groups["output head"].append(name)
        elif "norm" in type(module).__name__.lower():
            groups["norms"].append(name)
        else:
            groups["other"].append(name)
    kept = []
    for group, names in groups.items():
        if not names:
            continue
        listed = ", ".join(names) if len(names) <= 3 else f"{len(names)} layers ({names[0]}, ...)"
        kept.append(f"{group}: {listed}")
    tied = shared_tensors(model)
    if tied:
        kept.append("tied: " + ", ".join(f"{target} = {source}" for target, source in tied.items()))
    return tuple(kept)


def _apply_dynamic(model: Any, names: Sequence[str]) -> None:
    import torch

    qconfig = torch.ao.quantization.default_dynamic_qconfig
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # torch.ao.quantization's notice
        warnings.filterwarnings("ignore", message=r".*deprecated.*")
        torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
            model, {name: qconfig for name in names}, dtype=torch.qint8, inplace=True
        )


def _apply_torchao(model: Any, names: Sequence[str], bits: int, group: int) -> dict[str, Any]:
    """Quantize the named Linear layers' weights with torchao, in place; how they were grouped.

    A layer whose input width is not a multiple of ``group`` gets one scale per output row instead.
    """
    import torch

    quantization = import_torchao("quantization")
    if bits == 8:
        config = quantization.Int8WeightOnlyConfig(set_inductor_config=False)
        wanted = set(names)
        quantization.quantize_(model, config, filter_fn=lambda module, fqn: fqn in wanted)
        return {"granularity": "one scale per output row"}
    grouped = {name for name in names if model.get_submodule(name).in_features % group == 0}
    rows = set(names) - grouped
    for selected, granularity in ((grouped, quantization.PerGroup(group)), (rows, quantization.PerAxis(0))):
        if not selected:
            continue
        config = quantization.IntxWeightOnlyConfig(
            weight_dtype=torch.int4,  # type: ignore[attr-defined]  # present at run time, not in the stubs
            granularity=granularity,
            mapping_type=quantization.MappingType.ASYMMETRIC,
            scale_dtype=torch.float16,
        )
        quantization.quantize_(model, config, filter_fn=lambda module, fqn, chosen=selected: fqn in chosen)
    return {"group_size": group, "per_row_layers": sorted(rows)}


def _write_folder(folder: Path, model: Any, source: _Source) -> None:
    """config.json, generation_config.json (decoders) and the tokenizer files."""
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(str(folder))
    generation = getattr(model, "generation_config", None)
    if source.task is None and generation is not None:
        generation.save_pretrained(str(folder))
    source.tokenizer.save_pretrained(str(folder))


def _probe(source: _Source) -> dict[str, Any]:
    """A fixed input for the closeness and reload checks: tensors by input name, and the text used."""
    import inspect

    import torch

    if source.task is None:
        ids = source.tokenizer(PROBE_TEXT, return_tensors="pt")["input_ids"]
        return {"text": PROBE_TEXT, "inputs": {"input_ids": ids}}
    from slm_eval.backends.encoder_heads import encode
    from slm_eval.optimize.encoder_parity import DEFAULT_REQUESTS

    task: Any = source.task
    request = DEFAULT_REQUESTS[task][0]
    encoded = encode(source.tokenizer, task, request, 128)
    accepted = inspect.signature(source.model.forward).parameters
    names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in accepted]
    inputs = {name: torch.from_numpy(array) for name, array in encoded.arrays(names).items()}
    text = request.text if request.context is None else f"{request.text} | {request.context}"
    return {"text": text, "inputs": inputs}


def _outputs(model: Any, probe: dict[str, Any]) -> Any:
    """The logits for the probe, concatenated along the last axis when the head has two (QA start and end)."""
    import torch

    output = model(**{name: tensor.to(model.device) for name, tensor in probe["inputs"].items()})
    names = [name for name in ("logits", "start_logits", "end_logits") if getattr(output, name, None) is not None]
    return torch.cat([getattr(output, name).float().cpu() for name in names], dim=-1)


def closeness(reference: Any, candidate: Any) -> tuple[float, float]:
    """Centred cosine of two logit tensors (each row minus its mean) and the share of rows with the same argmax."""
    import torch

    left = reference - reference.mean(dim=-1, keepdim=True)
    right = candidate - candidate.mean(dim=-1, keepdim=True)
    cosine = torch.nn.functional.cosine_similarity(left.flatten(), right.flatten(), dim=0)
    same = (reference.argmax(dim=-1) == candidate.argmax(dim=-1)).float().mean()
    return float(cosine), float(same)


def _tensor_bytes(model: Any) -> int:
    import torch

    seen: set[int] = set()
    total = 0
    for value in model.state_dict().values():
        if isinstance(value, torch.Tensor) and value.untyped_storage().data_ptr() not in seen:
            seen.add(value.untyped_storage().data_ptr())
            total += value.numel() * value.element_size()
    return total


def _weight_counts(model: Any, names: Sequence[str]) -> dict[str, Any]:
    """How many weights the quantized layers hold, out of all the model's parameters."""
    quantized = int(sum(model.get_submodule(name).weight.numel() for name in names))
    total = int(sum(parameter.numel() for parameter in model.parameters()))
    return {"quantized": quantized, "total_parameters": total, "share": quantized / total if total else 0.0}


def _weights_bytes(folder: Path) -> int:
    """Bytes of the variant's weight files (safetensors), measured on disk."""
    return sum(item.stat().st_size for item in folder.glob("*.safetensors"))


def _stored_as(method: str, weights: str, count: int) -> str:
    if method == BNB:
        return (
            f"bitsandbytes {weights} weights of {count} Linear layers in model.safetensors (transformers' own "
            "serialization, quantization_config in config.json); the rest float32; loads on CUDA only"
        )
    if method == DYNAMIC_INT8:
        return (
            f"int8 weights of {count} Linear layers (one scale per tensor) in {WEIGHTS_FILE}, rebuilt as PyTorch "
            "dynamic quantized Linear layers at load; activations are quantized at run time; the rest float32"
        )
    packing = (
        "int4 values packed two per byte, a float16 scale and an int8 zero point per group"
        if weights == "int4"
        else "int8 values, a scale per output row"
    )
    return f"torchao {weights} weights of {count} Linear layers ({packing}) in {WEIGHTS_FILE}; the rest float32"


def _quant_type(method: str, weights: str, layout: dict[str, Any]) -> str:
    if method == BNB:
        return "bitsandbytes NF4 (4-bit)" if weights == "nf4" else "bitsandbytes LLM.int8 (8-bit, outliers fp16)"
    if method == DYNAMIC_INT8:
        return "torch dynamic int8 (per-tensor weights, int8 activations at run time)"
    if weights == "int8":
        return "torchao int8 weight-only (per row)"
    rows = f", {len(layout['per_row_layers'])} layers per row" if layout.get("per_row_layers") else ""
    return f"torchao int4 weight-only (asymmetric, group {layout.get('group_size')}{rows})"
