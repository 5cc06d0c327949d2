"""Quick test for encoders: load one encoder with a task head, run it on a few texts, report latency and memory.

Example:
    slm-eval quick-test --model all-minilm-l6-v2 --task qa --context "Driver Nathaniel Balogun was detained." \\
        --input "Who was detained?"
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

from slm_eval.backends.base import EncoderBackend, EncoderPrediction, EncoderRequest, EncoderTask, LoadOptions
from slm_eval.backends.catalogue import choose_backend, load_backend
from slm_eval.backends.encoder_heads import UNTRAINED_HEAD_WARNING
from slm_eval.errors import UserError
from slm_eval.metrics.figures import Figure
from slm_eval.metrics.memory import peak_rss_bytes
from slm_eval.models.registry import ModelCard

MIB = 1024 * 1024


@dataclass(frozen=True)
class EncoderQuickTestPlan:
    """What to run: the encoder, its backend and head, the texts and, for QA, the passage."""

    card: ModelCard
    backend: str | None
    task: EncoderTask
    texts: tuple[str, ...]
    context: str | None
    load_options: LoadOptions
    cache_dir: Path


@dataclass(frozen=True)
class EncoderAnswer:
    """One input and what the head made of it."""

    text: str
    prediction: EncoderPrediction
    peak_memory: Figure

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready record of the answer."""
        p = self.prediction
        return {
            "input": self.text,
            "output": p.text,
            "confidence": p.confidence,
            "detail": dict(p.detail),
            "input_tokens": p.input_tokens,
            "latency": Figure(p.end_to_end_s * 1000, "ms", "measured").to_dict(),
            "peak_memory": self.peak_memory.to_dict(),
        }


@dataclass(frozen=True)
class EncoderQuickTestResult:
    """Every answer, the head's state, the load time and the process's peak memory."""

    model: str
    backend: str
    task: EncoderTask
    head_trained: bool
    answers: tuple[EncoderAnswer, ...]
    load_time: Figure
    peak_memory: Figure

    @property
    def warning(self) -> str | None:
        """Why the answers mean nothing, when the head was initialised at random."""
        if self.head_trained:
            return None
        return UNTRAINED_HEAD_WARNING.format(task=self.task, model=self.model)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view of the whole quick test."""
        return {
            "model": self.model,
            "backend": self.backend,
            "task": self.task,
            "head_trained": self.head_trained,
            "warning": self.warning,
            "load_time": self.load_time.to_dict(),
            "peak_memory": self.peak_memory.to_dict(),
            "results": [answer.to_dict() for answer in self.answers],
        }


def check_encoder_inputs(task: EncoderTask, texts: tuple[str, ...], context: str | None) -> None:
    """A one-line error for no text, an empty one, or QA without a passage."""
    if not texts:
        raise UserError("no input given: pass --input TEXT (repeatable) or --file PATH")
    if any(not text.strip() for text in texts):
        raise UserError("empty input: --input needs some text")
    if task == "qa" and (context is None or not context.strip()):
        raise UserError("--task qa needs --context TEXT: the passage the answer is taken from")
    if task != "qa" and context is not None:
        raise UserError(f"--context applies to --task qa only, not to --task {task}")


def run_encoder_quick_test(plan: EncoderQuickTestPlan) -> EncoderQuickTestResult:
    """Load the encoder with its head, run each text, close it.

    Raises:
        UserError: bad inputs, a model that cannot be loaded, a missing package.
    """
    check_encoder_inputs(plan.task, plan.texts, plan.context)
    entry = choose_backend(plan.card, plan.backend)
    if entry.name == "fake":
        raise UserError("the fake backend cannot run encoders (no --dry-run for them); use transformers or onnx")
    clock = plan.load_options.clock
    started = clock.now()
    loaded = load_backend(entry, plan.card, plan.load_options, plan.cache_dir)
    if not callable(getattr(loaded, "predict", None)):
        loaded.close()
        raise UserError(f"{plan.card.name} did not load as an encoder on the {entry.name} backend")
    backend = cast(EncoderBackend, loaded)
    load_seconds = clock.now() - started
    answers = []
    try:
        for text in plan.texts:
            (prediction,) = backend.predict([EncoderRequest(text=text, context=plan.context)])
            answers.append(EncoderAnswer(text, prediction, _peak_memory()))
        trained = backend.head_trained
    finally:
        backend.close()
    return EncoderQuickTestResult(
        model=plan.card.name,
        backend=entry.name,
        task=plan.task,
        head_trained=trained,
        answers=tuple(answers),
        load_time=Figure(load_seconds, "s", "measured"),
        peak_memory=_peak_memory(),
    )


def _peak_memory() -> Figure:
    return Figure(peak_rss_bytes() / MIB, "MiB", "measured")
