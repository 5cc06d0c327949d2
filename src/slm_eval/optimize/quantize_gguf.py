"""GGUF variants with llama.cpp's own quantizer (``llama_model_quantize`` through llama-cpp-python).

Sources:

* a GGUF file: quantized as it is. When its weights are already quantized (the bundled SmolLM2 is Q4_1,
  Gemma 3 is Q4_K_M), llama.cpp dequantizes each tensor and quantizes it again, which compounds the two
  rounding errors: that is refused unless the job allows requantizing, and then recorded (``requantized``).
* a transformers folder: first converted to an F16 GGUF by llama.cpp's own ``convert_hf_to_gguf.py``
  (see :mod:`slm_eval.optimize.gguf_converter`) in a scratch folder of the cache, then quantized.

Types: ``--bits 8`` makes ``Q8_0``; ``--bits 4`` makes ``Q4_K_M`` unless ``quant_type`` names another 4-bit
type. llama.cpp decides per tensor what it stores: with ``Q4_K_M`` it keeps some tensors at higher precision
(``attn_v`` and half of the ``ffn_down`` layers in Q6_K, the output head in Q6_K), norms stay F32, and a
tensor whose rows are not a multiple of 256 (the K-quant super-block) gets a legacy fallback type (SmolLM2's
576-wide rows become Q5_0). The output file's tensor types are read back and summarised in
``facts["tensor_types"]`` and ``facts["groups"]``; the groups stored above the target type are listed in
``kept_precision``.

llama.cpp's log lines go to the debug log (the log file, or the console with ``--debug``), not to stderr.

Example::

    python run.py quantize --model smollm2-135m-instruct --format gguf --bits 4 --allow-requantize
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slm_eval.devices.cpus import usable_cpu_count
from slm_eval.errors import UserError, extra_install_hint, first_line, require_module
from slm_eval.logs import get_logger
from slm_eval.optimize.quantize_methods import QuantizeJob, QuantizeResult

log = get_logger(__name__)
native_log = get_logger("slm_eval.llama_cpp")

# The types each bit width may make, the default first; each is llama.cpp's LLAMA_FTYPE_MOSTLY_<type>.
QUANT_TYPES: Mapping[int, tuple[str, ...]] = {
    8: ("Q8_0",),
    4: ("Q4_K_M", "Q4_K_S", "Q4_0", "Q4_1", "IQ4_NL", "IQ4_XS"),
}
# Types of other widths, named so a mismatch says what the type is.
OTHER_TYPES: Mapping[str, int] = {
    "Q6_K": 6,
    "Q5_K_M": 5,
    "Q5_K_S": 5,
    "Q5_0": 5,
    "Q5_1": 5,
    "Q3_K_L": 3,
    "Q3_K_M": 3,
    "Q3_K_S": 3,
    "Q2_K": 2,
    "F16": 16,
    "BF16": 16,
}
# The tensor type a file type is named after (what most large matrices become).
_BASE_TYPE = {"Q4_K_M": "Q4_K", "Q4_K_S": "Q4_K", "Q5_K_M": "Q5_K", "Q5_K_S": "Q5_K"}
FLOAT_TYPES = frozenset({"F32", "F16", "BF16", "F64"})
K_BLOCK = 256  # a K-quant super-block: a row length that is not a multiple of it gets a fallback type
_LAYER = re.compile(r"^blk\.\d+\.")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class GGUFSummary:
    """What a GGUF file holds, read from its header and tensor table (no weights are read).

    Attributes:
        file_type: ``general.file_type`` as llama.cpp names it (``Q4_1``, ``Q4_K_M``, ``F16``), if written.
        tensor_types: tensors per type, most frequent first.
        groups: per tensor group (the name without ``blk.N.``; 1-D norms as ``norms``), tensors per type.
        quantized: true when any tensor is stored in a quantized type.
        architecture: ``general.architecture``.
        fallback_tensors: tensors whose row length is not a multiple of 256 (no K-quant possible for them).
    """

    file_type: str | None
    tensor_types: dict[str, int]
    groups: dict[str, dict[str, int]]
    quantized: bool
    architecture: str | None
    fallback_tensors: int


def _gguf() -> Any:
    return require_module("gguf", "reading GGUF tensor types", extra_install_hint("torch"))


def _field(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    return None if field is None else field.contents()


def file_type_name(value: int) -> str:
    """llama.cpp's name for a ``general.file_type`` value: 3 -> ``Q4_1``, 15 -> ``Q4_K_M``, 0 -> ``F32``."""
    gguf = _gguf()
    try:
        name = str(gguf.LlamaFileType(value).name)
    except ValueError:
        return f"unknown ({value})"
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


def _group(name: str, dims: int) -> str:
    return "norms" if dims == 1 and "norm" in name else _LAYER.sub("", name)


def inspect_gguf(path: Path) -> GGUFSummary:
    """Read a GGUF file's file type and tensor types.

    Raises:
        UserError: the file is missing, not GGUF, truncated or corrupt.
    """
    from slm_eval.backends.llamacpp import check_gguf_file

    check_gguf_file(path)
    gguf = _gguf()
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError, IndexError, KeyError, EOFError) as exc:
        raise UserError(f"{path} is not a readable GGUF file: it is truncated or corrupt ({first_line(exc)})") from exc
    types: Counter[str] = Counter()
    groups: dict[str, Counter[str]] = {}
    fallback = 0
    for tensor in reader.tensors:
        kind = str(tensor.tensor_type.name)
        dims = len(tensor.shape)
        types[kind] += 1
        groups.setdefault(_group(str(tensor.name), dims), Counter())[kind] += 1
        if dims >= 2 and int(tensor.shape[0]) % K_BLOCK != 0:
            fallback += 1
    raw_type = _field(reader, "general.file_type")
    architecture = _field(reader, "general.architecture")
    return GGUFSummary(
        file_type=file_type_name(int(raw_type)) if raw_type is not None else None,
        tensor_types=dict(types.most_common()),
        groups={group: dict(counts.most_common()) for group, counts in sorted(groups.items())},
        quantized=any(kind not in FLOAT_TYPES for kind in types),
        architecture=str(architecture) if architecture is not None else None,
        fallback_tensors=fallback,
    )


def choose_type(bits: int, requested: str | None) -> str:
    """The llama.cpp type to make: ``requested`` (any case) when it is a ``bits``-bit type, else the default.

    Raises:
        UserError: an unknown type, or one of another bit width (the message lists the types for ``bits``).
    """
    allowed = QUANT_TYPES.get(bits)
    if allowed is None:
        raise UserError(f"--bits {bits} is not supported by llama-quantize: choose one of 4, 8")
    if requested is None:
        return allowed[0]
    name = requested.strip().upper()
    if name in allowed:
        return name
    choices = ", ".join(allowed)
    width = next((b for b, names in QUANT_TYPES.items() if name in names), OTHER_TYPES.get(name))
    if width is None:
        raise UserError(f"unknown GGUF type '{requested}': for --bits {bits} choose one of {choices}")
    raise UserError(f"{name} is a {width}-bit type, not {bits}-bit: for --bits {bits} choose one of {choices}")


def bits_per_weight(tensor_type: str) -> float:
    """Storage bits per weight of a ggml tensor type (Q8_0: 8.5, Q4_K: 4.5, F32: 32)."""
    gguf = _gguf()
    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[tensor_type]]
    return float(size) * 8.0 / float(block)


def kept_precision(summary: GGUFSummary, quant_type: str) -> tuple[str, ...]:
    """The tensor groups stored, in whole or in part, in a type wider than ``quant_type``'s base type."""
    limit = bits_per_weight(_BASE_TYPE.get(quant_type, quant_type))
    kept = []
    for group, counts in summary.groups.items():
        wider = sorted((kind for kind in counts if bits_per_weight(kind) > limit), key=bits_per_weight, reverse=True)
        if wider:
            total = sum(counts.values())
            parts = ", ".join(f"{kind} x{counts[kind]}" if counts[kind] != total else kind for kind in wider)
            kept.append(f"{group}: {parts}" if len(counts) > 1 else f"{group}: {wider[0]}")
    return tuple(kept)


def run_quantize(source: Path, output: Path, quant_type: str, allow_requantize: bool, threads: int) -> None:
    """Quantize ``source`` into ``output`` with ``llama_model_quantize``; a partial output is removed.

    Raises:
        UserError: llama.cpp failed (the message is llama.cpp's own reason, one line).
    """
    llama_cpp = require_module("llama_cpp", "llama-quantize", extra_install_hint("llama"))
    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant_type}", None)
    if ftype is None:
        raise UserError(f"this llama-cpp-python has no {quant_type} quantization; upgrade it or choose another type")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = allow_requantize
    params.nthread = threads
    from slm_eval.backends.llamacpp import NATIVE_LOG

    NATIVE_LOG.install()  # llama.cpp's log to the debug log; its last lines explain a failure
    NATIVE_LOG.clear()
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(output).encode(), ctypes.byref(params))
    if status != 0:
        output.unlink(missing_ok=True)
        reason = NATIVE_LOG.reason().removeprefix("llama_model_quantize: ")
        raise UserError(f"llama.cpp could not quantize {source.name} to {quant_type}: {reason}")


def output_name(model: str, quant_type: str) -> str:
    """The variant's file name: ``<model>-<type>.gguf``, e.g. ``smollm2-135m-instruct-Q4_K_M.gguf``."""
    return f"{_SAFE_NAME.sub('-', model).strip('-') or 'model'}-{quant_type}.gguf"


def _versions(conversion: Mapping[str, Any] | None) -> dict[str, str]:
    versions = {}
    if conversion is not None:
        versions["convert_hf_to_gguf"] = f"llama.cpp@{conversion.get('llama_cpp_commit') or 'unknown'}"
    for distribution in ("llama-cpp-python", "gguf"):
        try:
            versions[distribution] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _requantize_check(job: QuantizeJob, summary: GGUFSummary, quant_type: str) -> bool:
    """True when the source is quantized and requantizing is allowed; refuses when it is not allowed."""
    if not summary.quantized:
        return False
    stored = summary.file_type or "/".join(kind for kind in summary.tensor_types if kind not in FLOAT_TYPES)
    if not job.allow_requantize:
        raise UserError(
            f"{job.source.name} is already quantized ({stored}); requantizing to {quant_type} is lossy (two "
            "rounding errors): pass --allow-requantize to do it anyway, or quantize the unquantized original"
        )
    log.warning(
        "requantizing %s (%s) to %s: the result cannot be more accurate than the %s source",
        job.source.name,
        stored,
        quant_type,
        stored,
    )
    return True


def quantize_gguf(job: QuantizeJob) -> QuantizeResult:
    """Write ``<model>-<type>.gguf`` into ``job.output_dir`` with llama.cpp's quantizer.

    Raises:
        UserError: a type that does not match the bits, an already quantized source without
            ``allow_requantize``, an unreadable source, a converter or quantizer failure.
        MissingDependencyError: llama-cpp-python or gguf is not installed.
    """
    quant_type = choose_type(job.bits, job.quant_type)
    require_module("llama_cpp", "llama-quantize", extra_install_hint("llama"))
    _gguf()  # checked before any work: the source and the output are read with it
    threads = usable_cpu_count()
    output = job.output_dir / output_name(job.card.name, quant_type)
    job.output_dir.mkdir(parents=True, exist_ok=True)
    facts: dict[str, Any] = {"nthread": threads}
    scratch: Path | None = None
    try:
        if job.source_format == "gguf":
            source = job.source
        elif job.source_format == "transformers":
            from slm_eval.optimize.gguf_converter import convert_to_gguf, find_converter

            converter = find_converter(job.cache_dir)
            job.cache_dir.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix="gguf-convert-", dir=job.cache_dir))
            source = scratch / f"{output_name(job.card.name, 'F16')}"
            facts["conversion"] = convert_to_gguf(converter, job.source, source)
        else:
            raise UserError(f"llama-quantize reads GGUF files and transformers folders, not {job.source_format}")
        before = inspect_gguf(source)
        requantized = _requantize_check(job, before, quant_type)
        log.info("quantizing %s (%s) to %s with %d threads", source.name, before.file_type, quant_type, threads)
        started = time.perf_counter()
        run_quantize(source, output, quant_type, requantized, threads)
        seconds = time.perf_counter() - started
        source_bytes = source.stat().st_size
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    after = inspect_gguf(output)
    facts.update(
        {
            "source_file_type": before.file_type,
            "source_tensor_types": before.tensor_types,
            "source_bytes": source_bytes,
            "architecture": after.architecture,
            "file_type": after.file_type,
            "bytes": output.stat().st_size,
            "tensor_types": after.tensor_types,
            "groups": after.groups,
            "quantize_seconds": {"value": round(seconds, 3), "unit": "s", "label": "measured"},
            "tool_versions": _versions(facts.get("conversion")),
        }
    )
    if quant_type.startswith(("Q4_K", "Q5_K", "Q6_K", "IQ4_XS")) and after.fallback_tensors:
        facts["k_quant_fallback_tensors"] = after.fallback_tensors
        facts["note"] = (
            f"{after.fallback_tensors} matrices have rows that are not a multiple of {K_BLOCK}: llama.cpp stored "
            "them in a legacy type instead of a K-quant"
        )
    return QuantizeResult(
        entry=output.name,
        quant_type=quant_type,
        kept_precision=kept_precision(after, quant_type),
        requantized=requantized,
        facts=facts,
    )
