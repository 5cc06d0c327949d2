"""The models the engine trains: finding the base weights, loading them with the right head, LoRA, and saving.

Container-safe: imports only the standard library, torch, transformers, peft and this package's
:mod:`slm_eval.errors` and :mod:`slm_eval.training.job`.

A decoder loads from a GGUF file (transformers dequantizes it to float32), a transformers folder, or a hub
id; an encoder from a folder or hub id, with the head of its task (question answering, token or sequence
classification). The head of a base encoder is new, initialised from the job's seed.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from slm_eval.errors import UserError, first_line
from slm_eval.training.job import Hyperparameters, TrainTask

log = logging.getLogger("slm_eval.training.engine_models")
HEAD_CLASSES: dict[TrainTask, str] = {
    "sft": "AutoModelForCausalLM",
    "qa": "AutoModelForQuestionAnswering",
    "ner": "AutoModelForTokenClassification",
    "classify": "AutoModelForSequenceClassification",
}
PEFT_TASK_TYPES: dict[TrainTask, str] = {
    "sft": "CAUSAL_LM",
    "qa": "QUESTION_ANS",
    "ner": "TOKEN_CLS",
    "classify": "SEQ_CLS",
}
# Heads an encoder's LoRA trains whole (peft's modules_to_save) rather than adapting.
HEAD_MODULES = ("qa_outputs", "classifier", "score")
ADAPTER_FOLDER = "adapter"
SourceKind = Literal["gguf", "folder", "hub"]
_PATH_PREFIXES = ("/", "./", "../", "~", ".\\")


@dataclass(frozen=True)
class ModelSource:
    """Where the base model's weights are.

    Attributes:
        kind: ``gguf`` (a GGUF file), ``folder`` (a transformers folder) or ``hub`` (a hub id).
        location: the file, the folder, or the hub id.
    """

    kind: SourceKind
    location: str

    @property
    def label(self) -> str:
        """A short name for messages: the file or folder name, or the hub id."""
        return self.location if self.kind == "hub" else Path(self.location).name

    def from_pretrained_arguments(self) -> tuple[str, dict[str, Any]]:
        """The first argument of ``from_pretrained`` and its keyword arguments for this source."""
        if self.kind == "gguf":
            path = Path(self.location)
            return str(path.parent), {"gguf_file": path.name, "local_files_only": True}
        if self.kind == "folder":
            return self.location, {"local_files_only": True}
        return self.location, {}


def locate_base_model(model: str) -> ModelSource:
    """The base model ``model`` names: a GGUF file, a transformers folder, a folder holding either, or a hub id.

    A folder without ``config.json`` (a SageMaker ``model`` channel) is searched for its one ``.gguf`` file.

    Raises:
        UserError: the path does not exist, or holds no model, several GGUF files, or only a LoRA adapter.
    """
    path = Path(model).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise UserError(f"{path} is not a GGUF file: give a .gguf file, a transformers folder or a hub id")
        return ModelSource("gguf", str(path))
    if path.is_dir():
        if (path / "config.json").is_file():
            return ModelSource("folder", str(path))
        ggufs = sorted(path.rglob("*.gguf"))
        if len(ggufs) == 1:
            return ModelSource("gguf", str(ggufs[0]))
        if ggufs:
            names = ", ".join(item.name for item in ggufs[:3])
            raise UserError(f"{path} holds several GGUF files ({names}): give the one to train as --model")
        if (path / "adapter_config.json").is_file():
            raise UserError(f"{path} holds a LoRA adapter, not a model: train from its base model (or a merged one)")
        raise UserError(f"{path} holds no model: it needs config.json and weights, or a .gguf file")
    if model.startswith(_PATH_PREFIXES) or model.lower().endswith(".gguf") or model.count("/") > 1:
        raise UserError(f"model path {model} does not exist: give a GGUF file, a transformers folder or a hub id")
    return ModelSource("hub", model)


def load_tokenizer(source: ModelSource) -> Any:
    """The base model's tokenizer (from the GGUF file's metadata for a GGUF source).

    Raises:
        UserError: it cannot be loaded (missing files, no network for a hub id, no ``gguf`` package).
    """
    import transformers

    name, extra = source.from_pretrained_arguments()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(name, **extra)
    except ImportError as exc:
        raise _missing_package(source, exc) from exc
    except (OSError, ValueError, KeyError, TypeError, struct.error) as exc:  # struct: a truncated GGUF file
        raise UserError(f"cannot load the tokenizer of {source.label} ({first_line(exc)})") from exc
    if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token  # padding is masked out; decoders often declare no pad token
    return tokenizer


def _missing_package(source: ModelSource, exc: ImportError) -> UserError:
    return UserError(
        f"loading {source.label} needs a package that is not installed ({first_line(exc)}); for a GGUF file "
        "install gguf (pip install gguf, or list it in requirements.txt beside train.py)"
    )


def check_model_kind(source: ModelSource, task: TrainTask) -> None:
    """Refuse a decoder for an encoder task and an encoder for ``sft``, saying which tasks the model trains.

    Raises:
        UserError: the model's kind does not fit ``task``, or its config cannot be read.
    """
    if source.kind == "gguf":
        kind, model_type = "decoder", "gguf"
    else:
        import transformers
        from transformers.models.auto import modeling_auto

        name, extra = source.from_pretrained_arguments()
        try:
            config = transformers.AutoConfig.from_pretrained(name, **extra)
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"cannot read the config of {source.label} ({first_line(exc)})") from exc
        model_type = str(getattr(config, "model_type", ""))
        causal = model_type in modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        masked = model_type in modeling_auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES
        kind = "decoder" if causal and not masked else "encoder"
    if task == "sft" and kind != "decoder":
        raise UserError(
            f"{source.label} is an encoder ({model_type}): it trains qa, ner or classify, not sft (decoders only)"
        )
    if task != "sft" and kind != "encoder":
        raise UserError(f"{source.label} is a decoder ({model_type}): it trains sft, not {task} (encoders only)")


def load_model(source: ModelSource, hp: Hyperparameters, labels: tuple[str, ...]) -> Any:
    """The base model in float32 with the head of ``hp.task``; a new head is initialised from ``hp.seed``.

    Raises:
        UserError: the weights are missing, unreadable, or of an architecture transformers cannot load.
    """
    import torch
    import transformers

    if source.kind == "gguf" and hp.is_encoder:
        raise UserError(f"{source.label} is a GGUF file; encoders train from a transformers folder")
    name, extra = source.from_pretrained_arguments()
    options: dict[str, Any] = {"dtype": torch.float32}
    if labels:
        options.update(
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: index for index, label in enumerate(labels)},
            ignore_mismatched_sizes=True,  # a head trained on other labels is replaced
        )
    gguf_config = getattr(transformers, "GgufConfig", None)  # transformers 5; version 4 always dequantizes
    if source.kind == "gguf" and gguf_config is not None:  # in full, to float32 layers that train and save
        options["quantization_config"] = gguf_config(dequantize=True)
    transformers.set_seed(hp.seed)
    auto_class = getattr(transformers, HEAD_CLASSES[hp.task])
    try:
        model = auto_class.from_pretrained(name, **extra, **options)
    except ImportError as exc:
        raise _missing_package(source, exc) from exc
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, struct.error) as exc:
        raise UserError(
            f"transformers cannot load {source.label} for {hp.task}: the weights are missing, corrupt or of an "
            f"unsupported architecture ({first_line(exc)})"
        ) from exc
    if source.kind == "gguf":  # only the loader's bookkeeping still says "gguf"; the Trainer refuses such a model
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    model.config.architectures = [type(model).__name__]
    return model


def apply_lora(model: Any, hp: Hyperparameters) -> Any:
    """``model`` wrapped by peft with a LoRA adapter of ``hp``'s rank, alpha, dropout and targets.

    An encoder's head is trained whole (it is new); the adapter goes on the encoder's linear layers.

    Raises:
        UserError: a target module name matches no layer of the model.
    """
    import peft

    targets: str | list[str] = "all-linear" if hp.lora_targets == ("all-linear",) else list(hp.lora_targets)
    config = peft.LoraConfig(
        r=hp.lora_r,
        lora_alpha=hp.lora_alpha,
        lora_dropout=hp.lora_dropout,
        target_modules=targets,
        exclude_modules=list(HEAD_MODULES) if hp.is_encoder else None,
        task_type=PEFT_TASK_TYPES[hp.task],
    )
    try:
        adapted = peft.get_peft_model(model, config)
    except ValueError as exc:
        raise UserError(
            f"LoRA cannot target {', '.join(hp.lora_targets)} in this model ({first_line(exc)}); "
            "give module names it has (e.g. q_proj,v_proj) or all-linear"
        ) from exc
    trainable, total = adapted.get_nb_trainable_parameters()
    log.info("LoRA r=%d alpha=%d: %d of %d parameters trainable", hp.lora_r, hp.lora_alpha, trainable, total)
    return adapted


def is_peft(model: Any) -> bool:
    """Whether ``model`` carries a peft adapter."""
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")


def save_model(model: Any, tokenizer: Any, model_dir: Path, *, merge: bool) -> Literal["full", "adapter", "merged"]:
    """Save the trained model and its tokenizer into ``model_dir``; which layout it got.

    - ``full``: a transformers folder (config.json, model.safetensors) at the root.
    - ``adapter``: the LoRA adapter (adapter_config.json, adapter_model.safetensors) at the root.
    - ``merged``: the adapter merged into the base, saved whole at the root; the adapter itself in ``adapter/``.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(model_dir))
    if not is_peft(model):
        model.save_pretrained(str(model_dir), safe_serialization=True)
        return "full"
    if not merge:
        model.save_pretrained(str(model_dir), safe_serialization=True)
        return "adapter"
    model.save_pretrained(str(model_dir / ADAPTER_FOLDER), safe_serialization=True)
    merged = model.merge_and_unload()
    merged.save_pretrained(str(model_dir), safe_serialization=True)
    return "merged"
