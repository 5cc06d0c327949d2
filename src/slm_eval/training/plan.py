"""What ``slm-eval train`` will do: the model's kind checked against the task, and the hyperparameters settled.

Nothing here loads a model or reads a dataset; :func:`plan_training` only decides and refuses early.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from slm_eval.errors import UserError
from slm_eval.models.registry import ModelCard
from slm_eval.training.job import Hyperparameters, Method, TrainTask

TASKS_BY_KIND: dict[str, tuple[TrainTask, ...]] = {
    "decoder": ("sft",),
    "encoder": ("qa", "ner", "classify"),
}
TASK_WORDS = {
    "sft": "supervised fine-tuning on instruction/response pairs",
    "qa": "extractive question answering",
    "ner": "entity tagging",
    "classify": "threat classification",
}
BACKENDS = ("local", "sagemaker")


@dataclass(frozen=True)
class TrainRequest:
    """What the user asked ``slm-eval train`` for.

    Attributes:
        model: a catalogued model, alias or ``model@variant`` (a transformers variant).
        dataset: ``border-qa``, ``squad``, a use case, ``border`` or a file.
        task: ``sft`` (decoders), ``qa``, ``ner`` or ``classify`` (encoders); ``None`` picks the kind's first.
        backend: ``local`` or ``sagemaker``.
        full: full fine-tuning instead of LoRA (decoders; encoders are fully fine-tuned by default).
        lora: LoRA for an encoder instead of full fine-tuning.
        overrides: hyperparameters given on the command line, by :class:`Hyperparameters` field name.
        limit: at most this many training records.
        validation_limit: at most this many validation records.
        score_limit: score at most this many validation examples per set before and after (0: no scoring).
        resume: continue from the run's latest checkpoint.
        name: the variant's name (default ``ft-<date>-<hash>``).
        force: replace a variant of the same name.
    """

    model: str
    dataset: str = "border-qa"
    task: str | None = None
    backend: str = "local"
    full: bool = False
    lora: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None
    validation_limit: int | None = None
    score_limit: int | None = 40
    resume: bool = False
    name: str | None = None
    force: bool = False


@dataclass(frozen=True)
class TrainingPlan:
    """A checked request: the model, its task and the hyperparameters the entry script will get."""

    request: TrainRequest
    card: ModelCard
    task: TrainTask
    hyperparameters: Hyperparameters


def plan_training(request: TrainRequest, card: ModelCard, seed: int) -> TrainingPlan:
    """Check ``request`` against ``card`` and settle every hyperparameter.

    Raises:
        UserError: an API model, a task the model's kind cannot train, an unknown backend or hyperparameter,
            or contradicting options.
    """
    backend = request.backend.strip().lower()
    if backend not in BACKENDS:
        raise UserError(f"unknown training backend '{request.backend}': choose local or sagemaker")
    supported = TASKS_BY_KIND.get(card.kind)
    if supported is None:
        raise UserError(
            f"{card.name} is an {card.kind} model: it runs elsewhere and cannot be trained here; "
            "train a decoder (e.g. smollm2-135m-instruct) or an encoder (e.g. all-minilm-l6-v2)"
        )
    task = (request.task or supported[0]).strip().lower()
    if task not in supported:
        choices = ", ".join(f"{name} ({TASK_WORDS[name]})" for name in supported)
        known = "" if task in TASK_WORDS else f"unknown task '{task}'; "
        raise UserError(
            f"{known}{card.name} is a{'n' if card.kind == 'encoder' else ''} {card.kind}: it trains {choices}"
        )
    if request.full and request.lora:
        raise UserError("--full and --lora contradict each other: choose one")
    # Decoders default to LoRA, encoders (small, with a fresh head) to full fine-tuning.
    method: Method = (
        ("full" if request.full else "lora") if card.kind == "decoder" else ("lora" if request.lora else "full")
    )
    hyperparameters = Hyperparameters(task=task, method=method, seed=seed)
    known_fields = set(Hyperparameters.__dataclass_fields__)
    unknown = sorted(set(request.overrides) - known_fields)
    if unknown:
        raise UserError(f"unknown hyperparameter {unknown[0]}: choose from {', '.join(sorted(known_fields))}")
    given = {key: value for key, value in request.overrides.items() if value is not None}
    hyperparameters = replace(hyperparameters, **given)
    if card.kind == "encoder" and hyperparameters.method == "lora":
        # The head is trained whole; the adapter is merged so the variant loads like any encoder.
        hyperparameters = replace(hyperparameters, merge=True)
    if request.score_limit is not None and request.score_limit < 0:
        raise UserError("--score-limit must be 0 or more")
    return TrainingPlan(
        request=replace(request, backend=backend),
        card=card,
        task=task,
        hyperparameters=hyperparameters,
    )
