"""GGUF models through llama-cpp-python: explicit threads, the model's chat template, greedy streaming.

By default each request starts from an empty KV cache, so time to first token always includes the whole
prompt. With ``LoadOptions(prefix_cache=True)`` the cache is kept, and llama-cpp-python evaluates only the
part of a prompt that differs from the previous one (a shared instruction and few-shot prefix).
"""

from __future__ import annotations

import codecs
import ctypes
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import llama_cpp
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from slm_eval.backends.base import (
    Capabilities,
    FinishReason,
    Generation,
    GenerationRequest,
    LoadOptions,
    TokenCallback,
    output_budget,
)
from slm_eval.backends.streaming import StopStringStream
from slm_eval.devices.cpus import usable_cpu_count
from slm_eval.errors import UserError
from slm_eval.logs import get_logger
from slm_eval.models.registry import ModelCard

GGUF_MAGIC = b"GGUF"
log = get_logger(__name__)
native_log = get_logger("slm_eval.llama_cpp")


class _NativeLogRoute:
    """Sends llama.cpp's own log lines to the ``slm_eval.llama_cpp`` logger at DEBUG level, keeping the last 50.

    llama.cpp writes some notices to stderr even when llama-cpp-python is told to be quiet; routed here
    they land in the log file (and on the console with ``--debug``) instead of among the answers.
    """

    def __init__(self) -> None:
        self._pending = ""
        self.lines: list[str] = []
        self.callback = llama_cpp.llama_log_callback(self._receive)

    def _receive(self, level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        self._pending += text.decode("utf-8", errors="replace")
        while "\n" in self._pending:
            line, self._pending = self._pending.split("\n", 1)
            if line.strip():
                native_log.debug("%s", line)
                self.lines = [*self.lines[-49:], line.strip()]

    def install(self) -> None:
        llama_cpp.llama_log_set(self.callback, ctypes.c_void_p(0))

    def clear(self) -> None:
        """Forget the lines kept so far (before an operation whose failure :meth:`reason` should explain)."""
        self.lines = []

    def reason(self) -> str:
        """The most telling line of a failure: the last one that says 'failed' or 'error', else the last."""
        failing = [line for line in self.lines if "fail" in line.lower() or "error" in line.lower()]
        return (failing or self.lines or ["no message from llama.cpp"])[-1]


NATIVE_LOG = _NativeLogRoute()


def check_gguf_file(path: Path) -> None:
    """Fail with one line when ``path`` is not a readable GGUF file (before llama.cpp sees it).

    Raises:
        UserError: missing, unreadable, empty, or without the GGUF magic bytes.
    """
    try:
        with path.open("rb") as handle:
            header = handle.read(8)
    except OSError as exc:
        raise UserError(f"cannot read GGUF file {path}: {exc.strerror or exc}") from exc
    if header[:4] != GGUF_MAGIC:
        raise UserError(f"{path} is not a GGUF file (it does not start with the GGUF magic bytes)")
    if len(header) < 8:
        raise UserError(f"GGUF file {path} is truncated: it ends inside its header")


class LlamaCppBackend:
    """A loaded GGUF model."""

    name = "llamacpp"

    def __init__(self, llm: Any, path: Path, chat: bool, options: LoadOptions) -> None:
        self._llm = llm
        self._path = path
        self._clock = options.clock
        self._context_length = int(llm.n_ctx())
        self._formatter = _chat_formatter(llm) if chat else None
        self._prefix_cache = options.prefix_cache
        self.capabilities = Capabilities(
            prefix_cache=True, generate=True, streaming=True, chat_template=self._formatter is not None
        )

    @property
    def parameter_count(self) -> int | None:
        return int(self._llm._model.n_params()) if self._llm is not None else None

    @property
    def chat(self) -> bool:
        """Whether prompts go through the model's chat template."""
        return self._formatter is not None

    def format_prompt(self, request: GenerationRequest) -> str:
        """The exact text the model sees: the chat template applied, or the prompt as it is."""
        if self._formatter is None:
            return request.prompt if request.system is None else f"{request.system}\n\n{request.prompt}"
        messages: list[Any] = []
        if request.system is not None:
            messages.append({"role": "system", "content": request.system})
        messages.append({"role": "user", "content": request.prompt})
        return str(self._formatter(messages=messages).prompt)

    def tokenize(self, text: str) -> list[int]:
        """Token ids of a formatted prompt (special tokens parsed; BOS added unless the template has it)."""
        add_bos = self._formatter is None
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    def generate(
        self, requests: Sequence[GenerationRequest], on_token: TokenCallback | None = None
    ) -> list[Generation]:
        return [self._generate_one(index, request, on_token) for index, request in enumerate(requests)]

    def _generate_one(self, index: int, request: GenerationRequest, on_token: TokenCallback | None) -> Generation:
        prompt_text = self.format_prompt(request)
        tokens = self.tokenize(prompt_text)
        budget = output_budget(request, len(tokens), self._context_length)
        llm = self._llm
        vocab = llm._model.vocab
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stream = StopStringStream(request.stop, None if on_token is None else lambda piece: on_token(index, piece))
        token_times: list[float] = []
        finish: FinishReason = "length"
        if not self._prefix_cache:
            llm.reset()  # llama-cpp-python would otherwise reuse the longest prefix kept from the last request
        started = self._clock.now()
        for token in llm.generate(tokens, temp=request.temperature, top_k=40, top_p=0.95, repeat_penalty=1.0):
            now = self._clock.now()
            if not request.ignore_eos and llama_cpp.llama_vocab_is_eog(vocab, token):
                finish = "stop"
                break
            token_times.append(now)
            if stream.push(decoder.decode(llm.detokenize([token]))):
                finish = "stop"
                break
            if len(token_times) >= budget:
                break
        stream.push(decoder.decode(b"", final=True))
        text = stream.finish()
        finished = self._clock.now()
        return Generation(
            text=text,
            prompt_tokens=len(tokens),
            output_tokens=len(token_times),
            started_at=started,
            token_times=tuple(token_times),
            finished_at=finished,
            finish_reason=finish,
            prompt_text=prompt_text,
        )

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None


def _chat_formatter(llm: Any) -> Jinja2ChatFormatter | None:
    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return None
    model = llm._model
    eos_id, bos_id = model.token_eos(), model.token_bos()
    eos = model.token_get_text(eos_id) if eos_id != -1 else ""
    bos = model.token_get_text(bos_id) if bos_id != -1 else ""
    return Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos, stop_token_ids=[eos_id])


def load(card: ModelCard, location: Path | None, options: LoadOptions) -> LlamaCppBackend:
    """Load a GGUF file with llama.cpp.

    Raises:
        UserError: the model is not a decoder, or the file is not a loadable GGUF file.
    """
    if card.kind != "decoder":
        raise UserError(f"{card.name} is an {card.kind} model; the llamacpp backend runs decoders (GGUF) only")
    if location is None or location.is_dir():
        raise UserError(f"the llamacpp backend needs a .gguf file, not {location}")
    check_gguf_file(location)
    NATIVE_LOG.install()
    threads = options.threads or usable_cpu_count()
    try:
        llm = llama_cpp.Llama(
            model_path=str(location),
            n_ctx=options.context_length,
            n_batch=min(512, options.context_length),
            n_threads=threads,
            n_threads_batch=threads,
            seed=options.seed,
            verbose=False,
        )
    except (ValueError, RuntimeError) as exc:
        if "context" in str(exc).lower():
            # The weights loaded but the KV cache and compute buffers could not be allocated.
            raise MemoryError(
                f"llama.cpp could not allocate a context of {options.context_length} tokens for {location.name} "
                f"({exc}); lower --context-length or give the model more memory"
            ) from exc
        raise UserError(
            f"llama.cpp cannot load {location}: the file is truncated, corrupt or of an unsupported "
            f"architecture ({exc})"
        ) from exc
    wanted = options.chat if options.chat is not None else card.chat
    has_template = bool(llm.metadata.get("tokenizer.chat_template"))
    if wanted and not has_template:
        log.warning("%s has no chat template in its GGUF metadata; using plain completion", location.name)
    chat = has_template if wanted is None else bool(wanted and has_template)
    log.debug("loaded %s: n_ctx=%d threads=%d chat=%s", location, options.context_length, threads, chat)
    return LlamaCppBackend(llm, location, chat, options)
