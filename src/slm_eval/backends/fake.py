"""A deterministic backend: scripted answers and scripted timings, for tests and ``--dry-run``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from slm_eval.backends.base import (
    Capabilities,
    Generation,
    GenerationRequest,
    LoadOptions,
    TokenCallback,
)
from slm_eval.errors import UserError
from slm_eval.metrics.timing import SteppingClock
from slm_eval.models.registry import ModelCard


class FakeBackend:
    """Answers from a script (prompt to answer), or a fixed template; one word is one token.

    Timing is scripted on a :class:`SteppingClock`: ``prompt_token_s`` per prompt token before the
    first output token, then ``output_token_s`` per output token.
    """

    name = "fake"
    capabilities = Capabilities(generate=True, streaming=True, chat_template=False)
    parameter_count: int | None = None

    def __init__(
        self,
        model_name: str,
        script: Mapping[str, str] | None = None,
        *,
        clock: SteppingClock | None = None,
        prompt_token_s: float = 0.001,
        output_token_s: float = 0.01,
    ) -> None:
        self._model_name = model_name
        self._script = dict(script or {})
        self._clock = clock or SteppingClock()
        self._prompt_token_s = prompt_token_s
        self._output_token_s = output_token_s
        self._closed = False

    def answer_for(self, prompt: str) -> str:
        """The scripted answer, or ``(dry run) <model> received N words: <start of prompt>``."""
        if prompt in self._script:
            return self._script[prompt]
        words = prompt.split()
        preview = " ".join(words[:8]) + (" ..." if len(words) > 8 else "")
        return f"(dry run) {self._model_name} received {len(words)} words: {preview}"

    def generate(
        self, requests: Sequence[GenerationRequest], on_token: TokenCallback | None = None
    ) -> list[Generation]:
        if self._closed:
            raise RuntimeError("the fake backend was closed")
        results = []
        for index, request in enumerate(requests):
            if not request.prompt.strip():
                raise UserError("empty prompt: give some text to answer")
            results.append(self._generate_one(index, request, on_token))
        return results

    def _generate_one(self, index: int, request: GenerationRequest, on_token: TokenCallback | None) -> Generation:
        words = self.answer_for(request.prompt).split(" ")
        pieces = words[: request.max_new_tokens]
        prompt_tokens = len(request.prompt.split())
        started = self._clock.now()
        self._clock.advance(self._prompt_token_s * prompt_tokens)
        token_times = []
        for position, word in enumerate(pieces):
            if position:
                self._clock.advance(self._output_token_s)
            token_times.append(self._clock.now())
            if on_token is not None:
                on_token(index, word if position == 0 else " " + word)
        return Generation(
            text=" ".join(pieces),
            prompt_tokens=prompt_tokens,
            output_tokens=len(pieces),
            started_at=started,
            token_times=tuple(token_times),
            finished_at=self._clock.now(),
            finish_reason="length" if len(words) > request.max_new_tokens else "stop",
            prompt_text=request.prompt,
        )

    def close(self) -> None:
        self._closed = True


def load(card: ModelCard, location: Path | None, options: LoadOptions) -> FakeBackend:
    """Load the fake backend for any model card; no weights are read."""
    return FakeBackend(card.name)
