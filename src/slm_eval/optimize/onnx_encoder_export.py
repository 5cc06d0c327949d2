"""Export an encoder with one task head to ONNX, simplify the graph, and keep its tokenizer beside it.

The model is loaded exactly as the PyTorch backend loads it (:func:`~slm_eval.backends.transformers_encoder.
load_head_model`), so an untrained head is initialised from the same seed and the export answers like the
PyTorch model of that seed. The graph is traced by torch's TorchScript exporter (``dynamo=False``): the
torch.export-based exporter needs the separate ``onnxscript`` package, while the TorchScript one handles
BERT, DistilBERT, ALBERT and MobileBERT with dynamic batch and sequence axes. ``onnxslim`` then folds
constants and removes redundant shape arithmetic.

Example::

    export_encoder(card, source, Path("data/models/all-minilm-l6-v2/onnx-qa"), "qa")
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from slm_eval.backends.base import EncoderTask
from slm_eval.backends.encoder_heads import HEAD_OUTPUTS
from slm_eval.backends.onnx_encoder import MODEL_FILE, HeadSpec, write_head_spec
from slm_eval.errors import UserError, extra_install_hint, first_line, require_module
from slm_eval.logs import get_logger
from slm_eval.models.registry import ModelCard
from slm_eval.optimize.export_facts import op_counts, tool_versions

log = get_logger(__name__)

EXPORTER = "torch.onnx TorchScript exporter (dynamo=False)"
DEFAULT_OPSET = 17
TOOLS = ("torch", "transformers", "onnx", "onnxruntime", "onnxslim")
# A single protobuf file holds at most 2 GiB; every encoder this project targets is far below.
LARGEST_SINGLE_FILE = 2_000_000_000
# Inputs traced through the graph: two requests of different lengths, so the mask really pads.
TRACE_TEXTS: dict[EncoderTask, tuple[tuple[str, str | None], ...]] = {
    "qa": (
        ("Which document was forged?", "The officer found a forged entry stamp in the traveller's passport."),
        ("Who?", "The driver."),
    ),
    "ner": (("Anna Kowalski crossed at Terespol with passport AB1234567.", None), ("Cash declared.", None)),
    "classify": (("Two undeclared cartons of cigarettes were found in the spare wheel.", None), ("Tourist.", None)),
}


@dataclass(frozen=True)
class EncoderExport:
    """What :func:`export_encoder` wrote and how.

    Attributes:
        output_dir: the folder written.
        task: the head exported.
        files: each file written (relative to ``output_dir``) and its size in bytes.
        ops_before: ONNX node count per op type as exported.
        ops_after: node count per op type after simplification (equal to ``ops_before`` without it).
        opset: the ONNX opset of the graph.
        exporter: the exporter that traced the graph.
        simplified: whether onnxslim simplified the graph.
        inputs: the graph's input names.
        outputs: the graph's output names.
        labels: the head's labels in output order.
        head_trained: false when the head was initialised at random from ``seed``.
        seed: the seed an untrained head was initialised from.
        parameters: parameters of the PyTorch model exported.
        max_length: the longest input in tokens.
        versions: the version of each tool involved (``absent`` when not installed).
        elapsed_s: wall-clock seconds the export took, load included (measured).
    """

    output_dir: Path
    task: EncoderTask
    files: Mapping[str, int]
    ops_before: Mapping[str, int]
    ops_after: Mapping[str, int]
    opset: int
    exporter: str
    simplified: bool
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    labels: tuple[str, ...]
    head_trained: bool
    seed: int
    parameters: int
    max_length: int
    versions: Mapping[str, str]
    elapsed_s: float

    @property
    def nodes_before(self) -> int:
        """Nodes in the graph as exported."""
        return sum(self.ops_before.values())

    @property
    def nodes_after(self) -> int:
        """Nodes in the graph as saved."""
        return sum(self.ops_after.values())

    @property
    def total_bytes(self) -> int:
        """Bytes of every file written."""
        return sum(self.files.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (for a manifest or a report)."""
        document = asdict(self)
        document["output_dir"] = str(self.output_dir)
        document["files"] = dict(self.files)
        document["ops_before"] = dict(self.ops_before)
        document["ops_after"] = dict(self.ops_after)
        document["versions"] = dict(self.versions)
        document["nodes_before"] = self.nodes_before
        document["nodes_after"] = self.nodes_after
        document["elapsed_s"] = {"value": self.elapsed_s, "label": "measured"}
        return document


def export_encoder(
    card: ModelCard,
    source: Path,
    output_dir: Path,
    task: EncoderTask,
    *,
    seed: int = 0,
    opset: int = DEFAULT_OPSET,
    simplify: bool = True,
) -> EncoderExport:
    """Export ``card``'s encoder at ``source`` with the ``task`` head into ``output_dir``.

    Writes ``model.onnx`` (inputs ``input_ids``, ``attention_mask`` and, when the model takes it,
    ``token_type_ids``, all int64 of shape (batch, sequence); outputs per
    :data:`~slm_eval.backends.encoder_heads.HEAD_OUTPUTS`), the tokenizer files, ``config.json`` and
    ``head.json``. The caller owns ``output_dir`` (a temporary folder it moves into the model store).

    Raises:
        MissingDependencyError: torch, transformers, onnx or (with ``simplify``) onnxslim is not installed.
        UserError: the model cannot be loaded or traced.
    """
    started = time.perf_counter()
    torch = require_module("torch", "ONNX export", extra_install_hint("torch"))
    require_module("transformers", "ONNX export", extra_install_hint("torch"))
    onnx = require_module("onnx", "ONNX export", extra_install_hint("onnx"))
    slimmer = require_module("onnxslim", "ONNX graph simplification", "pip install onnxslim") if simplify else None
    from slm_eval.backends.transformers_encoder import forward_inputs, load_head_model

    head = load_head_model(card, source, task, seed=seed)
    model = head.model.to("cpu").eval()
    parameters = int(sum(parameter.numel() for parameter in model.parameters()))
    if parameters * 4 > LARGEST_SINGLE_FILE:
        raise UserError(f"{card.name} has {parameters:,} parameters: too large for a single-file ONNX export")
    names = forward_inputs(model)
    outputs = HEAD_OUTPUTS[task]
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / MODEL_FILE
    example = _trace_inputs(head.tokenizer, task, names)
    _trace(torch, _head_graph(torch, model, names, outputs), example, path, names, outputs, opset)
    exported = onnx.load(str(path))
    ops_before = op_counts(exported.graph)
    if slimmer is not None:
        exported = slimmer.slim(exported)
        if exported is None:
            raise UserError(f"onnxslim could not simplify the export of {card.name}; export with simplify off")
        onnx.save_model(exported, str(path))
    ops_after = op_counts(exported.graph)
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        reason = first_line(exc)
        raise UserError(f"the ONNX graph exported from {card.name} is not valid ({reason})") from exc
    initializers = {tensor.name for tensor in exported.graph.initializer}
    graph_inputs = tuple(node.name for node in exported.graph.input if node.name not in initializers)
    graph_outputs = tuple(node.name for node in exported.graph.output)
    if graph_outputs != outputs:
        raise UserError(f"the export of {card.name} returns {', '.join(graph_outputs)}, not {', '.join(outputs)}")
    head.tokenizer.save_pretrained(output_dir)
    model.config.save_pretrained(output_dir)
    spec = HeadSpec(
        task=task,
        labels=head.labels,
        trained=head.trained,
        inputs=graph_inputs,
        outputs=graph_outputs,
        max_length=head.max_length,
        source={"model": card.name, "path": str(source), "seed": seed},
        parameters=parameters,
    )
    write_head_spec(output_dir, spec)
    opset_used = next((int(entry.version) for entry in exported.opset_import if entry.domain in ("", "ai.onnx")), opset)
    files = {
        str(item.relative_to(output_dir)): item.stat().st_size
        for item in sorted(output_dir.rglob("*"))
        if item.is_file()
    }
    elapsed = time.perf_counter() - started
    log.info(
        "exported %s (%s head) to %s: %d nodes, %d after simplification, %.1f s",
        card.name,
        task,
        output_dir,
        sum(ops_before.values()),
        sum(ops_after.values()),
        elapsed,
    )
    return EncoderExport(
        output_dir=output_dir,
        task=task,
        files=files,
        ops_before=ops_before,
        ops_after=ops_after,
        opset=opset_used,
        exporter=EXPORTER,
        simplified=slimmer is not None,
        inputs=graph_inputs,
        outputs=graph_outputs,
        labels=head.labels,
        head_trained=head.trained,
        seed=seed,
        parameters=parameters,
        max_length=head.max_length,
        versions=tool_versions(TOOLS),
        elapsed_s=elapsed,
    )


def _head_graph(torch: Any, model: Any, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> Any:
    """The head model wrapped to take positional tensors and return a plain tuple.

    The wrapper fixes the graph's input order and output names, whatever the model's ``ModelOutput`` holds.
    """

    class HeadGraph(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: Any) -> tuple[Any, ...]:
            result = self.model(**dict(zip(inputs, tensors, strict=True)), return_dict=True)
            return tuple(getattr(result, name) for name in outputs)

    return HeadGraph().eval()


def _trace_inputs(tokenizer: Any, task: EncoderTask, names: tuple[str, ...]) -> tuple[Any, ...]:
    texts = [text for text, _ in TRACE_TEXTS[task]]
    contexts = [context or "" for _, context in TRACE_TEXTS[task]]
    pair = {"text_pair": contexts} if task == "qa" else {}
    encoded = tokenizer(texts, padding=True, return_tensors="pt", return_token_type_ids=True, **pair)
    return tuple(encoded[name] for name in names)


def _trace(
    torch: Any,
    module: Any,
    example: tuple[Any, ...],
    path: Path,
    inputs: tuple[str, ...],
    outputs: tuple[str, ...],
    opset: int,
) -> None:
    axes = {name: {0: "batch", 1: "sequence"} for name in (*inputs, *outputs)}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # The TorchScript exporter warns that it is deprecated and that Python conditions on shapes are
            # traced as constants; the parity check (slm_eval.optimize.encoder_parity) proves the graph.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                example,
                str(path),
                input_names=list(inputs),
                output_names=list(outputs),
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    except (RuntimeError, ValueError, TypeError) as exc:
        text = str(exc).strip().splitlines()
        raise UserError(
            f"torch could not export the model to ONNX opset {opset} ({text[0] if text else type(exc).__name__})"
        ) from exc
