"""PyTorch encoders through transformers, with one task head: extractive QA, token or sequence classification.

A base encoder (all-MiniLM-L6-v2 is a ``BertModel``) has no trained head. The head is then initialised at
random from the run's seed, so the same seed gives the same head in PyTorch and in an ONNX export of it,
and :attr:`TransformersEncoderBackend.head_trained` is ``False`` so every caller can say the scores mean
nothing until the head is fine-tuned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers

from slm_eval.backends.base import (
    Capabilities,
    EncoderPrediction,
    EncoderRequest,
    EncoderTask,
    LoadOptions,
)
from slm_eval.backends.encoder_heads import (
    HEAD_CLASSES,
    HEAD_OUTPUTS,
    default_labels,
    encode,
    labels_from_config,
    to_prediction,
)
from slm_eval.backends.transformers import hub_error, model_sources, torch_dtype
from slm_eval.devices.cpus import usable_cpu_count
from slm_eval.errors import UserError, first_line
from slm_eval.logs import get_logger, quiet_library_notices
from slm_eval.metrics.timing import Clock
from slm_eval.models.registry import ModelCard

log = get_logger(__name__)


@dataclass
class HeadModel:
    """An encoder with its task head, as loaded: the model, its tokenizer, labels, and whether the head was trained."""

    model: Any
    tokenizer: Any
    task: EncoderTask
    labels: tuple[str, ...]
    trained: bool
    max_length: int


def load_head_model(
    card: ModelCard,
    location: Path | None,
    task: EncoderTask,
    *,
    seed: int = 0,
    dtype: str = "float32",
    trust_remote_code: bool = False,
    max_length: int = 512,
) -> HeadModel:
    """Load ``card``'s encoder with the head for ``task``; a missing head is initialised from ``seed``.

    Raises:
        UserError: the weights or tokenizer are missing or unreadable, the folder is a GGUF file, or a hub
            id is asked for without a network.
    """
    source, extra, label = model_sources(card, location)
    if "gguf_file" in extra:
        raise UserError(f"{label} is a GGUF file; encoders load from a transformers folder (config.json, safetensors)")
    hub = location is None
    offline = hub and bool(extra["local_files_only"])
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            source, trust_remote_code=trust_remote_code, local_files_only=extra["local_files_only"]
        )
        config = transformers.AutoConfig.from_pretrained(
            source, trust_remote_code=trust_remote_code, local_files_only=extra["local_files_only"]
        )
    except (OSError, ValueError) as exc:
        if hub:
            raise hub_error(label, offline, exc) from exc
        raise UserError(f"cannot load the tokenizer or config of {label} ({first_line(exc)})") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"{label} has no fast tokenizer (tokenizer.json); encoder heads need its character offsets")
    if len(tokenizer) <= len(set(tokenizer.all_special_ids)):
        # transformers 5 builds an empty-vocabulary tokenizer from config.json alone when no tokenizer file exists
        raise UserError(f"{label} has no tokenizer vocabulary: add its tokenizer files (tokenizer.json or vocab.txt)")
    labels = _head_labels(config, task)
    head_options: dict[str, Any] = {}
    if task != "qa":
        head_options = {
            "num_labels": len(labels),
            "id2label": dict(enumerate(labels)),
            "label2id": {name: index for index, name in enumerate(labels)},
        }
    auto_class = getattr(transformers, HEAD_CLASSES[task])
    # transformers prints a load report listing the head's missing weights; head_trained says it once, clearly.
    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    torch.manual_seed(seed)
    from slm_eval.backends.transformers_quantized import check_task, load_quantized, read_recipe

    quiet_library_notices()  # transformers imports torchao (when installed), which logs CPU-build notices
    recipe = read_recipe(location) if location is not None else None  # a variant of slm-eval quantize, pytorch
    try:
        if location is not None and recipe is not None:
            check_task(recipe, task, label)
            model = load_quantized(
                location, recipe, auto_class, dtype=torch_dtype(dtype), trust_remote_code=trust_remote_code
            )
            info = {"missing_keys": [] if recipe.head_trained else ["the head, initialised from a seed"]}
        else:
            model, info = auto_class.from_pretrained(
                source,
                dtype=torch_dtype(dtype),
                trust_remote_code=trust_remote_code,
                output_loading_info=True,
                **extra,
                **head_options,
            )
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        if hub:
            raise hub_error(label, offline, exc) from exc
        raise UserError(
            f"transformers cannot load {label} with a {task} head: the weights are missing (safetensors only), "
            f"corrupt or of an unsupported architecture ({first_line(exc)})"
        ) from exc
    missing = [key for key in info.get("missing_keys", ()) if key]
    positions = int(getattr(config, "max_position_embeddings", max_length) or max_length)
    model.eval()
    return HeadModel(model, tokenizer, task, tuple(labels), not missing, min(max_length, positions))


HEAD_SUFFIXES = {"qa": "ForQuestionAnswering", "ner": "ForTokenClassification", "classify": "ForSequenceClassification"}


def _head_labels(config: Any, task: EncoderTask) -> tuple[str, ...]:
    """The head's labels: a fine-tuned head's own (even transformers' ``LABEL_n`` placeholders), else ours.

    A checkpoint saved with this task's head (``architectures`` ends in e.g. ``ForTokenClassification``)
    keeps its label count and order; a base encoder gets the border entity tags or threat labels.
    """
    if task == "qa":
        return ()
    architectures = getattr(config, "architectures", None) or []
    id2label = getattr(config, "id2label", None) or {}
    if id2label and any(str(name).endswith(HEAD_SUFFIXES[task]) for name in architectures):
        return tuple(str(id2label[key]) for key in sorted(id2label, key=int))
    return labels_from_config(id2label, task) or default_labels(task)


class TransformersEncoderBackend:
    """An encoder with one task head, run by PyTorch on the CPU (or CUDA when present)."""

    name = "transformers"

    def __init__(self, head: HeadModel, clock: Clock) -> None:
        self._head: HeadModel | None = head
        self._clock = clock
        from slm_eval.backends.transformers_quantized import count_parameters

        self._parameters = count_parameters(head.model)  # dynamic int8 layers pack their weights away
        self._input_names = forward_inputs(head.model)
        self.capabilities = Capabilities(
            generate=False, streaming=False, chat_template=False, encoder_tasks=frozenset({head.task})
        )
        self.task: EncoderTask = head.task
        self.head_trained = head.trained
        self.labels = head.labels

    @property
    def parameter_count(self) -> int | None:
        return self._parameters

    def predict(self, requests: Sequence[EncoderRequest]) -> list[EncoderPrediction]:
        if self._head is None:
            raise UserError("the transformers backend was closed; load the model again")
        return [self._predict_one(self._head, request) for request in requests]

    def _predict_one(self, head: HeadModel, request: EncoderRequest) -> EncoderPrediction:
        started = self._clock.now()
        encoded = encode(head.tokenizer, head.task, request, head.max_length)
        device = head.model.device
        inputs = {name: torch.from_numpy(array).to(device) for name, array in encoded.arrays(self._input_names).items()}
        with torch.inference_mode():
            output = head.model(**inputs)
        arrays = {name: getattr(output, name).float().cpu().numpy() for name in HEAD_OUTPUTS[head.task]}
        finished = self._clock.now()
        return to_prediction(head.task, arrays, encoded, request, head.labels, started, finished)

    def close(self) -> None:
        self._head = None


def forward_inputs(model: Any) -> tuple[str, ...]:
    """The inputs the model's forward accepts, in graph order (DistilBERT takes no ``token_type_ids``)."""
    import inspect

    accepted = inspect.signature(model.forward).parameters
    return tuple(name for name in ("input_ids", "attention_mask", "token_type_ids") if name in accepted)


def load_encoder(card: ModelCard, location: Path | None, options: LoadOptions) -> TransformersEncoderBackend:
    """Load an encoder with the head for ``options.encoder_task``.

    Raises:
        UserError: see :func:`load_head_model`.
    """
    threads = options.threads or usable_cpu_count()
    torch.set_num_threads(threads)
    head = load_head_model(
        card,
        location,
        options.encoder_task,
        seed=options.seed,
        dtype=options.dtype,
        trust_remote_code=options.trust_remote_code,
        max_length=options.context_length,
    )
    from slm_eval.backends.transformers_quantized import runs_on_cpu_only

    device = "cuda" if torch.cuda.is_available() and not runs_on_cpu_only(head.model) else "cpu"
    head.model.to(device)
    if not head.trained:
        log.debug("%s: the %s head is randomly initialised from seed %d", card.name, head.task, options.seed)
    return TransformersEncoderBackend(head, options.clock)
