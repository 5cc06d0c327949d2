"""Export a decoder to ONNX with onnxruntime-genai's model builder, ready for the onnx backend.

The source is a transformers folder (``config.json`` + safetensors + tokenizer) or a GGUF file. A GGUF file
is first dequantized by transformers to a float32 PyTorch model and saved as a temporary transformers
folder: the builder's own GGUF reader takes only F16/F32 files, while the bundled models are Q4/Q5.

The builder writes ``model.onnx`` (+ ``model.onnx.data``), ``genai_config.json`` and the tokenizer files,
the chat template included (``chat_template.jinja``). The architecture is checked against the builder's own
list before anything heavy runs. A Phi-3 LongRoPE config saved by transformers 5 (``rope_parameters`` without
the older ``type`` key the builder reads) is given to the builder in the hub's ``rope_scaling`` form.

Targets:

* ``cpu``: the CPU execution provider; int4/int8 weights as ``MatMulNBits`` (round-to-nearest, symmetric,
  block 32) computing with int8 activations (``accuracy_level`` 4, the builder's CPU default).
* ``cuda``: the CUDA execution provider; quantized models then take float16 inputs and outputs.
* ``mobile``: the CPU provider, int4 or int8 only, for ARM phones and tablets: the embedding table is
  quantized too (``GatherBlockQuantized``; in a 135M model it is a fifth of the weights), activations go
  through int8 (``accuracy_level`` 4, the ARM dot-product kernels), and the LM head computes only the last
  position's logits during the prompt (``prune_lm_head``), which saves memory on long prompts.

A model with tied embeddings (SmolLM2) shares one int4 matrix between its embedding and LM head on every
target; its int8 export keeps a float32 embedding beside an int8 LM head (the builder's choice).

Example::

    export_decoder(gguf, Path("data/models/smollm2-135m-instruct/onnx-int4"), "int4", "cpu", cache_dir=cache)
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import io
import json
import logging
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from slm_eval.backends.onnx_decoder import GENAI_CONFIG, has_chat_template, import_genai
from slm_eval.errors import UserError, extra_install_hint, first_line, require_module
from slm_eval.logs import get_logger
from slm_eval.metrics.timing import Clock, MonotonicClock
from slm_eval.optimize.export_facts import op_counts, tool_versions

log = get_logger(__name__)

Precision = Literal["fp32", "int8", "int4"]
Target = Literal["cpu", "cuda", "mobile"]
PRECISIONS: tuple[str, ...] = ("fp32", "int8", "int4")
TARGETS: tuple[str, ...] = ("cpu", "cuda", "mobile")
EXECUTION_PROVIDERS: dict[str, str] = {"cpu": "cpu", "cuda": "cuda", "mobile": "cpu"}
MOBILE_OPTIONS: dict[str, str] = {
    "accuracy_level": "4",
    "op_types_to_quantize": "MatMul/Gather",
    "prune_lm_head": "true",
}
TOOLS = ("onnxruntime-genai", "onnxruntime", "onnx", "transformers", "torch")
MODEL_FILE = "model.onnx"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
_ARCHITECTURE_BRANCH = re.compile(r"config\.architectures\[0\]\s*==\s*\"(\w+)\"")


@dataclass(frozen=True)
class DecoderExport:
    """What :func:`export_decoder` wrote and how.

    Attributes:
        output_dir: the folder written.
        source: the transformers folder or GGUF file exported.
        source_format: ``transformers`` or ``gguf`` (dequantized to float32 first).
        architecture: the transformers architecture, e.g. ``LlamaForCausalLM``.
        precision: the weights' precision in the graph.
        target: ``cpu``, ``cuda`` or ``mobile``.
        execution_provider: the provider the graph was built for.
        builder_options: the model builder's extra options used.
        files: each file written (relative to ``output_dir``) and its size in bytes.
        op_counts: ONNX nodes per op type in the main graph, most frequent first.
        tool_versions: the version of each tool involved (``absent`` when not installed).
        elapsed_s: seconds the export took, dequantization included (measured).
    """

    output_dir: Path
    source: Path
    source_format: Literal["transformers", "gguf"]
    architecture: str
    precision: str
    target: str
    execution_provider: str
    builder_options: Mapping[str, str]
    files: Mapping[str, int]
    op_counts: Mapping[str, int]
    tool_versions: Mapping[str, str]
    elapsed_s: float

    @property
    def total_bytes(self) -> int:
        """Bytes of every file written."""
        return sum(self.files.values())

    @property
    def nodes(self) -> int:
        """Nodes in the main graph."""
        return sum(self.op_counts.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (for a manifest or a report)."""
        document = asdict(self)
        document.update(
            output_dir=str(self.output_dir),
            source=str(self.source),
            builder_options=dict(self.builder_options),
            files=dict(self.files),
            op_counts=dict(self.op_counts),
            tool_versions=dict(self.tool_versions),
            total_bytes=self.total_bytes,
            nodes=self.nodes,
            elapsed_s={"value": self.elapsed_s, "label": "measured"},
        )
        return document


@cache
def supported_architectures() -> tuple[str, ...]:
    """The causal-LM architectures the installed model builder has a branch for, read from its source."""
    spec = importlib.util.find_spec("onnxruntime_genai")
    if spec is None or not spec.submodule_search_locations:
        return ()
    builder = Path(next(iter(spec.submodule_search_locations))) / "models" / "builder.py"
    try:
        text = builder.read_text(encoding="utf-8")
    except OSError:
        return ()
    return tuple(sorted({name for name in _ARCHITECTURE_BRANCH.findall(text) if name.endswith("ForCausalLM")}))


def check_architecture(architecture: str, source: Path) -> None:
    """Fail before any heavy work when the model builder cannot export ``architecture``.

    Raises:
        UserError: the architecture is not one the builder supports (the message names those it does).
    """
    supported = supported_architectures()
    if architecture not in supported:
        raise UserError(
            f"{source} is a {architecture} model, which onnxruntime-genai's model builder cannot export; "
            f"supported decoder architectures: {', '.join(supported)}"
        )


def builder_options(precision: str, target: str, extra_options: Mapping[str, str] | None = None) -> dict[str, str]:
    """The model builder's extra options for ``precision`` on ``target``, with ``extra_options`` on top.

    Args:
        precision: ``fp32``, ``int8`` or ``int4``.
        target: ``cpu``, ``cuda`` or ``mobile``.
        extra_options: more of the builder's ``--extra_options`` (e.g. ``{"block_size": "64"}``); they
            override the target's own.

    Raises:
        UserError: an unknown precision or target, or fp32 asked for the mobile target.
    """
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision '{precision}' for a decoder export: choose one of {', '.join(PRECISIONS)}")
    if target not in TARGETS:
        raise UserError(f"unknown target '{target}' for a decoder export: choose one of {', '.join(TARGETS)}")
    options: dict[str, str] = {}
    if target == "mobile":
        if precision == "fp32":
            raise UserError("the mobile target stores quantized weights: use --precision int4 (or int8)")
        options.update(MOBILE_OPTIONS)
    options.update({str(key): str(value) for key, value in (extra_options or {}).items()})
    return options


def graph_op_counts(model_file: Path) -> dict[str, int]:
    """Nodes per op type in an ONNX file's main graph (its external data is not read), most frequent first."""
    import onnx

    return op_counts(onnx.load(str(model_file), load_external_data=False).graph)


def gguf_architecture(path: Path) -> str:
    """The transformers causal-LM class a GGUF file dequantizes to, read from its metadata only.

    Raises:
        UserError: the file cannot be read as GGUF by transformers.
    """
    transformers = require_module("transformers", "reading a GGUF file", extra_install_hint("torch"))
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = transformers.AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise UserError(f"transformers cannot read the GGUF file {path} ({first_line(exc)})") from exc
    architectures = getattr(config, "architectures", None) or []
    if architectures:
        return str(architectures[0])
    return str(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(config.model_type, config.model_type))


def folder_architecture(folder: Path) -> str:
    """The architecture named in a transformers folder's ``config.json``.

    Raises:
        UserError: no readable ``config.json``.
    """
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{folder} is not a transformers model folder: cannot read config.json ({exc})") from exc
    architectures = data.get("architectures") if isinstance(data, dict) else None
    if isinstance(architectures, list) and architectures:
        return str(architectures[0])
    return str(data.get("model_type", "unknown")) if isinstance(data, dict) else "unknown"


def load_torch_decoder(source: Path) -> tuple[Any, Any]:
    """The float32 PyTorch model (in eval mode) and tokenizer of a transformers folder or a GGUF file.

    A GGUF file is dequantized in full (no packed GGUF layers), so the model can be saved and exported.

    Raises:
        UserError: the weights or the tokenizer cannot be loaded.
    """
    torch = require_module("torch", "loading the PyTorch original", extra_install_hint("torch"))
    transformers = require_module("transformers", "loading the PyTorch original", extra_install_hint("torch"))
    if source.is_file():
        where = str(source.parent)
        extra: dict[str, Any] = {"gguf_file": source.name}
        weights = {**extra, "quantization_config": transformers.GgufConfig(dequantize=True)}
    else:
        where, extra, weights = str(source), {}, {"use_safetensors": True}
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(where, local_files_only=True, **extra)
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(
            f"cannot load the tokenizer of {source}: it is missing or unreadable ({first_line(exc)})"
        ) from exc
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(
            where, dtype=torch.float32, local_files_only=True, **weights
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise UserError(
            f"transformers cannot load {source}: the weights are missing (safetensors only), corrupt or of an "
            f"unsupported architecture ({first_line(exc)})"
        ) from exc
    return model.eval(), tokenizer


def dequantize_gguf(path: Path, folder: Path) -> Path:
    """Dequantize a GGUF file to float32 and save it as a transformers folder (safetensors + tokenizer)."""
    model, tokenizer = load_torch_decoder(path)
    # The weights are plain float32 tensors now; only the loader's bookkeeping still says "gguf".
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def _hub_rope_form(folder: Path, scratch: Path) -> Path:
    """``folder``, or a staged copy whose Phi-3 LongRoPE config has the hub's ``rope_scaling`` form.

    The builder reads ``rope_parameters["type"]``, which transformers fills in only from a ``rope_scaling``
    entry (as Phi-3-mini-128k's hub config has it), not from a config that transformers 5 saved itself.
    """
    data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    rope = data.get("rope_parameters")
    if not isinstance(rope, dict) or rope.get("rope_type") != "longrope" or "type" in rope or "rope_scaling" in data:
        return folder
    staged = scratch / "staged"
    staged.mkdir()
    for item in folder.iterdir():
        if item.name != "config.json" and item.is_file():
            try:
                (staged / item.name).symlink_to(item.resolve())
            except OSError:
                shutil.copy2(item, staged / item.name)
    data.pop("rope_parameters")
    scaling_keys = ("short_factor", "long_factor", "short_mscale", "long_mscale")
    data["rope_scaling"] = {"type": "longrope", **{key: rope[key] for key in scaling_keys if key in rope}}
    data["rope_theta"] = rope.get("rope_theta", data.get("rope_theta", 10000.0))
    if "original_max_position_embeddings" in rope:
        data.setdefault("original_max_position_embeddings", rope["original_max_position_embeddings"])
    if rope.get("partial_rotary_factor", 1.0) != 1.0:
        data["partial_rotary_factor"] = rope["partial_rotary_factor"]
    (staged / "config.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    return staged


def _prepare_source(source: Path, scratch: Path) -> tuple[Path, str, Literal["transformers", "gguf"]]:
    """The transformers folder to give the builder, the architecture, and the source's format."""
    if source.is_file():
        if source.suffix.lower() != ".gguf":
            raise UserError(f"{source} is neither a transformers folder nor a .gguf file")
        architecture = gguf_architecture(source)
        check_architecture(architecture, source)
        folder = scratch / "dequantized"
        log.info("dequantizing %s to float32 for the model builder", source.name)
        return dequantize_gguf(source, folder), architecture, "gguf"
    if not source.is_dir():
        raise UserError(f"model source {source} does not exist")
    architecture = folder_architecture(source)
    check_architecture(architecture, source)
    if not any((source / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(f"{source} has no tokenizer (tokenizer.json or tokenizer.model); add it and export again")
    return _hub_rope_form(source, scratch), architecture, "transformers"


@contextlib.contextmanager
def _builder_output() -> Iterator[io.StringIO]:
    """Capture what the builder prints, and undo the root log handler ONNX Runtime's quantizer installs."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity(logging.ERROR)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            yield captured
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
        transformers_logging.set_verbosity(verbosity)
        log.debug("model builder output:\n%s", captured.getvalue()[-8000:])


def _run_builder(
    folder: Path, output_dir: Path, precision: str, provider: str, cache_dir: Path, options: Mapping[str, str]
) -> None:
    extra = [f"{key}={value}" for key, value in options.items()]
    with _builder_output():
        # Imported here: ONNX Runtime's quantizer calls logging.basicConfig when imported.
        builder = importlib.import_module("onnxruntime_genai.models.builder")
        try:
            prepared = builder.parse_extra_options(
                None, str(folder), str(output_dir), precision, provider, str(cache_dir), extra
            )
            builder.create_model(None, str(folder), str(output_dir), precision, provider, str(cache_dir), **prepared)
        except (ValueError, KeyError, NotImplementedError, OSError, RuntimeError, AttributeError) as exc:
            raise UserError(
                f"onnxruntime-genai's model builder failed on {folder} ({type(exc).__name__}: {first_line(exc)})"
            ) from exc


def _keep_tokenizer(folder: Path, output_dir: Path) -> None:
    """Check the tokenizer reached ``output_dir``, and copy the chat template if the builder left it behind."""
    if not (output_dir / "tokenizer.json").is_file():
        raise UserError(f"the export of {folder} has no tokenizer.json; onnxruntime-genai cannot tokenize without it")
    if has_chat_template(folder) and not has_chat_template(output_dir):
        for name in ("chat_template.jinja", "chat_template.json"):
            if (folder / name).is_file():
                shutil.copy2(folder / name, output_dir / name)


def export_decoder(
    source: Path,
    output_dir: Path,
    precision: Precision | str,
    target: Target | str,
    *,
    cache_dir: Path,
    clock: Clock | None = None,
    extra_options: Mapping[str, str] | None = None,
) -> DecoderExport:
    """Export the decoder at ``source`` into ``output_dir`` with onnxruntime-genai's model builder.

    Args:
        source: a transformers folder or a GGUF file.
        output_dir: where ``model.onnx``, ``genai_config.json`` and the tokenizer go; the caller owns it.
        precision: ``fp32``, ``int8`` or ``int4`` weights.
        target: ``cpu``, ``cuda`` or ``mobile`` (see the module's description).
        cache_dir: the builder's cache; a temporary folder for a dequantized GGUF file is made (and removed)
            inside it.
        clock: the clock the elapsed time is read from.
        extra_options: more model builder options (``{"block_size": "64"}``), recorded in ``builder_options``.

    Raises:
        MissingDependencyError: onnxruntime-genai, onnx, torch or transformers is not installed.
        UserError: an unknown precision or target, a source that is not a decoder the builder supports
            (the message names the supported architectures), unreadable weights or tokenizer, or a builder
            failure.
    """
    options = builder_options(precision, target, extra_options)
    provider = EXECUTION_PROVIDERS[target]
    import_genai()
    require_module("onnx", "ONNX export", extra_install_hint("onnx"))
    require_module("torch", "ONNX export", extra_install_hint("torch"))
    require_module("transformers", "ONNX export", extra_install_hint("torch"))
    clock = clock or MonotonicClock()
    started = clock.now()
    cache_dir.mkdir(parents=True, exist_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="decoder-export-", dir=cache_dir) as scratch:
        folder, architecture, source_format = _prepare_source(source, Path(scratch))
        _run_builder(folder, output_dir, precision, provider, cache_dir, options)
        _keep_tokenizer(folder, output_dir)
    config = json.loads((output_dir / GENAI_CONFIG).read_text(encoding="utf-8"))
    model_file = output_dir / str(config["model"]["decoder"].get("filename", MODEL_FILE))
    files = {
        item.relative_to(output_dir).as_posix(): item.stat().st_size
        for item in sorted(output_dir.rglob("*"))
        if item.is_file()
    }
    result = DecoderExport(
        output_dir=output_dir,
        source=source,
        source_format=source_format,
        architecture=architecture,
        precision=precision,
        target=target,
        execution_provider=provider,
        builder_options=options,
        files=files,
        op_counts=graph_op_counts(model_file),
        tool_versions=tool_versions(TOOLS),
        elapsed_s=clock.now() - started,
    )
    log.info(
        "exported %s (%s, %s on %s) to %s: %d nodes, %.1f MB, %.1f s",
        source.name,
        architecture,
        precision,
        target,
        output_dir,
        result.nodes,
        result.total_bytes / 1e6,
        result.elapsed_s,
    )
    return result
