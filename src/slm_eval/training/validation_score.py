"""Score a model on a training run's validation examples, before and after training, the same way both times.

Both scores run the model through the transformers backend (PyTorch, greedy decoding, the run's seed), on
the same examples with the task's own prompt and scorer, so the difference is the training and nothing else.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from slm_eval.backends.base import (
    Backend,
    EncoderBackend,
    EncoderRequest,
    EncoderTask,
    GenerationRequest,
    LoadOptions,
    is_encoder_backend,
)
from slm_eval.models.registry import ModelCard

if TYPE_CHECKING:
    from slm_eval.training.prepare import ValidationSet

Report = Callable[[str], None]


@dataclass(frozen=True)
class SetScore:
    """The mean of one score over one validation set.

    Attributes:
        source: the task the examples come from, e.g. ``border-qa``.
        metric: the score's name, e.g. ``f1``.
        value: its mean over the examples, 0..1 (measured).
        examples: how many examples were scored.
    """

    source: str
    metric: str
    value: float
    examples: int

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "metric": self.metric, "value": self.value, "examples": self.examples}


@dataclass(frozen=True)
class ValidationScore:
    """A model's scores on every validation set, and their mean.

    Attributes:
        sets: one score per validation set.
        seconds: the time scoring took, loading included (measured).
    """

    sets: tuple[SetScore, ...]
    seconds: float

    @property
    def mean(self) -> float:
        """The mean over the sets (each set counts once), 0..1."""
        return statistics.fmean(item.value for item in self.sets) if self.sets else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "sets": [item.to_dict() for item in self.sets],
            "seconds": self.seconds,
            "label": "measured",
        }


def score_model(
    card: ModelCard,
    location: Path,
    sets: Sequence[ValidationSet],
    *,
    encoder_task: EncoderTask | None,
    limit: int | None,
    seed: int,
    threads: int | None = None,
    report: Report | None = None,
) -> ValidationScore:
    """Load ``card`` from ``location`` through the transformers backend and score it on ``sets``.

    Args:
        card: the model (a catalogued model, or the card of a trained output folder).
        location: its weights: a GGUF file, a transformers folder, or a LoRA adapter folder.
        sets: the validation sets of a prepared dataset.
        encoder_task: the head to load for an encoder (``None`` for a decoder).
        limit: score at most this many examples of each set (``None``: all).
        seed: the seed for loading (an untrained head is initialised from it).
        threads: CPU threads (``None``: all usable).
        report: called with one line of progress per set.
    """
    from slm_eval.backends.transformers import load

    started = time.perf_counter()
    options = LoadOptions(threads=threads, seed=seed, encoder_task=encoder_task or "qa")
    backend = load(card, location, options)
    try:
        scores = []
        for validation in sets:
            examples = list(validation.examples[:limit] if limit is not None else validation.examples)
            if not examples:
                continue
            if is_encoder_backend(backend):
                outputs = _predict(cast(EncoderBackend, backend), examples)
            else:
                outputs = _generate(cast(Backend, backend), validation, examples)
            values = [
                float(validation.task.score(example, text)[validation.metric])
                for example, text in zip(examples, outputs, strict=True)
            ]
            item = SetScore(validation.task.name, validation.metric, statistics.fmean(values), len(values))
            if report is not None:
                report(f"  {item.source}: {item.metric} {item.value:.3f} over {item.examples} examples")
            scores.append(item)
    finally:
        backend.close()
    return ValidationScore(tuple(scores), time.perf_counter() - started)


def _generate(backend: Backend, validation: ValidationSet, examples: Sequence[Any]) -> list[str]:
    task = validation.task
    requests = [
        GenerationRequest(prompt=task.prompt(example), max_new_tokens=task.max_new_tokens) for example in examples
    ]
    return [generation.text for generation in backend.generate(requests)]


def _predict(backend: EncoderBackend, examples: Sequence[Any]) -> list[str]:
    requests = [EncoderRequest(text=example.question, context=example.context) for example in examples]
    return [prediction.text for prediction in backend.predict(requests)]
