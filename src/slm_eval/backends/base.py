"""The backend contract: load a model, generate for a batch of requests with per-request timing, close.

Every backend (llama.cpp, transformers, ONNX Runtime, an HTTP API, the fake) implements
:class:`Backend`, and each backend module exposes one ``load(card, location, options) -> Backend``
function, named in :mod:`slm_eval.backends.catalogue`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from slm_eval.errors import UserError
from slm_eval.metrics.timing import Clock, MonotonicClock, rate_per_second
from slm_eval.models.registry import ModelCard

FinishReason = Literal["stop", "length"]
EncoderTask = Literal["qa", "ner", "classify"]

# Called with (request index, text piece) as each piece of output arrives.
TokenCallback = Callable[[int, str], None]


@dataclass(frozen=True)
class Capabilities:
    """What a loaded backend can do, declared up front so callers never probe by trial.

    Attributes:
        generate: produces text from a prompt (decoders, APIs).
        streaming: reports output piece by piece, so time to first token is real.
        chat_template: formats prompts with the model's own chat template.
        parallel_batch: runs several requests at once; when ``False`` a batch runs one by one.
        encoder_tasks: the task heads available on an encoder.
        local: runs on this machine, so its memory and energy are this machine's.
        token_counts: ``"exact"`` from the model's tokenizer, or ``"reported"`` by a server.
        prefix_cache: can reuse the KV cache of a prompt prefix shared between requests.
    """

    generate: bool
    streaming: bool
    chat_template: bool
    parallel_batch: bool = False
    encoder_tasks: frozenset[EncoderTask] = frozenset()
    local: bool = True
    token_counts: Literal["exact", "reported"] = "exact"
    prefix_cache: bool = False


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model.

    Attributes:
        threads: CPU threads for generation and prompt processing; ``None`` means one per CPU this
            process may run on.
        context_length: the context window to allocate, in tokens.
        seed: the random seed handed to the runtime.
        clock: the clock every timing is read from.
        chat: force the chat template on or off; ``None`` follows the model card, then the weights.
        prefix_cache: keep the KV cache between requests so a prompt prefix shared with the previous
            request (instructions, few-shot examples) is not computed again; time to first token then
            covers only the new part of the prompt. Off by default, so each request starts cold.
        dtype: the weights' number format for backends that choose one (``float32`` or ``bfloat16``).
        trust_remote_code: let transformers run Python code shipped with the model; only when the user asks.
        encoder_task: the task head an encoder is loaded with (``qa``, ``ner`` or ``classify``).
        provider: the ONNX Runtime execution provider (``cpu`` or ``cuda``); ``None`` picks the best present.
    """

    threads: int | None = None
    context_length: int = 2048
    seed: int = 0
    clock: Clock = field(default_factory=MonotonicClock)
    chat: bool | None = None
    prefix_cache: bool = False
    dtype: str = "float32"
    trust_remote_code: bool = False
    encoder_task: EncoderTask = "qa"
    provider: str | None = None


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to answer.

    Attributes:
        prompt: the user's text (wrapped in the chat template for chat models).
        max_new_tokens: the most tokens to generate.
        temperature: 0 is greedy decoding, the default for evaluation.
        system: an optional system message for chat models.
        stop: extra strings that end the output.
        ignore_eos: keep generating past the end-of-sequence token (for speed benchmarks only).
    """

    prompt: str
    max_new_tokens: int = 128
    temperature: float = 0.0
    system: str | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False


@dataclass(frozen=True)
class Generation:
    """One answer with its timing, all instants read from the backend's clock (seconds).

    Attributes:
        text: the generated text, without the prompt.
        prompt_tokens: tokens fed to the model, the chat template included.
        output_tokens: tokens generated.
        started_at: the instant the request was submitted.
        token_times: the instant each output token became available, in order.
        finished_at: the instant the request completed.
        finish_reason: ``stop`` (end of sequence or a stop string) or ``length`` (hit max_new_tokens).
        prompt_text: the exact text the model saw, after the chat template.
        network_s: for a model behind a network API, seconds from sending the request to receiving the
            response headers: connection set-up (TCP, TLS) when none is kept alive, the upload, and the
            server's queue and work before its headers; ``None`` for a local backend. It is part of the
            end-to-end time, kept apart so remote figures are never read as on-device ones.
    """

    text: str
    prompt_tokens: int
    output_tokens: int
    started_at: float
    token_times: tuple[float, ...]
    finished_at: float
    finish_reason: FinishReason
    prompt_text: str = ""
    network_s: float | None = None

    @property
    def time_to_first_token_s(self) -> float | None:
        """Seconds from submission to the first output token."""
        return self.token_times[0] - self.started_at if self.token_times else None

    @property
    def end_to_end_s(self) -> float:
        """Seconds from submission to completion."""
        return self.finished_at - self.started_at

    @property
    def time_per_output_token_s(self) -> float | None:
        """Mean seconds between output tokens after the first (decode speed)."""
        if len(self.token_times) < 2:
            return None
        return (self.token_times[-1] - self.token_times[0]) / (len(self.token_times) - 1)

    @property
    def decode_tokens_per_s(self) -> float | None:
        """Output tokens per second after the first token."""
        if len(self.token_times) < 2:
            return None
        return rate_per_second(len(self.token_times) - 1, self.token_times[-1] - self.token_times[0])

    @property
    def prompt_tokens_per_s(self) -> float | None:
        """Prompt tokens processed per second, from submission to the first token."""
        ttft = self.time_to_first_token_s
        return rate_per_second(self.prompt_tokens, ttft) if ttft is not None else None


def output_budget(request: GenerationRequest, prompt_tokens: int, context_length: int) -> int:
    """How many tokens a local model may generate for ``request``: its maximum, capped by the context left.

    Raises:
        UserError: an empty prompt, or a prompt that fills the context window.
    """
    if not request.prompt.strip():
        raise UserError("empty prompt: give some text to answer")
    room = context_length - prompt_tokens
    if room <= 0:
        raise UserError(
            f"the prompt is {prompt_tokens} tokens, which fills the context window of "
            f"{context_length}; shorten it or raise --context-length"
        )
    return min(request.max_new_tokens, room)


@dataclass(frozen=True)
class EncoderRequest:
    """One input for an encoder's task head.

    Attributes:
        text: the question (``qa``), or the text to label (``ner``) or classify (``classify``).
        context: the passage an extractive answer is taken from (``qa`` only).
    """

    text: str
    context: str | None = None


@dataclass(frozen=True)
class EncoderPrediction:
    """What an encoder's task head made of one input, with its timing (seconds, from the backend's clock).

    Attributes:
        text: the answer span (``qa``); the entities as JSON ``{"entities": [{"text", "type", "start",
            "end"}]}`` (``ner``); the label (``classify``). Task scorers read this like a decoder's output.
        input_tokens: tokens fed to the model, special tokens included.
        started_at: the instant the request was submitted (tokenization included).
        finished_at: the instant the prediction was ready.
        confidence: the head's probability for its answer (span, mean entity token, or label), 0..1.
        detail: task-specific facts: ``start``/``end`` character offsets in the context (``qa``), the
            entity list (``ner``), or the probability of each label (``classify``).
    """

    text: str
    input_tokens: int
    started_at: float
    finished_at: float
    confidence: float | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def end_to_end_s(self) -> float:
        """Seconds from submission to the prediction."""
        return self.finished_at - self.started_at


class EncoderBackend(Protocol):
    """A loaded encoder with one task head (extractive QA, token classification or sequence classification)."""

    @property
    def name(self) -> str:
        """The backend's catalogue name, e.g. ``onnx``."""
        ...

    @property
    def capabilities(self) -> Capabilities:
        """What this backend can do; ``encoder_tasks`` holds the loaded head's task."""
        ...

    @property
    def parameter_count(self) -> int | None:
        """Parameters of the loaded model, or ``None`` when the runtime cannot tell."""
        ...

    @property
    def task(self) -> EncoderTask:
        """The task head loaded."""
        ...

    @property
    def head_trained(self) -> bool:
        """False when the head's weights were initialised at random (its scores then mean nothing)."""
        ...

    @property
    def labels(self) -> tuple[str, ...]:
        """The head's labels in output order (BIO tags for ``ner``, classes for ``classify``; none for ``qa``)."""
        ...

    def predict(self, requests: Sequence[EncoderRequest]) -> list[EncoderPrediction]:
        """Run the head on each request, in order, timing each one.

        Raises:
            UserError: a request cannot be served (empty text, a ``qa`` request without context).
        """
        ...

    def close(self) -> None:
        """Free the model. The backend is unusable afterwards."""
        ...


def is_encoder_backend(backend: object) -> bool:
    """True for a loaded encoder (it has ``predict``), false for a generating backend."""
    return callable(getattr(backend, "predict", None))


class Backend(Protocol):
    """A loaded model that answers requests."""

    @property
    def name(self) -> str:
        """The backend's catalogue name, e.g. ``llamacpp``."""
        ...

    @property
    def capabilities(self) -> Capabilities:
        """What this backend can do with the loaded model."""
        ...

    @property
    def parameter_count(self) -> int | None:
        """Parameters of the loaded model as the runtime counts them, or ``None`` when it cannot tell."""
        ...

    def generate(
        self, requests: Sequence[GenerationRequest], on_token: TokenCallback | None = None
    ) -> list[Generation]:
        """Answer each request, in order, timing each one.

        Args:
            requests: the prompts; a backend without ``parallel_batch`` runs them one by one.
            on_token: called with (request index, text piece) as output arrives.

        Raises:
            UserError: a request cannot be served (an empty prompt, a prompt longer than the context).
        """
        ...

    def close(self) -> None:
        """Free the model. The backend is unusable afterwards."""
        ...


class BackendLoader(Protocol):
    """The ``load`` function each backend module exposes."""

    def __call__(self, card: ModelCard, location: Path | None, options: LoadOptions) -> Backend | EncoderBackend:
        """Load the model described by ``card`` whose weights are at ``location``."""
        ...
