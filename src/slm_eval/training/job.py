"""What one training job is: its hyperparameters, its folders, and how the entry script reads both.

Container-safe: this module imports only the standard library and :mod:`slm_eval.errors`, because the
SageMaker training container runs the entry script from a copy of the package.

The hyperparameters travel as SageMaker's ``HyperParameters`` map (:meth:`Hyperparameters.to_hyperparameters`:
each key with dashes, each value a string); the container hands them to the entry script as ``--key value``,
and :func:`parse_job_arguments` reads them back. Folders come from arguments first, then from the ``SM_*``
variables of the container, then from local defaults (:func:`paths_from_environment`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, NoReturn

from slm_eval.errors import UserError
from slm_eval.json_files import read_json_lines

TrainTask = Literal["sft", "qa", "ner", "classify"]
Method = Literal["lora", "full"]
TASKS: tuple[TrainTask, ...] = ("sft", "qa", "ner", "classify")
ENCODER_TASKS: tuple[TrainTask, ...] = ("qa", "ner", "classify")
METHODS: tuple[Method, ...] = ("lora", "full")
# Learning rates that suit each kind of training when none is given. Measured on the border-control QA set
# (129 training, 36 validation questions, split by passage): LoRA on SmolLM2-135M, 2 epochs, validation loss
# 0.816 at 2e-4, 0.624 at 5e-4, 0.538 at 1e-3, unstable at 2e-3 (0.93 after one epoch), so 5e-4 keeps a
# margin for larger decoders; full fine-tuning of MiniLM-L6 with a QA head, 4 epochs, validation F1 0.15 at
# 5e-5, 0.19 at 1e-4, 0.42 at 3e-4, unstable at 6e-4. Full decoder fine-tuning keeps the usual 2e-5 (not measured).
LORA_LEARNING_RATE = 5e-4
FULL_DECODER_LEARNING_RATE = 2e-5
ENCODER_LEARNING_RATE = 3e-4
# Path arguments of the entry script besides the hyperparameters.
PATH_ARGUMENTS = ("model", "train-dir", "validation-dir", "model-dir", "output-data-dir", "checkpoint-dir")
TRAIN_FILE = "train.jsonl"
VALIDATION_FILE = "validation.jsonl"
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_UNSET = ("none", "auto", "")


def default_method(task: TrainTask) -> Method:
    """The method a task trains with when none is asked for: LoRA for decoders, full fine-tuning for encoders."""
    return "lora" if task == "sft" else "full"


@dataclass(frozen=True)
class Hyperparameters:
    """Everything that decides how a model is trained, apart from the model and the data.

    Attributes:
        task: ``sft`` (a decoder on prompt/response pairs), ``qa``, ``ner`` or ``classify`` (an encoder head).
        method: ``lora`` (an adapter through peft) or ``full`` fine-tuning.
        epochs: passes over the training split (a fraction stops part-way through the last).
        learning_rate: peak learning rate; ``None`` picks the method's default (:meth:`effective_learning_rate`).
        batch_size: examples per device per step.
        gradient_accumulation: steps whose gradients are summed before each optimizer update.
        max_length: tokens per example at most (longer ones are truncated).
        lora_r, lora_alpha, lora_dropout: the LoRA rank, scaling numerator and dropout.
        lora_targets: module names LoRA adapts; ``all-linear`` means every linear layer but the output head.
        warmup_ratio: share of the updates over which the learning rate rises linearly from zero.
        weight_decay: AdamW weight decay.
        seed: seeds the head initialisation, the LoRA weights, the shuffling and dropout.
        early_stopping_patience: stop after this many epochs without a lower validation loss (0: never).
        max_steps: stop after this many updates (-1: run every epoch).
        merge: merge the LoRA adapter into the base and save the whole model (the adapter goes to ``adapter/``).
        chat: wrap prompts in the tokenizer's chat template (``None``: when it has one).
        labels: the label set of ``ner`` (BIO tags) or ``classify``; empty: the border-control defaults.
        threads: CPU threads for PyTorch; ``None``: every CPU.
    """

    task: TrainTask
    method: Method = "lora"
    epochs: float = 3
    learning_rate: float | None = None
    batch_size: int = 4
    gradient_accumulation: int = 1
    max_length: int = 512
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("all-linear",)
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    seed: int = 0
    early_stopping_patience: int = 2
    max_steps: int = -1
    merge: bool = False
    chat: bool | None = None
    labels: tuple[str, ...] = ()
    threads: int | None = None

    def __post_init__(self) -> None:
        # Lists (from JSON or a command line) become tuples, so the dataclass stays hashable and comparable.
        object.__setattr__(self, "lora_targets", tuple(str(item) for item in self.lora_targets))
        object.__setattr__(self, "labels", tuple(str(item) for item in self.labels))
        if self.task not in TASKS:
            raise UserError(f"unknown training task '{self.task}': choose one of {', '.join(TASKS)}")
        if self.method not in METHODS:
            raise UserError(f"unknown training method '{self.method}': choose lora or full")
        _at_least("batch-size", self.batch_size, 1)
        _at_least("gradient-accumulation", self.gradient_accumulation, 1)
        _at_least("max-length", self.max_length, 8)
        _at_least("lora-r", self.lora_r, 1)
        _at_least("early-stopping-patience", self.early_stopping_patience, 0)
        if not self.epochs > 0:
            raise UserError(f"--epochs must be above 0, not {self.epochs}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise UserError(f"--max-steps must be -1 (every epoch) or at least 1, not {self.max_steps}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise UserError(f"--learning-rate must be above 0, not {self.learning_rate}")
        if not 0 <= self.lora_dropout < 1:
            raise UserError(f"--lora-dropout must be in [0, 1), not {self.lora_dropout}")
        if not 0 <= self.warmup_ratio < 1:
            raise UserError(f"--warmup-ratio must be in [0, 1), not {self.warmup_ratio}")
        if self.weight_decay < 0:
            raise UserError(f"--weight-decay must be 0 or more, not {self.weight_decay}")
        if self.threads is not None:
            _at_least("threads", self.threads, 1)
        if not self.lora_targets:
            raise UserError("--lora-targets is empty: give module names, or all-linear")
        for name, items in (("lora-targets", self.lora_targets), ("labels", self.labels)):
            if any("," in item or not item.strip() for item in items):
                raise UserError(f"--{name} items must be non-empty and hold no comma: {list(items)}")
        if self.labels and self.task not in ("ner", "classify"):
            raise UserError(f"--labels is for the ner and classify tasks, not {self.task}")

    @property
    def is_encoder(self) -> bool:
        """Whether the task trains an encoder head (``qa``, ``ner``, ``classify``) rather than a decoder."""
        return self.task in ENCODER_TASKS

    def effective_learning_rate(self) -> float:
        """The learning rate given, else LoRA 5e-4, full decoder 2e-5, full encoder 3e-4."""
        if self.learning_rate is not None:
            return self.learning_rate
        if self.method == "lora":
            return LORA_LEARNING_RATE
        return ENCODER_LEARNING_RATE if self.is_encoder else FULL_DECODER_LEARNING_RATE

    def to_hyperparameters(self) -> dict[str, str]:
        """SageMaker's ``HyperParameters`` map: each set field, its key with dashes and its value as a string.

        Fields left at ``None`` or empty are omitted (the entry script then takes their defaults); tuples are
        joined with commas, booleans are ``true``/``false``.
        """
        rendered: dict[str, str] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value is None or value == ():
                continue
            rendered[_key(item.name)] = _render(value)
        return rendered

    @classmethod
    def from_hyperparameters(cls, values: Mapping[str, str]) -> Hyperparameters:
        """The hyperparameters a ``HyperParameters`` map describes (its keys with dashes or underscores).

        Raises:
            UserError: an unknown key, a value that does not parse, or one out of range.
        """
        known = {item.name for item in fields(cls)}
        parsed: dict[str, Any] = {}
        for key, text in values.items():
            name = key.replace("-", "_")
            if name not in known:
                raise UserError(f"unknown hyperparameter '{key}': choose from {', '.join(sorted(map(_key, known)))}")
            parsed[name] = _PARSERS[name](str(text), _key(name))
        if "task" not in parsed:
            raise UserError("the hyperparameters name no task: give --task sft, qa, ner or classify")
        return cls(**parsed)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON values (tuples as lists), for ``hyperparameters.json``."""
        data = asdict(self)
        data["lora_targets"] = list(self.lora_targets)
        data["labels"] = list(self.labels)
        return data


def _at_least(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise UserError(f"--{name} must be at least {minimum}, not {value}")


def _key(name: str) -> str:
    return name.replace("_", "-")


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value) if not isinstance(value, float) else repr(value)


def _parse_bool(text: str, key: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UserError(f"--{key} takes true or false, not '{text}'")


def _parse_optional_bool(text: str, key: str) -> bool | None:
    return None if text.strip().lower() in _UNSET else _parse_bool(text, key)


def _parse_int(text: str, key: str) -> int:
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if number != number or number != int(number):  # NaN or a fraction
        raise UserError(f"--{key} takes a whole number, not '{text}'")
    return int(number)


def _parse_optional_int(text: str, key: str) -> int | None:
    return None if text.strip().lower() in _UNSET else _parse_int(text, key)


def _parse_float(text: str, key: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UserError(f"--{key} takes a number, not '{text}'") from None


def _parse_optional_float(text: str, key: str) -> float | None:
    return None if text.strip().lower() in _UNSET else _parse_float(text, key)


def _parse_list(text: str, key: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _parse_text(text: str, key: str) -> str:
    return text.strip().lower()


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "task": _parse_text,
    "method": _parse_text,
    "epochs": _parse_float,
    "learning_rate": _parse_optional_float,
    "batch_size": _parse_int,
    "gradient_accumulation": _parse_int,
    "max_length": _parse_int,
    "lora_r": _parse_int,
    "lora_alpha": _parse_int,
    "lora_dropout": _parse_float,
    "lora_targets": _parse_list,
    "warmup_ratio": _parse_float,
    "weight_decay": _parse_float,
    "seed": _parse_int,
    "early_stopping_patience": _parse_int,
    "max_steps": _parse_int,
    "merge": _parse_bool,
    "chat": _parse_optional_bool,
    "labels": _parse_list,
    "threads": _parse_optional_int,
}


@dataclass(frozen=True)
class JobPaths:
    """The folders and base model of one job.

    Attributes:
        model: the base model: a GGUF file, a transformers folder, a folder holding one of them, or a hub id.
        train_dir: the folder holding ``train.jsonl`` (SageMaker's ``train`` channel).
        validation_dir: the folder holding ``validation.jsonl``; ``None`` trains without evaluation.
        model_dir: where the trained model goes (SageMaker packs it into ``model.tar.gz``).
        output_data_dir: other output (SageMaker packs it into ``output.tar.gz``).
        checkpoint_dir: checkpoints of each epoch, and of an interrupted step.
        num_gpus: GPUs the container declares (0 outside SageMaker).
    """

    model: str
    train_dir: Path
    validation_dir: Path | None
    model_dir: Path
    output_data_dir: Path
    checkpoint_dir: Path
    num_gpus: int


class _Parser(argparse.ArgumentParser):
    """An argument parser whose mistakes are :class:`UserError` rather than an exit."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message}; see --help")


def job_parser() -> argparse.ArgumentParser:
    """The entry script's arguments: every hyperparameter key (strings, parsed later) and the paths."""
    parser = _Parser(
        prog="train.py",
        description="Fine-tune a model on a prepared dataset, locally or in the SageMaker training container.",
    )
    for item in fields(Hyperparameters):
        parser.add_argument(f"--{_key(item.name)}", dest=item.name, default=None, metavar="VALUE")
    for name in PATH_ARGUMENTS:
        parser.add_argument(f"--{name}", dest=name.replace("-", "_"), default=None, metavar="PATH")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="true",
        default="false",
        metavar="true|false|auto",
        help="continue from the latest checkpoint (auto: when there is one)",
    )
    return parser


def parse_job_arguments(argv: Sequence[str]) -> tuple[Hyperparameters, argparse.Namespace]:
    """The hyperparameters and the remaining arguments (paths, ``resume``) of the entry script.

    Keys SageMaker adds for itself (``--sagemaker_...``) are ignored. When no ``--method`` is given the task's
    default is taken (:func:`default_method`).

    Raises:
        UserError: an unknown argument, a value that does not parse, or a missing ``--task``.
    """
    parser = job_parser()
    namespace, unknown = parser.parse_known_args(list(argv))
    unknown = [item for item in unknown if not item.startswith("--sagemaker")]
    strays = [item for item in unknown if item.startswith("-")]
    if strays:
        raise UserError(f"unknown argument {strays[0]}: see --help for the hyperparameters the entry script takes")
    given = {
        item.name: getattr(namespace, item.name)
        for item in fields(Hyperparameters)
        if getattr(namespace, item.name) is not None
    }
    if "task" not in given:
        raise UserError("no --task: give sft (decoders), qa, ner or classify (encoders)")
    task = _parse_text(given["task"], "task")
    if task not in TASKS:
        raise UserError(f"unknown training task '{given['task']}': choose one of {', '.join(TASKS)}")
    given.setdefault("method", default_method(task))
    return Hyperparameters.from_hyperparameters(given), namespace


def resume_mode(value: str) -> Literal["true", "false", "auto"]:
    """The ``--resume`` value: ``true``, ``false`` or ``auto``.

    Raises:
        UserError: anything else.
    """
    text = value.strip().lower()
    if text == "auto":
        return "auto"
    return "true" if _parse_bool(text, "resume") else "false"


def paths_from_environment(args: argparse.Namespace, environ: Mapping[str, str]) -> JobPaths:
    """The job's folders: arguments win, then the SageMaker container's ``SM_*`` variables, then local defaults.

    Local defaults: ``model/`` and ``output/`` in the working folder; checkpoints in ``checkpoints/`` beside the
    model folder (``/opt/ml/checkpoints`` in the container); the validation folder is ``validation/`` beside
    the training folder when it holds ``validation.jsonl`` (the prepared dataset's layout).

    Raises:
        UserError: no base model or no training folder is given, or the checkpoints would land in the model folder.
    """

    def pick(argument: str, variable: str) -> str | None:
        given = getattr(args, argument, None)
        if given:
            return str(given)
        value = environ.get(variable, "").strip()
        return value or None

    model = pick("model", "SM_CHANNEL_MODEL")
    if model is None:
        raise UserError("no base model: give --model (a GGUF file, a transformers folder or a hub id)")
    train = pick("train_dir", "SM_CHANNEL_TRAIN")
    if train is None:
        raise UserError("no training data: give --train-dir (the folder holding train.jsonl)")
    train_dir = Path(train)
    validation = pick("validation_dir", "SM_CHANNEL_VALIDATION")
    if validation is not None:
        validation_dir: Path | None = Path(validation)
    else:
        sibling = train_dir.parent / "validation"
        validation_dir = sibling if (sibling / VALIDATION_FILE).is_file() else None
    model_dir = Path(pick("model_dir", "SM_MODEL_DIR") or "model")
    output_data_dir = Path(pick("output_data_dir", "SM_OUTPUT_DATA_DIR") or "output")
    checkpoint_dir = Path(getattr(args, "checkpoint_dir", None) or model_dir.parent / "checkpoints")
    if checkpoint_dir.resolve().is_relative_to(model_dir.resolve()):
        raise UserError(
            f"the checkpoint folder {checkpoint_dir} is inside the model folder {model_dir}, which is packed as "
            "the model: give a --checkpoint-dir outside it"
        )
    gpus = environ.get("SM_NUM_GPUS", "0").strip() or "0"
    return JobPaths(
        model=model,
        train_dir=train_dir,
        validation_dir=validation_dir,
        model_dir=model_dir,
        output_data_dir=output_data_dir,
        checkpoint_dir=checkpoint_dir,
        num_gpus=_parse_int(gpus, "SM_NUM_GPUS"),
    )


def latest_checkpoint(folder: Path) -> Path | None:
    """The Trainer checkpoint (``checkpoint-<step>/``) of the highest step in ``folder``, or ``None``."""
    if not folder.is_dir():
        return None
    steps = {}
    for item in folder.glob("checkpoint-*"):
        suffix = item.name.removeprefix("checkpoint-")
        if item.is_dir() and suffix.isdigit():
            steps[int(suffix)] = item
    return steps[max(steps)] if steps else None


def read_split(folder: Path, file_name: str, required: Sequence[str]) -> list[dict[str, Any]]:
    """The records of one prepared split (``<folder>/<file_name>``, JSON Lines), each with the ``required`` fields.

    Raises:
        UserError: the file is missing or empty, a line is not a JSON object, or a record lacks a field
            (the message names the line and the record's id).
    """
    path = folder / file_name
    if not path.is_file():
        raise UserError(f"no {file_name} in {folder}: prepare the dataset first (slm-eval train prepares it)")
    records: list[dict[str, Any]] = []
    for number, record in read_json_lines(path, expected=f"a JSON object with {', '.join(required)}"):
        missing = [name for name in required if name not in record]
        if missing:
            raise UserError(
                f"record {record.get('id', '?')!s} ({path} line {number}) lacks the field "
                f"'{missing[0]}' (needs {', '.join(required)}): fix or re-prepare the file"
            )
        records.append(record)
    if not records:
        raise UserError(f"{path} holds no records: prepare the dataset again")
    return records
