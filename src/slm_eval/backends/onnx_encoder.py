"""ONNX Runtime encoders: a ``model.onnx`` with one task head, run by a plain ``onnxruntime.InferenceSession``.

The folder is what :func:`slm_eval.optimize.onnx_encoder_export.export_encoder` writes: ``model.onnx``, the
fast tokenizer saved beside it (``tokenizer.json`` and friends), ``config.json`` and ``head.json``, which
says which head the graph holds (``qa``, ``ner`` or ``classify``), its labels, whether it was trained, the
graph's input and output names and the longest input it takes. Tokenization and post-processing are
:mod:`slm_eval.backends.encoder_heads`, shared with the PyTorch backend, so both variants of one model
answer alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slm_eval.backends.base import Capabilities, EncoderPrediction, EncoderRequest, EncoderTask, LoadOptions
from slm_eval.backends.encoder_heads import ENCODER_TASKS, HEAD_OUTPUTS, encode, to_prediction
from slm_eval.devices.cpus import usable_cpu_count
from slm_eval.errors import MissingDependencyError, UserError, extra_install_hint, first_line
from slm_eval.logs import get_logger
from slm_eval.metrics.timing import Clock
from slm_eval.models.registry import ModelCard
from slm_eval.models.store import split_reference

log = get_logger(__name__)

MODEL_FILE = "model.onnx"
HEAD_FILE = "head.json"
TOKENIZER_FILE = "tokenizer.json"
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# ``--provider`` names and the ONNX Runtime execution providers they stand for, best first.
PROVIDERS: dict[str, str] = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}
TRANSFORMERS_INSTALL = "pip install 'transformers>=5,<6'"


@dataclass(frozen=True)
class HeadSpec:
    """What ``head.json`` says about the graph beside it.

    Attributes:
        task: the head the graph holds.
        labels: the head's labels in output order (none for ``qa``).
        trained: false when the head was initialised at random before export.
        inputs: the graph's input names, in order (a subset of input_ids, attention_mask, token_type_ids).
        outputs: the graph's output names (:data:`~slm_eval.backends.encoder_heads.HEAD_OUTPUTS` of the task).
        max_length: the longest input in tokens (the model's position embeddings).
        source: where the export came from (model name, path, seed), for provenance only.
        parameters: parameters of the exported model, when the exporter counted them.
    """

    task: EncoderTask
    labels: tuple[str, ...]
    trained: bool
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    max_length: int
    source: Mapping[str, Any] = field(default_factory=dict)
    parameters: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON document written to ``head.json``."""
        document: dict[str, Any] = {
            "task": self.task,
            "labels": list(self.labels),
            "trained": self.trained,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "max_length": self.max_length,
            "source": dict(self.source),
        }
        if self.parameters is not None:
            document["parameters"] = self.parameters
        return document


def write_head_spec(folder: Path, spec: HeadSpec) -> Path:
    """Write ``spec`` to ``folder/head.json`` and return its path."""
    path = folder / HEAD_FILE
    path.write_text(json.dumps(spec.to_dict(), indent=2) + "\n", encoding="utf-8")
    return path


def read_head_spec(folder: Path) -> HeadSpec:
    """Read and check ``folder/head.json``.

    Raises:
        UserError: the file is missing, is not JSON, or a field is missing or of the wrong kind.
    """
    path = folder / HEAD_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UserError(f"{path} is missing: export the encoder again (slm-eval convert --format onnx)") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not readable JSON ({first_line(exc)}); export the encoder again") from exc
    try:
        return _parse_head(document)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path} is not a valid encoder head description ({exc}); export the encoder again") from exc


def _parse_head(document: Any) -> HeadSpec:
    if not isinstance(document, dict):
        raise TypeError("expected a JSON object")
    task = document["task"]
    if task not in ENCODER_TASKS:
        raise ValueError(f"task '{task}' is not one of {', '.join(ENCODER_TASKS)}")
    labels = _strings(document.get("labels", []), "labels")
    if task != "qa" and not labels:
        raise ValueError(f"a {task} head needs its labels")
    inputs = _strings(document["inputs"], "inputs")
    if "input_ids" not in inputs or not set(inputs) <= set(MODEL_INPUTS):
        raise ValueError(f"inputs must include input_ids and be among {', '.join(MODEL_INPUTS)}")
    outputs = _strings(document["outputs"], "outputs")
    if outputs != HEAD_OUTPUTS[task]:
        raise ValueError(
            f"a {task} head returns {', '.join(HEAD_OUTPUTS[task])}, not {', '.join(outputs) or 'nothing'}"
        )
    trained = document["trained"]
    max_length = document["max_length"]
    parameters = document.get("parameters")
    if not isinstance(trained, bool):
        raise TypeError("trained must be true or false")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise ValueError("max_length must be an integer of at least 2")
    if parameters is not None and (isinstance(parameters, bool) or not isinstance(parameters, int)):
        raise TypeError("parameters must be an integer")
    source = document.get("source") or {}
    return HeadSpec(
        task=task,
        labels=labels,
        trained=trained,
        inputs=inputs,
        outputs=outputs,
        max_length=max_length,
        source=source if isinstance(source, dict) else {"model": str(source)},
        parameters=parameters,
    )


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TypeError(f"{name} must be a list of strings")
    return tuple(value)


def choose_providers(requested: str | None, available: Sequence[str]) -> list[str]:
    """The execution providers to open a session with, best first, CPU always last as the fallback.

    Args:
        requested: ``cpu``, ``cuda`` (or the full ONNX Runtime name), or ``None`` for the best available.
        available: what ``onnxruntime.get_available_providers()`` reports.

    Raises:
        UserError: an unknown provider, or ``cuda`` when this onnxruntime build has no CUDA provider.
    """
    cpu = PROVIDERS["cpu"]
    if requested is None:
        return [name for name in PROVIDERS.values() if name in available] or [cpu]
    key = requested.strip().lower().removesuffix("executionprovider")
    if key not in PROVIDERS:
        raise UserError(f"unknown ONNX Runtime provider '{requested}': choose one of {', '.join(PROVIDERS)}")
    if key == "cpu":
        return [cpu]
    if PROVIDERS[key] not in available:
        raise UserError(
            f"the {key} provider is not available in this onnxruntime (it has {', '.join(available) or 'none'}): "
            f"install onnxruntime-gpu with a matching CUDA, or use --provider cpu"
        )
    return [PROVIDERS[key], cpu]


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", "the onnx backend", extra_install_hint("onnx")) from exc
    return onnxruntime


def open_session(model: Path, threads: int | None, provider: str | None) -> Any:
    """An ``onnxruntime.InferenceSession`` on ``model`` with ``threads`` intra-op threads and one inter-op thread.

    Raises:
        MissingDependencyError: onnxruntime is not installed.
        UserError: the file is missing or not a valid ONNX model, or the provider cannot be used.
    """
    ort = _onnxruntime()
    if not model.is_file():
        raise UserError(f"{model} is missing: export the encoder again (slm-eval convert --format onnx)")
    providers = choose_providers(provider, ort.get_available_providers())
    settings = ort.SessionOptions()
    settings.intra_op_num_threads = threads or usable_cpu_count()
    settings.inter_op_num_threads = 1
    settings.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    settings.log_severity_level = 3  # errors only: no provider-assignment chatter on stderr
    try:
        session = ort.InferenceSession(str(model), sess_options=settings, providers=providers)
    except Exception as exc:  # onnxruntime raises its own pybind exception types, all plain Exceptions
        raise UserError(
            f"onnxruntime cannot load {model} ({first_line(exc)}): the file is truncated or corrupt; export it again"
        ) from exc
    if provider is not None and providers[0] not in session.get_providers():
        raise UserError(
            f"onnxruntime could not start the {provider} provider for {model} (it fell back to "
            f"{', '.join(session.get_providers())}); check the CUDA installation, or use --provider cpu"
        )
    return session


def load_tokenizer(folder: Path) -> Any:
    """The fast Hugging Face tokenizer saved in ``folder``.

    Raises:
        MissingDependencyError: transformers is not installed.
        UserError: no ``tokenizer.json`` in the folder, or it cannot be read.
    """
    if not (folder / TOKENIZER_FILE).is_file():
        raise UserError(
            f"{folder} has no {TOKENIZER_FILE}: the encoder's fast tokenizer must be saved beside {MODEL_FILE}; "
            f"export the encoder again"
        )
    try:
        import transformers
    except ImportError as exc:
        raise MissingDependencyError("transformers", "the ONNX encoder's tokenizer", TRANSFORMERS_INSTALL) from exc
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise UserError(f"cannot load the tokenizer in {folder} ({first_line(exc)}); export the encoder again") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"the tokenizer in {folder} is not a fast tokenizer; encoder heads need its character offsets")
    return tokenizer


def check_graph(session: Any, spec: HeadSpec, model: Path) -> None:
    """Check that the session's inputs and outputs are the ones ``head.json`` names, and the label count fits.

    Raises:
        UserError: ``head.json`` does not describe this ``model.onnx``.
    """
    inputs = tuple(node.name for node in session.get_inputs())
    outputs = {node.name: node for node in session.get_outputs()}
    if set(inputs) != set(spec.inputs) or not set(spec.outputs) <= set(outputs):
        raise UserError(
            f"{HEAD_FILE} does not match {model}: the graph takes {', '.join(inputs)} and returns "
            f"{', '.join(outputs)}; export the encoder again"
        )
    if spec.task != "qa":
        width = outputs["logits"].shape[-1]
        if isinstance(width, int) and width != len(spec.labels):
            raise UserError(
                f"{HEAD_FILE} names {len(spec.labels)} labels but {model} returns {width} logits; export it again"
            )


class OnnxEncoderBackend:
    """An encoder with one task head, run by ONNX Runtime one request at a time."""

    name = "onnx"

    def __init__(self, session: Any, tokenizer: Any, spec: HeadSpec, clock: Clock, max_length: int) -> None:
        self._session: Any | None = session
        self._tokenizer = tokenizer
        self._spec = spec
        self._clock = clock
        self._max_length = max_length
        self.capabilities = Capabilities(
            generate=False, streaming=False, chat_template=False, encoder_tasks=frozenset({spec.task})
        )
        self.task: EncoderTask = spec.task
        self.head_trained = spec.trained
        self.labels = spec.labels
        self.provider: str = str(session.get_providers()[0])

    @property
    def parameter_count(self) -> int | None:
        return self._spec.parameters

    def predict(self, requests: Sequence[EncoderRequest]) -> list[EncoderPrediction]:
        if self._session is None:
            raise UserError("the onnx backend was closed; load the model again")
        return [self._predict_one(self._session, request) for request in requests]

    def _predict_one(self, session: Any, request: EncoderRequest) -> EncoderPrediction:
        started = self._clock.now()
        encoded = encode(self._tokenizer, self.task, request, self._max_length)
        values = session.run(list(self._spec.outputs), encoded.arrays(self._spec.inputs))
        finished = self._clock.now()
        outputs = {name: np.asarray(value) for name, value in zip(self._spec.outputs, values, strict=True)}
        return to_prediction(self.task, outputs, encoded, request, self.labels, started, finished)

    def close(self) -> None:
        self._session = None


def load_encoder(card: ModelCard, location: Path, options: LoadOptions) -> OnnxEncoderBackend:
    """Open the ONNX encoder in ``location`` for ``options.encoder_task``.

    The session uses ``options.threads`` intra-op threads (one per usable CPU when ``None``) and
    ``options.provider`` (``None`` picks CUDA when this onnxruntime has it, else the CPU). Inputs are cut
    to ``options.context_length`` tokens or the export's ``max_length``, whichever is shorter.

    Raises:
        MissingDependencyError: onnxruntime or transformers (for the tokenizer) is not installed.
        UserError: ``head.json`` holds another task, or a file of the folder is missing or corrupt.
    """
    spec = read_head_spec(location)
    if spec.task != options.encoder_task:
        parent, _ = split_reference(card.name)
        raise UserError(
            f"{location} holds a {spec.task} head, not {options.encoder_task}: run it with --task {spec.task}, or "
            f"export {parent} for {options.encoder_task} (slm-eval convert --model {parent} --format onnx "
            f"--task {options.encoder_task})"
        )
    model = location / MODEL_FILE
    session = open_session(model, options.threads, options.provider)
    check_graph(session, spec, model)
    tokenizer = load_tokenizer(location)
    if not spec.trained:
        log.debug("%s: the %s head in %s was randomly initialised before export", card.name, spec.task, location)
    log.debug("%s: onnxruntime session on %s", card.name, ", ".join(session.get_providers()))
    max_length = min(spec.max_length, options.context_length)
    return OnnxEncoderBackend(session, tokenizer, spec, options.clock, max_length)
