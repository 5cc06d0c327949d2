"""Quick test: load one model, answer a few prompts, report tokens, speed and peak memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

from slm_eval.backends.base import (
    Backend,
    Generation,
    GenerationRequest,
    LoadOptions,
    TokenCallback,
    is_encoder_backend,
)
from slm_eval.backends.catalogue import BACKENDS, choose_backend, load_backend
from slm_eval.errors import UserError
from slm_eval.metrics.figures import Figure, FigureLabel
from slm_eval.metrics.memory import peak_rss_bytes
from slm_eval.models.registry import ModelCard

MIB = 1024 * 1024


@dataclass(frozen=True)
class QuickTestPlan:
    """What to run: the model, the backend, the prompts and how to generate."""

    card: ModelCard
    backend: str | None
    prompts: tuple[str, ...]
    max_new_tokens: int
    system: str | None
    load_options: LoadOptions
    cache_dir: Path
    dry_run: bool = False


@dataclass(frozen=True)
class QuickTestAnswer:
    """One prompt's answer and its figures."""

    prompt: str
    generation: Generation
    label: FigureLabel
    peak_memory: Figure
    remote: bool = False
    network_rtt_s: float | None = None

    def figures(self) -> dict[str, Figure]:
        """TTFT, time per output token, end-to-end time and tokens/s, labelled.

        For a remote API, also the network apart: the round trip measured at load (``network_round_trip``)
        and this request's time from sending it to the response headers (``network``), both in ms.
        """
        g = self.generation
        ttft = g.time_to_first_token_s
        tpot = g.time_per_output_token_s
        figures = {
            "time_to_first_token": Figure(None if ttft is None else ttft * 1000, "ms", self.label),
            "time_per_output_token": Figure(None if tpot is None else tpot * 1000, "ms", self.label),
            "end_to_end": Figure(g.end_to_end_s * 1000, "ms", self.label),
            "decode_speed": Figure(g.decode_tokens_per_s, "tokens/s", self.label),
            "prompt_speed": Figure(g.prompt_tokens_per_s, "tokens/s", self.label),
        }
        if self.remote:
            rtt = self.network_rtt_s
            figures["network_round_trip"] = Figure(None if rtt is None else rtt * 1000, "ms", self.label)
            network = g.network_s
            figures["network"] = Figure(None if network is None else network * 1000, "ms", self.label)
        return figures

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready record of the answer."""
        return {
            "prompt": self.prompt,
            "output": self.generation.text,
            "prompt_tokens": self.generation.prompt_tokens,
            "output_tokens": self.generation.output_tokens,
            "finish_reason": self.generation.finish_reason,
            **{name: figure.to_dict() for name, figure in self.figures().items()},
            "peak_memory": self.peak_memory.to_dict(),
            "remote": self.remote,
        }


@dataclass(frozen=True)
class QuickTestResult:
    """Every answer, with the load time and the process's peak memory."""

    model: str
    backend: str
    threads: int | None
    answers: tuple[QuickTestAnswer, ...]
    load_time: Figure
    peak_memory: Figure

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view of the whole quick test."""
        return {
            "model": self.model,
            "backend": self.backend,
            "threads": self.threads,
            "load_time": self.load_time.to_dict(),
            "peak_memory": self.peak_memory.to_dict(),
            "results": [answer.to_dict() for answer in self.answers],
        }


class QuickTestListener(Protocol):
    """Receives progress as a quick test runs (the CLI streams answers through it)."""

    def on_start(self, index: int, prompt: str) -> None:
        """A prompt is about to be answered."""

    def on_token(self, index: int, piece: str) -> None:
        """A piece of the answer arrived."""

    def on_answer(self, answer: QuickTestAnswer) -> None:
        """An answer is complete."""


class SilentListener:
    """A listener that ignores everything (for ``--json``)."""

    def on_start(self, index: int, prompt: str) -> None:
        pass

    def on_token(self, index: int, piece: str) -> None:
        pass

    def on_answer(self, answer: QuickTestAnswer) -> None:
        pass


def run_quick_test(plan: QuickTestPlan, listener: QuickTestListener) -> QuickTestResult:
    """Load the model, answer each prompt in turn, then close the model.

    The peak memory after each answer is the peak resident size of this process so far: the model
    and everything it allocated.

    Raises:
        UserError: an empty prompt, a model that cannot be loaded, a missing package.
    """
    check_prompts(plan.prompts)
    entry = choose_backend(plan.card, plan.backend)
    if plan.dry_run:
        entry = BACKENDS["fake"]  # after the real choice, so a dry run fails where the real run would
    label: FigureLabel = "scripted" if entry.name == "fake" else "measured"
    clock = plan.load_options.clock
    load_started = clock.now()
    loaded = load_backend(entry, plan.card, plan.load_options, plan.cache_dir)
    if is_encoder_backend(loaded):
        loaded.close()
        raise UserError(f"{plan.card.name} is an encoder: it runs a task head (--task), not text generation")
    backend = cast(Backend, loaded)
    load_seconds = clock.now() - load_started
    remote = not backend.capabilities.local
    round_trip = getattr(backend, "network_rtt_s", None)  # a network API's, measured at load
    answers = []
    try:
        for index, prompt in enumerate(plan.prompts):
            listener.on_start(index, prompt)
            request = GenerationRequest(prompt=prompt, max_new_tokens=plan.max_new_tokens, system=plan.system)
            (generation,) = backend.generate([request], _forward_tokens(listener, index))
            answer = QuickTestAnswer(prompt, generation, label, _peak_memory(remote), remote, round_trip)
            answers.append(answer)
            listener.on_answer(answer)
    finally:
        backend.close()
    return QuickTestResult(
        model=plan.card.name,
        backend=entry.name,
        threads=plan.load_options.threads,
        answers=tuple(answers),
        load_time=Figure(load_seconds, "s", "measured"),
        peak_memory=_peak_memory(remote),
    )


def _forward_tokens(listener: QuickTestListener, index: int) -> TokenCallback:
    """Sends a backend's pieces to the listener under the prompt's own index."""

    def forward(_: int, piece: str) -> None:
        listener.on_token(index, piece)

    return forward


def _peak_memory(remote: bool) -> Figure:
    """This process's peak resident size; nothing for a remote API, whose memory is not on this machine."""
    return Figure(None if remote else peak_rss_bytes() / MIB, "MiB", "measured")


def check_prompts(prompts: Sequence[str]) -> tuple[str, ...]:
    """The prompts as a tuple, or a one-line error for none or an empty one."""
    if not prompts:
        raise UserError("no prompt given: pass --input TEXT (repeatable) or --file PATH")
    for prompt in prompts:
        if not prompt.strip():
            raise UserError("empty prompt: --input needs some text")
    return tuple(prompts)
