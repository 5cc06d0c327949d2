"""Quantization methods: what each one makes, from what, on which hardware, and where its code lives.

A method turns a model (its weights located on disk) into a smaller variant written into a folder the
caller gives. The catalogue below names every method by format; each method's code lives in its own
module and is imported only when it runs, so ``slm-eval quantize --check-only`` stays light.

Methods per format:

- ``onnx``: ``onnx-dynamic-int8`` (onnxruntime ``quantize_dynamic``), ``onnx-matmulnbits`` (4- or 8-bit
  weight-only ``MatMulNBits``: onnxruntime-genai's builder for decoders, onnxruntime's n-bit quantizer
  for encoders, block size configurable);
- ``pytorch``: ``torch-dynamic-int8`` (8-bit dynamic quantization of linear layers on CPU), ``torchao``
  (4- and 8-bit weight-only on CPU, torchao), ``bnb`` (bitsandbytes NF4 / LLM.int8, CUDA only);
- ``gguf``: ``llama-quantize`` (llama.cpp's quantizer through llama-cpp-python: Q8_0, Q4_K_M, Q4_0, ...),
  from a GGUF file, or from a transformers model through llama.cpp's own HF-to-GGUF converter first.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, cast

from slm_eval.errors import UserError
from slm_eval.models.registry import ModelCard

QuantFormat = Literal["onnx", "pytorch", "gguf"]
QUANT_FORMATS: tuple[QuantFormat, ...] = ("onnx", "pytorch", "gguf")
# The weight format a variant of each quantization format is stored in.
STORED_FORMAT: Mapping[QuantFormat, str] = {"onnx": "onnx", "pytorch": "transformers", "gguf": "gguf"}


@dataclass(frozen=True)
class QuantizeJob:
    """One quantization to run.

    Attributes:
        card: the model (or variant) being quantized.
        source: its weights on disk: a GGUF file, a transformers folder or an ONNX folder.
        source_format: ``gguf``, ``transformers`` or ``onnx``.
        bits: 4 or 8.
        output_dir: an empty folder to write the variant's files into (the caller stores and renames it).
        cache_dir: a cache the method may use for intermediate files.
        block_size: weight-only block size, when the method takes one (``None``: the method's default).
        quant_type: a method's own name for what to make (``Q4_K_M`` for llama.cpp); ``None``: its default.
        allow_requantize: permit quantizing weights that are already quantized (lossy; recorded).
        encoder_task: for encoders, the task head to keep (as in convert).
        seed: the seed of a randomly initialised encoder head.
    """

    card: ModelCard
    source: Path
    source_format: str
    bits: int
    output_dir: Path
    cache_dir: Path
    block_size: int | None = None
    quant_type: str | None = None
    allow_requantize: bool = False
    encoder_task: str = "qa"
    seed: int = 0


@dataclass(frozen=True)
class QuantizeResult:
    """What a method wrote.

    Attributes:
        entry: the file a backend loads, when the variant is one file (a GGUF); ``None`` for a folder.
        quant_type: what was made, in the tool's own words (``Q4_K_M``, ``MatMulNBits int4 block 32``).
        kept_precision: layers left in higher precision, e.g. embeddings, the output head, norms.
        requantized: true when the source weights were already quantized.
        facts: anything else worth a manifest line (tool versions, options, per-layer counts).
    """

    entry: str | None
    quant_type: str
    kept_precision: tuple[str, ...] = ()
    requantized: bool = False
    facts: Mapping[str, Any] = field(default_factory=dict)


class QuantizeRunner(Protocol):
    """A method's ``run(job) -> QuantizeResult``."""

    def __call__(self, job: QuantizeJob) -> QuantizeResult:
        """Write the quantized variant into ``job.output_dir``.

        Raises:
            UserError: the model cannot be quantized this way (the message says why and what to do).
            MissingDependencyError: the method's package is not installed.
        """
        ...


@dataclass(frozen=True)
class QuantizeMethod:
    """One way to quantize.

    Attributes:
        name: the name used with ``--method``.
        format: the format it produces.
        bits: the bit widths it supports.
        kinds: the model kinds it handles (``decoder``, ``encoder``).
        sources: the weight formats it reads (``gguf``, ``transformers``, ``onnx``).
        runner: ``"module:function"`` of its run function.
        requires: import names of the packages it needs.
        install: the command that installs them.
        needs_cuda: true when it runs only with a CUDA GPU.
        cpu_alternative: the method to name instead on a CPU-only machine.
        block_sizes: the block sizes it accepts (empty: it takes none).
        description: one line for help texts and ``--check-only``.
    """

    name: str
    format: QuantFormat
    bits: tuple[int, ...]
    kinds: tuple[str, ...]
    sources: tuple[str, ...]
    runner: str
    requires: tuple[str, ...]
    install: str
    needs_cuda: bool = False
    cpu_alternative: str | None = None
    block_sizes: tuple[int, ...] = ()
    description: str = ""

    def missing_packages(self) -> list[str]:
        """Packages this method needs that are not installed (checked without importing them)."""
        import importlib.util

        return [module for module in self.requires if importlib.util.find_spec(module) is None]

    def load_runner(self) -> QuantizeRunner:
        """The method's run function, imported now."""
        module_name, _, attribute = self.runner.partition(":")
        return cast(QuantizeRunner, getattr(importlib.import_module(module_name), attribute))


METHODS: dict[str, QuantizeMethod] = {
    method.name: method
    for method in (
        QuantizeMethod(
            name="onnx-matmulnbits",
            format="onnx",
            bits=(4, 8),
            kinds=("decoder", "encoder"),
            sources=("gguf", "transformers", "onnx"),
            runner="slm_eval.optimize.quantize_onnx:quantize_matmulnbits",
            requires=("onnxruntime", "onnx"),
            install="pip install 'slm-eval[onnx]'",
            block_sizes=(16, 32, 64, 128, 256),
            description="weight-only MatMulNBits (onnxruntime-genai's builder for decoders, "
            "onnxruntime's n-bit quantizer for encoders)",
        ),
        QuantizeMethod(
            name="onnx-dynamic-int8",
            format="onnx",
            bits=(8,),
            kinds=("encoder",),
            sources=("transformers", "onnx"),
            runner="slm_eval.optimize.quantize_onnx:quantize_dynamic_int8",
            requires=("onnxruntime", "onnx"),
            install="pip install 'slm-eval[onnx]'",
            description="onnxruntime quantize_dynamic: int8 weights, activations quantized at run time",
        ),
        QuantizeMethod(
            name="torch-dynamic-int8",
            format="pytorch",
            bits=(8,),
            kinds=("decoder", "encoder"),
            sources=("gguf", "transformers"),
            runner="slm_eval.optimize.quantize_torch:quantize_dynamic_int8",
            requires=("torch", "transformers"),
            install="pip install 'slm-eval[torch]'",
            description="PyTorch dynamic quantization of linear layers to int8 (CPU)",
        ),
        QuantizeMethod(
            name="torchao",
            format="pytorch",
            bits=(4, 8),
            kinds=("decoder", "encoder"),
            sources=("gguf", "transformers"),
            runner="slm_eval.optimize.quantize_torch:quantize_torchao",
            requires=("torch", "transformers", "torchao"),
            install="pip install 'slm-eval[quantize]'",
            block_sizes=(16, 32, 64, 128, 256),
            description="torchao weight-only int8 (per row) or int4 (per group of 32; --block-size) (runs on CPU)",
        ),
        QuantizeMethod(
            name="bnb",
            format="pytorch",
            bits=(4, 8),
            kinds=("decoder", "encoder"),
            sources=("gguf", "transformers"),
            runner="slm_eval.optimize.quantize_torch:quantize_bitsandbytes",
            requires=("torch", "transformers", "bitsandbytes"),
            install="pip install bitsandbytes",
            needs_cuda=True,
            cpu_alternative="torchao",
            description="bitsandbytes NF4 (4-bit) or LLM.int8 (8-bit); needs a CUDA GPU",
        ),
        QuantizeMethod(
            name="llama-quantize",
            format="gguf",
            bits=(4, 8),
            kinds=("decoder",),
            sources=("gguf", "transformers"),
            runner="slm_eval.optimize.quantize_gguf:quantize_gguf",
            requires=("llama_cpp", "gguf"),
            install="pip install 'slm-eval[llama]'",
            description="llama.cpp's quantizer (Q8_0, Q4_K_M, Q4_0, ...), after llama.cpp's HF-to-GGUF "
            "converter for a transformers model",
        ),
    )
}
# The method chosen when --method is not given: the best available for the format (CUDA first when present).
DEFAULT_METHODS: Mapping[QuantFormat, tuple[str, ...]] = {
    "onnx": ("onnx-matmulnbits", "onnx-dynamic-int8"),
    "pytorch": ("bnb", "torchao", "torch-dynamic-int8"),
    "gguf": ("llama-quantize",),
}


def parse_format(value: str) -> QuantFormat:
    """The quantization format named ``value``.

    Raises:
        UserError: an unknown format.
    """
    name = value.strip().lower()
    for fmt in QUANT_FORMATS:
        if name == fmt:
            return fmt
    raise UserError(f"unknown --format '{value}': choose one of {', '.join(QUANT_FORMATS)}")


def choose_method(
    fmt: QuantFormat,
    requested: str | None,
    bits: int,
    kind: str,
    source_format: str,
    cuda_available: Callable[[], bool],
) -> QuantizeMethod:
    """The method to use: the one asked for, checked, or the best one for the format, bits and hardware.

    Raises:
        UserError: an unknown method, a method of another format, bits it does not support (the message
            lists the supported ones), a model kind or source it cannot read, or a CUDA-only method on a
            CPU machine (the message names the CPU alternative).
    """
    if requested is not None:
        method = METHODS.get(requested.strip().lower())
        if method is None:
            names = ", ".join(m.name for m in METHODS.values() if m.format == fmt)
            raise UserError(f"unknown --method '{requested}': for {fmt} choose one of {names}")
        if method.format != fmt:
            raise UserError(
                f"--method {method.name} makes {method.format} variants, not {fmt}; pass --format {method.format}"
            )
        _check_fit(method, bits, kind, source_format)
        if method.needs_cuda and not cuda_available():
            alternative = f"; on CPU use --method {method.cpu_alternative}" if method.cpu_alternative else ""
            raise UserError(f"--method {method.name} needs a CUDA GPU, and none is available here{alternative}")
        return method
    supported = sorted({b for name in DEFAULT_METHODS[fmt] for b in METHODS[name].bits})
    if bits not in supported:
        raise UserError(f"--bits {bits} is not supported for {fmt}: choose one of {', '.join(map(str, supported))}")
    reasons = []
    for name in DEFAULT_METHODS[fmt]:
        method = METHODS[name]
        if method.needs_cuda and not cuda_available():
            continue
        try:
            _check_fit(method, bits, kind, source_format)
        except UserError as exc:
            reasons.append(str(exc))
            continue
        return method
    raise UserError(reasons[0] if reasons else f"no {fmt} method can quantize this model on this machine")


def _check_fit(method: QuantizeMethod, bits: int, kind: str, source_format: str) -> None:
    if bits not in method.bits:
        raise UserError(
            f"--bits {bits} is not supported by {method.name}: choose one of {', '.join(map(str, method.bits))}"
        )
    if kind not in method.kinds:
        raise UserError(f"{method.name} quantizes {' and '.join(method.kinds)} models, not {kind}s")
    if source_format not in method.sources:
        raise UserError(
            f"{method.name} reads {', '.join(method.sources)} weights, not {source_format}; quantize the original "
            "model instead of this variant"
        )
