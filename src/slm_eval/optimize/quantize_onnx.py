"""ONNX quantization methods: weight-only ``MatMulNBits`` (4 or 8 bits) and ONNX Runtime's dynamic int8.

``onnx-matmulnbits`` (:func:`quantize_matmulnbits`):

* decoders go through onnxruntime-genai's model builder (:func:`~slm_eval.optimize.onnx_decoder_export.
  export_decoder` at ``int4`` or ``int8`` for the CPU, the block size passed as the builder's ``block_size``
  option): round-to-nearest, symmetric, int8 activations (``accuracy_level`` 4). The builder needs PyTorch
  weights, so the source is a GGUF file (dequantized to float32 first) or a transformers folder, never an
  ONNX export. The builder quantizes the LM head too (standard for its int4 models: keeping SmolLM2-135M's
  tied 49152x576 head in float32 made its int4 export 200 MB instead of 86 MB); a tied embedding then shares
  the int4 matrix (``GatherBlockQuantized``), an untied or int8 one stays float32.
* encoders go through ONNX Runtime's ``MatMulNBitsQuantizer`` on the float32 head graph (an ONNX folder
  written by ``convert``, or a transformers folder exported first into a temporary folder): every
  constant-weight ``MatMul`` except the task head's final projection, symmetric, ``accuracy_level`` 4 (int8
  activations: on MiniLM 8-bit it ran 8x faster than float activations at a sentence-embedding cosine of
  0.9996 against 0.9999). Embeddings, normalisation, biases and ``Gemm`` nodes (the pooler of a
  classification head) stay float32.

``onnx-dynamic-int8`` (:func:`quantize_dynamic_int8`, encoders only): ``quantize_dynamic`` with int8 weights
per output channel and activations quantized at run time (``MatMulInteger``), on every constant-weight
``MatMul`` except the head's final projection, and on the word-embedding ``Gather``. The word-embedding table
is about half of a small encoder's weights (11.7M of MiniLM-L6's 22.7M): with it in float32 the MiniLM
variant was 0.65x of float32 (sentence-embedding cosine 0.9931), with it in int8 0.26x (cosine 0.9926), within
issue 6's 0.3x target; per-tensor instead of per-channel weights fell to a cosine of 0.960. Position and
token-type tables stay float32.

Every method checks that ONNX Runtime loads the variant, measures it against its original (the decoder or
encoder parity check, with the tolerances below; recorded, never failed on: the accuracy gate decides), and
for encoders measures the sentence-embedding cosine to the float32 export
(:mod:`slm_eval.optimize.embedding_check`).

Example::

    result = quantize_dynamic_int8(QuantizeJob(card, onnx_folder, "onnx", 8, output_dir, cache_dir))
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from slm_eval.backends.onnx_encoder import HEAD_FILE, MODEL_FILE, open_session, read_head_spec, write_head_spec
from slm_eval.errors import UserError, extra_install_hint, first_line, require_module
from slm_eval.logs import get_logger
from slm_eval.models.store import split_reference
from slm_eval.optimize.encoder_parity import QUANTIZED_TOLERANCE, ParityTolerance
from slm_eval.optimize.export_facts import op_counts, tool_versions
from slm_eval.optimize.quantize_methods import METHODS, QuantizeJob, QuantizeResult
from slm_eval.optimize.quantized_graph import (
    QUANTIZED_OPS,
    constant_weight_nodes,
    head_projection,
    kept_precision,
    matmul_counts,
    nbits_attributes,
    word_embedding,
)

log = get_logger(__name__)

TOOLS = ("onnxruntime", "onnx", "onnxruntime-genai", "onnxslim", "torch", "transformers")
DEFAULT_BLOCK_SIZE = 32
ACCURACY_LEVEL = 4  # int8 activations in MatMulNBits: the builder's CPU default, and much faster on CPUs
GENAI_CONFIG = "genai_config.json"
# Files of an encoder folder the quantized variant does not copy: the graph is rewritten, the store writes
# its own manifest, and head.json is written again with the quantization noted.
NOT_COPIED = frozenset({MODEL_FILE, f"{MODEL_FILE}.data", "manifest.json", HEAD_FILE})
# Encoder parity tolerances, from all-MiniLM-L6-v2's untrained heads (seed 0) against PyTorch. MatMulNBits
# int8 keeps encoder_parity.QUANTIZED_TOLERANCE (head cosine 0.999 on the qa and classify heads).
# Dynamic int8 also rounds every activation to uint8 with one scale per tensor: head cosines 0.986 (qa) and
# 0.989 (classify), while per-tensor instead of per-channel weights fell to about 0.90.
DYNAMIC_INT8_TOLERANCE = ParityTolerance(max_abs_diff=0.5, min_cosine=0.97, min_agreement=0.6)
# Int4 weights, block 32: head cosines 0.958 (qa) and 0.991 (classify).
INT4_TOLERANCE = ParityTolerance(max_abs_diff=1.0, min_cosine=0.9, min_agreement=0.6)
UNQUANTIZED_GGUF = frozenset({"ALL_F32", "MOSTLY_F16", "MOSTLY_BF16"})


def quantize_matmulnbits(job: QuantizeJob) -> QuantizeResult:
    """Weight-only ``MatMulNBits`` at ``job.bits`` (4 or 8), block ``job.block_size`` (default 32).

    Raises:
        UserError: unsupported bits or block size (the message lists the supported ones), an ONNX decoder
            export as the source (the builder needs the original weights), an unreadable source, or a
            variant ONNX Runtime cannot load.
        MissingDependencyError: onnx, onnxruntime (or, for decoders, onnxruntime-genai, torch, transformers)
            is missing.
    """
    method = METHODS["onnx-matmulnbits"]
    _check_bits(method.name, job.bits, method.bits)
    block = DEFAULT_BLOCK_SIZE if job.block_size is None else job.block_size
    if block not in method.block_sizes:
        allowed = ", ".join(map(str, method.block_sizes))
        raise UserError(f"--block-size {block} is not taken by {method.name}: choose one of {allowed}")
    if job.card.kind == "decoder":
        return _decoder_matmulnbits(job, block)
    if job.card.kind != "encoder":
        raise UserError(f"{method.name} quantizes decoder and encoder models, not {job.card.kind}s")
    label = f"MatMulNBits int{job.bits}, block {block}, symmetric"

    def run(source: Path, target: Path, graph: Any) -> dict[str, Any]:
        return _run_nbits(source, target, job.bits, block, head_projection(graph))

    return _quantize_encoder(job, label, run, QUANTIZED_TOLERANCE if job.bits == 8 else INT4_TOLERANCE)


def quantize_dynamic_int8(job: QuantizeJob) -> QuantizeResult:
    """ONNX Runtime's dynamic int8 quantization of an encoder (weights int8 per channel, activations at run time).

    Raises:
        UserError: bits other than 8, a block size, a decoder, an unreadable source, or a variant ONNX
            Runtime cannot load.
        MissingDependencyError: onnx or onnxruntime (torch and transformers for a transformers source) is
            missing.
    """
    method = METHODS["onnx-dynamic-int8"]
    _check_bits(method.name, job.bits, method.bits)
    if job.block_size is not None:
        raise UserError(f"{method.name} takes no block size (it quantizes per output channel); drop --block-size")
    if job.card.kind != "encoder":
        raise UserError(
            f"{method.name} quantizes encoders only; for the decoder {job.card.name} use --method onnx-matmulnbits"
        )
    label = "dynamic int8 (QInt8 weights per channel, uint8 activations)"
    return _quantize_encoder(job, label, _run_dynamic, DYNAMIC_INT8_TOLERANCE)


def _check_bits(name: str, bits: int, supported: tuple[int, ...]) -> None:
    if bits not in supported:
        raise UserError(f"--bits {bits} is not supported by {name}: choose one of {', '.join(map(str, supported))}")


# --- decoders -------------------------------------------------------------------------------------------


def _decoder_matmulnbits(job: QuantizeJob, block: int) -> QuantizeResult:
    from slm_eval.optimize.convert import PARITY_PROMPTS
    from slm_eval.optimize.decoder_parity import check_decoder_parity
    from slm_eval.optimize.onnx_decoder_export import export_decoder

    source = job.source
    if job.source_format == "onnx" or (source / GENAI_CONFIG).is_file():
        parent, _ = split_reference(job.card.name)
        raise UserError(
            f"{source} is an ONNX decoder export: onnxruntime-genai's model builder quantizes from the PyTorch "
            f"weights, not from ONNX; quantize the original model instead (slm-eval quantize --model {parent} "
            f"--format onnx --bits {job.bits})"
        )
    precision = f"int{job.bits}"
    requantized, source_type = gguf_quantization(source) if source.is_file() else (False, None)
    export = export_decoder(
        source, job.output_dir, precision, "cpu", cache_dir=job.cache_dir, extra_options={"block_size": str(block)}
    )
    parity = check_decoder_parity(source, job.output_dir, PARITY_PROMPTS, precision=precision)
    onnx = require_module("onnx", "ONNX quantization", extra_install_hint("onnx"))
    config = export.output_dir / GENAI_CONFIG
    model_file = job.output_dir / _decoder_model_file(config)
    graph = onnx.load(str(model_file), load_external_data=False).graph
    ops = op_counts(graph)
    details = export.to_dict()
    for key in ("tool_versions", "output_dir", "source", "op_counts"):
        details.pop(key, None)
    facts: dict[str, Any] = {
        "tool_versions": tool_versions(TOOLS),
        "tool": "onnxruntime-genai model builder",
        "bits": job.bits,
        **nbits_attributes(graph),
        "ops_after": ops,
        "matmul_counts": matmul_counts(ops),
        "quantized_matmuls": ops.get("MatMulNBits", 0),
        "export": details,
        "parity": parity.to_dict(),
    }
    if source_type is not None:
        facts["source_quantization"] = f"{source_type} (dequantized to float32 before quantizing)"
    return QuantizeResult(
        entry=None,
        quant_type=f"MatMulNBits {precision}, block {block}, symmetric",
        kept_precision=kept_precision(graph),
        requantized=requantized,
        facts=facts,
    )


def _decoder_model_file(config: Path) -> str:
    import json

    document = json.loads(config.read_text(encoding="utf-8"))
    return str(document["model"]["decoder"].get("filename", MODEL_FILE))


def gguf_quantization(path: Path) -> tuple[bool, str | None]:
    """Whether a GGUF file's weights are quantized, and its file type (``MOSTLY_Q4_1``); unknown counts as yes."""
    try:
        import gguf

        reader = gguf.GGUFReader(str(path))
        field = reader.fields.get("general.file_type")
        if field is None:
            return True, "unknown GGUF file type"
        name = gguf.LlamaFileType(int(field.parts[field.data[0]][0])).name
    except (ImportError, OSError, ValueError, KeyError, IndexError) as exc:
        return True, f"unknown GGUF file type ({first_line(exc)})"
    return name not in UNQUANTIZED_GGUF, name


# --- encoders -------------------------------------------------------------------------------------------

GraphQuantizer = Callable[[Path, Path, Any], dict[str, Any]]


def _quantize_encoder(job: QuantizeJob, label: str, run: GraphQuantizer, tolerance: ParityTolerance) -> QuantizeResult:
    """Quantize an encoder head graph with ``run`` into ``job.output_dir``, check it loads, and measure it."""
    onnx = require_module("onnx", "ONNX quantization", extra_install_hint("onnx"))
    require_module("onnxruntime", "ONNX quantization", extra_install_hint("onnx"))
    job.cache_dir.mkdir(parents=True, exist_ok=True)
    job.output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="quantize-onnx-", dir=job.cache_dir) as scratch:
        fp32 = _fp32_encoder(job, Path(scratch))
        fp32_dir = fp32.folder
        spec = read_head_spec(fp32_dir)
        source_model = fp32_dir / MODEL_FILE
        target_model = job.output_dir / MODEL_FILE
        before = onnx.load(str(source_model), load_external_data=False).graph
        already = sorted(QUANTIZED_OPS & set(op_counts(before)))
        if already and not job.allow_requantize:
            raise UserError(
                f"{job.source} is already quantized ({', '.join(already)} nodes): quantize its float32 ONNX export "
                "instead, or pass --allow-requantize to quantize what is still float (lossy)"
            )
        with _quiet_quantizer():
            try:
                details = run(source_model, target_model, before)
            except (ValueError, RuntimeError, KeyError, AssertionError, NotImplementedError) as exc:
                raise UserError(
                    f"ONNX Runtime's quantizer failed on {source_model} ({type(exc).__name__}: {first_line(exc)})"
                ) from exc
        if not details.get("quantized_matmuls"):
            raise UserError(f"{job.source} has no float MatMul weights left to quantize; nothing was stored")
        _copy_companions(fp32_dir, job.output_dir)
        source_facts = {**spec.source, "quantization": label}
        write_head_spec(job.output_dir, dataclasses.replace(spec, source=source_facts))
        try:
            open_session(target_model, 1, "cpu")
        except UserError as exc:
            raise UserError(f"ONNX Runtime cannot load the quantized model ({exc}); nothing was stored") from exc
        after = onnx.load(str(target_model), load_external_data=False).graph
        embedding = _embedding_facts(fp32_dir, job.output_dir)
        fp32_bytes, quantized_bytes = source_model.stat().st_size, target_model.stat().st_size
    parity = _encoder_parity(job, fp32.reference, fp32.seed, tolerance)
    ops_before, ops_after = op_counts(before), op_counts(after)
    facts: dict[str, Any] = {
        "tool_versions": tool_versions(TOOLS),
        "tool": "onnxruntime.quantization",
        "bits": job.bits,
        **details,
        "encoder_task": spec.task,
        "fp32_source": "transformers folder, exported to ONNX first" if fp32.exported else "ONNX folder",
        "parity_reference": str(fp32.reference) if fp32.reference else None,
        "ops_before": ops_before,
        "ops_after": ops_after,
        "matmul_counts": {"before": matmul_counts(ops_before), "after": matmul_counts(ops_after)},
        "model_bytes": {
            "fp32": fp32_bytes,
            "quantized": quantized_bytes,
            "ratio_to_fp32": quantized_bytes / fp32_bytes,
            "label": "measured",
        },
        "embedding_cosine": embedding,
        "parity": parity,
    }
    log.info(
        "quantized %s (%s): %.1f MB -> %.1f MB (%.2fx), embedding cosine %s",
        job.card.name,
        label,
        fp32_bytes / 1e6,
        quantized_bytes / 1e6,
        quantized_bytes / fp32_bytes,
        embedding.get("min", "not measured"),
    )
    return QuantizeResult(
        entry=None, quant_type=label, kept_precision=kept_precision(after), requantized=bool(already), facts=facts
    )


@dataclasses.dataclass(frozen=True)
class _Fp32Encoder:
    """The float32 ONNX encoder a quantization starts from.

    Attributes:
        folder: the ONNX folder (``model.onnx``, ``head.json``, tokenizer).
        reference: the PyTorch original to check parity against; ``None`` when it is not on this machine.
        seed: the seed its untrained head was initialised from.
        exported: true when the folder was exported from a transformers source just now.
    """

    folder: Path
    reference: Path | None
    seed: int
    exported: bool


def _fp32_encoder(job: QuantizeJob, scratch: Path) -> _Fp32Encoder:
    """The float32 ONNX encoder to quantize: the source itself, or its export into ``scratch``."""
    source = job.source
    if source.is_file():
        raise UserError(f"{source} is a file; an encoder is quantized from a transformers folder or its ONNX export")
    if not source.is_dir():
        raise UserError(f"model source {source} does not exist")
    if (source / GENAI_CONFIG).is_file():
        raise UserError(f"{source} is an ONNX decoder export, not an encoder; quantize the original model instead")
    if job.source_format == "onnx" or (source / HEAD_FILE).is_file():
        spec = read_head_spec(source)
        if spec.task != job.encoder_task:
            raise UserError(
                f"{source} holds a {spec.task} head, not {job.encoder_task}: quantize it with --task {spec.task}, "
                f"or convert the model with --task {job.encoder_task} first"
            )
        path = spec.source.get("path")
        original = Path(str(path)) if path else None
        seed = spec.source.get("seed", job.seed)
        reference = original if original is not None and original.is_dir() else None
        return _Fp32Encoder(source, reference, seed if isinstance(seed, int) else job.seed, exported=False)
    from slm_eval.backends.base import EncoderTask
    from slm_eval.backends.encoder_heads import ENCODER_TASKS
    from slm_eval.optimize.onnx_encoder_export import export_encoder

    if job.encoder_task not in ENCODER_TASKS:
        raise UserError(f"unknown encoder task '{job.encoder_task}': choose one of {', '.join(ENCODER_TASKS)}")
    task: EncoderTask = job.encoder_task
    folder = scratch / "fp32"
    log.info("exporting %s with its %s head to float32 ONNX before quantizing", job.card.name, task)
    export_encoder(job.card, source, folder, task, seed=job.seed)
    return _Fp32Encoder(folder, source, job.seed, exported=True)


def _embedding_facts(fp32_dir: Path, quantized_dir: Path) -> dict[str, Any]:
    """The sentence-embedding cosines of the variant against the float32 export; skipped (with why) when the
    graph has no hidden state to read (a classification head over an encoder without LayerNormalization)."""
    from slm_eval.optimize.embedding_check import DEFAULT_TEXTS, embedding_cosines

    against = "the float32 ONNX export: mean-pooled last hidden state, fixed border-control sentences"
    try:
        cosines = embedding_cosines(fp32_dir, quantized_dir, DEFAULT_TEXTS)
    except UserError as exc:
        return {"skipped": str(exc), "against": against}
    return {
        "min": min(cosines),
        "mean": sum(cosines) / len(cosines),
        "texts": len(cosines),
        "against": against,
        "label": "measured",
    }


def _encoder_parity(job: QuantizeJob, reference: Path | None, seed: int, tolerance: ParityTolerance) -> dict[str, Any]:
    """The encoder parity check against the PyTorch original, as facts; skipped (with why) when it cannot run."""
    from slm_eval.optimize.encoder_parity import check_encoder_parity

    if reference is None:
        return {"skipped": "the PyTorch original named in head.json is not on this machine", "label": "measured"}
    try:
        report = check_encoder_parity(job.card, reference, job.output_dir, seed=seed, tolerance=tolerance)
    except UserError as exc:
        return {"skipped": f"the PyTorch original could not be compared ({exc})", "label": "measured"}
    facts: dict[str, Any] = _jsonable(report.to_dict())
    return facts


def _copy_companions(source: Path, target: Path) -> None:
    """Copy the tokenizer, ``config.json`` and any other file of the encoder folder except the graph."""
    for item in sorted(source.iterdir()):
        if item.name in NOT_COPIED:
            continue
        if item.is_dir():
            shutil.copytree(item, target / item.name, dirs_exist_ok=True)
        elif item.is_file():
            shutil.copy2(item, target / item.name)


def _run_nbits(source: Path, target: Path, bits: int, block: int, head: str | None) -> dict[str, Any]:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    config = DefaultWeightOnlyQuantConfig(
        block_size=block, is_symmetric=True, accuracy_level=ACCURACY_LEVEL, op_types_to_quantize=("MatMul",), bits=bits
    )
    excluded = [head] if head else []
    quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), nodes_to_exclude=excluded, algo_config=config)
    quantizer.process()
    quantizer.model.save_model_to_file(str(target), use_external_data_format=False)
    graph = onnx.load(str(target), load_external_data=False).graph
    return {
        **nbits_attributes(graph),
        "op_types_quantized": ["MatMul"],
        "excluded_nodes": excluded,
        "quantized_matmuls": op_counts(graph).get("MatMulNBits", 0),
    }


def _run_dynamic(source: Path, target: Path, graph: Any) -> dict[str, Any]:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    head = head_projection(graph)
    matmuls = [name for name in constant_weight_nodes(graph, ("MatMul",)) if name != head]
    embedding = word_embedding(graph)
    nodes = matmuls + ([embedding[0]] if embedding else [])
    quantize_dynamic(
        source,
        target,
        op_types_to_quantize=["MatMul", "Gather"],
        per_channel=True,
        reduce_range=False,
        weight_type=QuantType.QInt8,
        nodes_to_quantize=nodes,
    )
    facts: dict[str, Any] = {
        "per_channel": True,
        "weight_type": "QInt8",
        "activations": "uint8, quantized at run time",
        "op_types_quantized": ["MatMul", "Gather"],
        "quantized_matmuls": op_counts(onnx.load(str(target), load_external_data=False).graph).get("MatMulInteger", 0),
        "excluded_nodes": [head] if head else [],
        "word_embedding_quantized": embedding[0] if embedding else None,
    }
    if embedding:
        facts["word_embedding_share_of_weights"] = embedding[1]
    return facts


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """Hush ONNX Runtime's quantizers (they log each node at INFO on the root logger) and undo their basicConfig."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        # Imported first: its import calls logging.basicConfig(level=INFO), which would undo the level below.
        importlib.import_module("onnxruntime.quantization.matmul_nbits_quantizer")
        root.setLevel(logging.ERROR)
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value
