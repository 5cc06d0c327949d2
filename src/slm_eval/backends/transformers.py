"""PyTorch decoders through transformers: local folders, dequantized GGUF files, hub ids when online.

Weights load from safetensors only (never from pickles), and code shipped with a model runs only with
``LoadOptions(trust_remote_code=True)``. Generation is greedy by default and streams through a
:class:`transformers.generation.streamers.BaseStreamer` that reads the clock as each token arrives, so time
to first token and time per output token are measured, not derived.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import transformers
from transformers.generation.streamers import BaseStreamer

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
from slm_eval.errors import UserError, first_line
from slm_eval.logs import get_logger, quiet_library_notices
from slm_eval.metrics.timing import Clock
from slm_eval.models.registry import ModelCard

if TYPE_CHECKING:
    from slm_eval.backends.transformers_encoder import TransformersEncoderBackend

log = get_logger(__name__)

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}
OFFLINE_MESSAGE = "not available offline: download it first or give a local path"
_TRUE = {"1", "true", "yes", "on"}


class _TimedStreamer(BaseStreamer):
    """Receives each generated token from ``generate``, reads the clock, decodes and checks stop conditions.

    The first ``put`` carries the prompt and is skipped. An end-of-sequence token ends the output without
    being counted (unless ``ignore_eos``); the caller's stopping criterion reads :attr:`done`.
    """

    def __init__(
        self,
        tokenizer: Any,
        clock: Clock,
        eos_ids: frozenset[int],
        stream: StopStringStream,
        budget: int,
    ) -> None:
        self._tokenizer = tokenizer
        self._clock = clock
        self._eos_ids = eos_ids
        self._stream = stream
        self._budget = budget
        self._prompt_seen = False
        self._decoded = ""
        self.token_ids: list[int] = []
        self.token_times: list[float] = []
        self.finish: FinishReason = "length"
        self.done = False

    def put(self, value: Any) -> None:
        """Take the prompt (first call) or the next generated token."""
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        now = self._clock.now()
        for token in value.reshape(-1).tolist():
            if self.done:
                return
            self._take(int(token), now)

    def _take(self, token: int, now: float) -> None:
        if token in self._eos_ids:
            self.finish, self.done = "stop", True
            return
        self.token_ids.append(token)
        self.token_times.append(now)
        text = self._tokenizer.decode(self.token_ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return  # an unfinished multi-byte character: wait for the next token
        piece, self._decoded = text[len(self._decoded) :], text
        if self._stream.push(piece):
            self.finish, self.done = "stop", True
        elif len(self.token_ids) >= self._budget:
            self.done = True

    def end(self) -> None:
        """Flush a trailing partial character once generation ends."""
        text = self._tokenizer.decode(self.token_ids, skip_special_tokens=True)
        if not self._stream.stopped and len(text) > len(self._decoded):
            self._stream.push(text[len(self._decoded) :])
            self._decoded = text


class _StopWhenDone(transformers.StoppingCriteria):
    """Ends generation once the streamer says so (a stop string, the budget, an end-of-sequence token)."""

    def __init__(self, done: Callable[[], bool]) -> None:
        self._done = done

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        return torch.full((input_ids.shape[0],), self._done(), dtype=torch.bool, device=input_ids.device)


class TransformersBackend:
    """A decoder loaded with transformers on the CPU (or CUDA when present)."""

    name = "transformers"

    def __init__(self, model: Any, tokenizer: Any, chat: bool, options: LoadOptions) -> None:
        self._model = model
        self._tokenizer = tokenizer
        self._chat = chat
        self._clock = options.clock
        self._context_length = options.context_length
        self._seed = options.seed
        from slm_eval.backends.transformers_quantized import count_parameters

        self._parameters = count_parameters(model)  # dynamic int8 layers pack their weights out of parameters()
        self._eos_ids = _eos_ids(model, tokenizer)
        self.capabilities = Capabilities(generate=True, streaming=True, chat_template=chat)

    @property
    def parameter_count(self) -> int | None:
        return self._parameters

    @property
    def chat(self) -> bool:
        """Whether prompts go through the model's chat template."""
        return self._chat

    @property
    def device(self) -> str:
        """The device the weights are on, e.g. ``cpu`` or ``cuda:0``."""
        return str(self._model.device)

    def format_prompt(self, request: GenerationRequest) -> str:
        """The exact text the model sees: the chat template applied, or the prompt as it is."""
        if not self._chat:
            return request.prompt if request.system is None else f"{request.system}\n\n{request.prompt}"
        messages: list[dict[str, str]] = []
        if request.system is not None:
            messages.append({"role": "system", "content": request.system})
        messages.append({"role": "user", "content": request.prompt})
        return str(self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))

    def tokenize(self, text: str) -> list[int]:
        """Token ids of a formatted prompt (special tokens added unless the chat template put them in)."""
        encoded = self._tokenizer(text, add_special_tokens=not self._chat)
        return [int(token) for token in encoded["input_ids"]]

    def generate(
        self, requests: Sequence[GenerationRequest], on_token: TokenCallback | None = None
    ) -> list[Generation]:
        if self._model is None:
            raise UserError("the transformers backend was closed; load the model again")
        return [self._generate_one(index, request, on_token) for index, request in enumerate(requests)]

    def _generate_one(self, index: int, request: GenerationRequest, on_token: TokenCallback | None) -> Generation:
        prompt_text = self.format_prompt(request)
        tokens = self.tokenize(prompt_text)
        budget = output_budget(request, len(tokens), self._context_length)
        stream = StopStringStream(request.stop, None if on_token is None else lambda piece: on_token(index, piece))
        eos_ids = frozenset() if request.ignore_eos else self._eos_ids
        streamer = _TimedStreamer(self._tokenizer, self._clock, eos_ids, stream, budget)
        config = self._generation_config(request, budget)
        input_ids = torch.tensor([tokens], dtype=torch.long, device=self._model.device)
        torch.manual_seed(self._seed)
        started = self._clock.now()
        if budget > 0:
            with torch.inference_mode():
                self._model.generate(
                    input_ids=input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    generation_config=config,
                    streamer=streamer,
                    stopping_criteria=transformers.StoppingCriteriaList([_StopWhenDone(lambda: streamer.done)]),
                )
        text = stream.finish()
        finished = self._clock.now()
        return Generation(
            text=text,
            prompt_tokens=len(tokens),
            output_tokens=len(streamer.token_times),
            started_at=started,
            token_times=tuple(streamer.token_times),
            finished_at=finished,
            finish_reason=streamer.finish,
            prompt_text=prompt_text,
        )

    def _generation_config(self, request: GenerationRequest, budget: int) -> Any:
        config = copy.deepcopy(self._model.generation_config)
        config.max_new_tokens = budget
        config.min_new_tokens = None
        config.max_length = None
        config.do_sample = request.temperature > 0
        config.temperature = request.temperature if request.temperature > 0 else None
        config.top_k = 40 if request.temperature > 0 else None
        config.top_p = 0.95 if request.temperature > 0 else None
        # The streamer ends the output at an end-of-sequence token, so generate itself never stops on one;
        # with ignore_eos the model simply carries on past it, as llama.cpp does. (None would mean "the default".)
        config.eos_token_id = []
        if config.pad_token_id is None:
            config.pad_token_id = next(iter(self._eos_ids), 0)
        return config

    def close(self) -> None:
        self._model = None
        self._tokenizer = None


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """Every end-of-sequence id the model's generation config or its tokenizer declares."""
    ids: set[int] = set()
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(item) for item in value)
    return frozenset(ids)


def _hub_offline() -> bool:
    """True when the environment tells Hugging Face libraries not to use the network."""
    from huggingface_hub import constants

    flagged = any(
        os.environ.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )
    return flagged or bool(constants.HF_HUB_OFFLINE)


def model_sources(card: ModelCard, location: Path | None) -> tuple[str, dict[str, Any], str]:
    """Where ``from_pretrained`` reads from, its extra arguments, and a name for messages."""
    if location is not None:
        if not location.exists():
            raise UserError(f"model path {location} does not exist")
        if location.is_file():
            if location.suffix.lower() != ".gguf":
                raise UserError(f"the transformers backend needs a model folder or a .gguf file, not {location}")
            # GGUF holds no pickles: transformers reads the tensors and dequantizes them.
            return str(location.parent), {"gguf_file": location.name, "local_files_only": True}, location.name
        if not (location / "config.json").is_file():
            if (location / "adapter_config.json").is_file():
                raise UserError(
                    f"{location} holds a LoRA adapter, not a whole model: train again with --merge to convert, "
                    "quantize or run it as an encoder"
                )
            raise UserError(f"folder {location} is not a transformers model: it has no config.json")
        return str(location), {"use_safetensors": True, "local_files_only": True}, str(location)
    if card.hub_id is None:
        raise UserError(f"{card.name} has no local weights and no hub id; give a local path as --model")
    return card.hub_id, {"use_safetensors": True, "local_files_only": _hub_offline()}, card.hub_id


def _load_parts(card: ModelCard, location: Path | None, options: LoadOptions, dtype: torch.dtype) -> tuple[Any, Any]:
    from slm_eval.backends.transformers_adapter import apply_adapter, is_adapter, read_base

    if location is not None and is_adapter(location):  # slm-eval train without --merge: base + LoRA adapter
        base = read_base(location)
        model, _ = _load_parts(card, base.weights, options, dtype)
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(location), local_files_only=True)
        return apply_adapter(model, location), tokenizer
    source, extra, label = model_sources(card, location)
    hub = location is None
    offline = hub and bool(extra["local_files_only"])
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            source,
            trust_remote_code=options.trust_remote_code,
            **{k: v for k, v in extra.items() if k != "use_safetensors"},
        )
    except (OSError, ValueError) as exc:
        if hub:
            raise hub_error(label, offline, exc) from exc
        raise UserError(
            f"cannot load the tokenizer of {label}: it is missing or unreadable ({first_line(exc)})"
        ) from exc
    from slm_eval.backends.transformers_quantized import load_quantized, read_recipe

    quiet_library_notices()  # transformers imports torchao (when installed), which logs CPU-build notices
    try:
        if location is not None and (recipe := read_recipe(location)) is not None:  # slm-eval quantize, pytorch
            model = load_quantized(
                location,
                recipe,
                transformers.AutoModelForCausalLM,
                dtype=dtype,
                trust_remote_code=options.trust_remote_code,
            )
        else:
            model = transformers.AutoModelForCausalLM.from_pretrained(
                source, dtype=dtype, trust_remote_code=options.trust_remote_code, **extra
            )
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        if hub:
            raise hub_error(label, offline, exc) from exc
        raise UserError(
            f"transformers cannot load {label}: the weights are missing (safetensors only), corrupt or of an "
            f"unsupported architecture ({first_line(exc)})"
        ) from exc
    return model, tokenizer


def hub_error(label: str, offline: bool, exc: BaseException) -> UserError:
    if offline:
        return UserError(f"{label} is {OFFLINE_MESSAGE}")
    return UserError(f"cannot download {label} from the hub ({first_line(exc)}); or give a local path")


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype named ``name``.

    Raises:
        UserError: an unknown or unsupported dtype.
    """
    dtype = DTYPES.get(name.strip().lower())
    if dtype is None:
        raise UserError(f"unknown dtype '{name}': choose one of {', '.join(DTYPES)}")
    return dtype


def load(
    card: ModelCard, location: Path | None, options: LoadOptions
) -> TransformersBackend | TransformersEncoderBackend:
    """Load a decoder, or an encoder with its task head, from a local folder, a GGUF file, or the hub.

    Raises:
        UserError: the model is an API, the dtype is unknown, the weights or tokenizer cannot be loaded,
            or a hub id is asked for without a network.
    """
    if card.kind == "encoder":
        from slm_eval.backends.transformers_encoder import load_encoder

        return load_encoder(card, location, options)
    if card.kind != "decoder":
        raise UserError(f"{card.name} is an {card.kind} model; the transformers backend runs local models only")
    dtype = torch_dtype(options.dtype)
    transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # its bars would mix with answers
    threads = options.threads or usable_cpu_count()
    torch.set_num_threads(threads)
    torch.manual_seed(options.seed)
    model, tokenizer = _load_parts(card, location, options, dtype)
    from slm_eval.backends.transformers_quantized import runs_on_cpu_only

    device = "cuda" if torch.cuda.is_available() and not runs_on_cpu_only(model) else "cpu"
    model.to(device)
    model.eval()
    wanted = options.chat if options.chat is not None else card.chat
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if wanted and not has_template:
        log.warning("%s has no chat template in its tokenizer; using plain completion", card.name)
    chat = has_template if wanted is None else bool(wanted and has_template)
    log.debug("loaded %s: device=%s dtype=%s threads=%d chat=%s", card.name, device, options.dtype, threads, chat)
    return TransformersBackend(model, tokenizer, chat, options)
