"""ONNX decoders through onnxruntime-genai: a folder written by its model builder, streamed greedily and timed.

The folder holds ``genai_config.json``, ``model.onnx`` (with its external data) and the tokenizer files the
builder copied (``tokenizer.json``, ``tokenizer_config.json`` and, when the model has one,
``chat_template.jinja``). Tokenization and the chat template run in onnxruntime-genai itself, so this backend
needs neither torch nor transformers.

Threads go into the decoder's ONNX Runtime session options through a :meth:`og.Config.overlay`; the execution
provider is chosen with ``clear_providers`` / ``append_provider``. Each request gets a fresh generator (an
empty KV cache), so time to first token always covers the whole prompt. The clock is read once after each
``generate_next_token``: the first reading includes the prompt's forward pass, later ones one decode step.

With ``ignore_eos`` the end-of-sequence token is masked out (``min_length`` equal to ``max_length``), so the
model picks its next most likely token instead and exactly ``max_new_tokens`` come out; llama.cpp and
transformers instead emit the end-of-sequence token and carry on. Both serve speed benchmarks equally.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

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
from slm_eval.errors import MissingDependencyError, UserError, extra_install_hint, first_line
from slm_eval.logs import get_logger
from slm_eval.models.registry import ModelCard

log = get_logger(__name__)

GENAI_CONFIG = "genai_config.json"
PROVIDERS = ("cpu", "cuda")
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
# Initializers that are not weights: rotary tables written by the model builder.
_ROTARY_CACHES = ("cos_cache", "sin_cache")
_FLOAT_TYPES = frozenset({1, 10, 16})  # onnx.TensorProto FLOAT, FLOAT16, BFLOAT16
_PACKED_4BIT_TYPES = frozenset({21, 22})  # onnx.TensorProto UINT4, INT4: the dims are the logical shape


def import_genai() -> Any:
    """The ``onnxruntime_genai`` module.

    Raises:
        MissingDependencyError: onnxruntime-genai is not installed.
    """
    try:
        return importlib.import_module("onnxruntime_genai")
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime-genai", "running ONNX decoders", extra_install_hint("onnx")) from exc


class OnnxDecoderBackend:
    """A decoder loaded with onnxruntime-genai."""

    name = "onnx"

    def __init__(
        self,
        genai: Any,
        model: Any,
        tokenizer: Any,
        *,
        chat: bool,
        options: LoadOptions,
        context_length: int,
        eos_ids: frozenset[int],
        parameters: int | None,
        provider: str,
    ) -> None:
        self._og = genai
        self._model = model
        self._tokenizer = tokenizer
        self._chat = chat
        self._clock = options.clock
        self._seed = options.seed
        self._context_length = context_length
        self._eos_ids = eos_ids
        self._parameters = parameters
        self._provider = provider
        self.capabilities = Capabilities(generate=True, streaming=True, chat_template=chat)

    @property
    def parameter_count(self) -> int | None:
        return self._parameters

    @property
    def chat(self) -> bool:
        """Whether prompts go through the model's chat template."""
        return self._chat

    @property
    def provider(self) -> str:
        """The execution provider the decoder session runs on (``cpu`` or ``cuda``)."""
        return self._provider

    @property
    def context_length(self) -> int:
        """The context window in tokens: the one asked for, capped by the model's own."""
        return self._context_length

    def format_prompt(self, request: GenerationRequest) -> str:
        """The exact text the model sees: the chat template applied, or the prompt as it is."""
        if not self._chat:
            return request.prompt if request.system is None else f"{request.system}\n\n{request.prompt}"
        messages: list[dict[str, str]] = []
        if request.system is not None:
            messages.append({"role": "system", "content": request.system})
        messages.append({"role": "user", "content": request.prompt})
        return str(self._tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=True))

    def tokenize(self, text: str) -> list[int]:
        """Token ids of a formatted prompt (special tokens added unless the chat template put them in)."""
        return [int(token) for token in self._tokenizer.encode(text)]

    def generate(
        self, requests: Sequence[GenerationRequest], on_token: TokenCallback | None = None
    ) -> list[Generation]:
        if self._model is None:
            raise UserError("the onnx backend was closed; load the model again")
        return [self._generate_one(index, request, on_token) for index, request in enumerate(requests)]

    def _generate_one(self, index: int, request: GenerationRequest, on_token: TokenCallback | None) -> Generation:
        prompt_text = self.format_prompt(request)
        tokens = self.tokenize(prompt_text)
        budget = output_budget(request, len(tokens), self._context_length)
        stream = StopStringStream(request.stop, None if on_token is None else lambda piece: on_token(index, piece))
        params = self._og.GeneratorParams(self._model)
        params.set_search_options(**self._search_options(request, len(tokens) + budget))
        decoder = self._tokenizer.create_stream()
        token_ids: list[int] = []
        token_times: list[float] = []
        finish: FinishReason = "length"
        started = self._clock.now()
        if budget > 0:
            generator = self._og.Generator(self._model, params)
            generator.append_tokens(np.asarray(tokens, dtype=np.int32))
            while not generator.is_done():
                generator.generate_next_token()
                now = self._clock.now()
                token = int(generator.get_next_tokens()[0])
                if not request.ignore_eos and token in self._eos_ids:
                    finish = "stop"
                    break
                token_ids.append(token)
                token_times.append(now)
                if stream.push(decoder.decode(token)):
                    finish = "stop"
                    break
                if len(token_times) >= budget:
                    break
            del generator  # frees its KV cache now rather than at the next collection
        self._flush(stream, token_ids)
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

    def _search_options(self, request: GenerationRequest, max_length: int) -> dict[str, Any]:
        options: dict[str, Any] = {"max_length": max_length, "batch_size": 1}
        if request.temperature > 0:
            options.update(
                do_sample=True, temperature=request.temperature, top_k=40, top_p=0.95, random_seed=self._seed
            )
        else:
            options["do_sample"] = False
        if request.ignore_eos:
            options["min_length"] = max_length  # masks the end-of-sequence token until the budget is spent
        return options

    def _flush(self, stream: StopStringStream, token_ids: list[int]) -> None:
        """Pass on text the streaming decoder still holds (an unfinished multi-byte character at the end)."""
        if stream.stopped or not token_ids:
            return
        full = str(self._tokenizer.decode(np.asarray(token_ids, dtype=np.int32)))
        if full.startswith(stream.text) and len(full) > len(stream.text):
            stream.push(full[len(stream.text) :])

    def close(self) -> None:
        self._model = None
        self._tokenizer = None


def has_chat_template(folder: Path) -> bool:
    """Whether the model folder keeps a chat template (its own file, or inside ``tokenizer_config.json``)."""
    if any((folder / name).is_file() for name in CHAT_TEMPLATE_FILES):
        return True
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return False
    try:
        return bool(json.loads(config.read_text(encoding="utf-8")).get("chat_template"))
    except (OSError, ValueError, AttributeError):
        return False


def count_parameters(model_file: Path) -> int | None:
    """Weights in an ONNX decoder, counted as the original model counts them; ``None`` without the onnx package.

    Reads the graph only (not the external data). A weight quantized to ``MatMulNBits`` or
    ``GatherBlockQuantized`` counts as its logical matrix, not its packed bytes and scales; one shared between
    the embedding and the LM head counts once, while one the export stores twice (the int8 export of a model
    with tied embeddings keeps a float embedding and a quantized LM head) counts twice. Rotary tables and
    integer constants are not weights.
    """
    try:
        import onnx
    except ImportError:
        return None
    try:
        graph = onnx.load(str(model_file), load_external_data=False).graph
    except Exception as exc:  # a corrupt file: the runtime has already said so, the count is only a figure
        log.debug("cannot count the parameters of %s: %s", model_file, exc)
        return None
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    counted: dict[str, int] = {}
    for node in graph.node:
        attributes = {attribute.name: onnx.helper.get_attribute_value(attribute) for attribute in node.attribute}
        if node.op_type == "MatMulNBits":
            weight, extras = node.input[1], node.input[2:5]
            counted.setdefault(weight, int(attributes["K"]) * int(attributes["N"]))
        elif node.op_type == "GatherBlockQuantized":
            weight, extras = node.input[0], node.input[2:4]
            counted.setdefault(weight, _logical_size(initializers.get(weight), int(attributes.get("bits", 4))))
        else:
            continue
        for name in extras:
            counted.setdefault(name, 0)  # scales, zero points, group indices: not weights of their own
    for name, tensor in initializers.items():
        if name in counted or tensor.data_type not in _FLOAT_TYPES:
            continue
        if any(cache in name for cache in _ROTARY_CACHES) or name.startswith("/model/constants"):
            continue
        counted[name] = int(np.prod(tensor.dims, dtype=np.int64))
    return sum(counted.values())


def _logical_size(tensor: Any, bits: int) -> int:
    if tensor is None:
        return 0
    stored = int(np.prod(tensor.dims, dtype=np.int64))
    if tensor.data_type in _PACKED_4BIT_TYPES:
        return stored
    return stored * (8 // bits)  # bytes holding 8 // bits values each


def _read_genai_config(folder: Path) -> dict[str, Any]:
    path = folder / GENAI_CONFIG
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}; export the model again") from exc
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); export the model again") from exc
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise UserError(f"{path} has no 'model' section; it was not written by onnxruntime-genai's model builder")
    return data


def _configured_providers(config: dict[str, Any]) -> list[str]:
    """The execution providers ``genai_config.json`` names for the decoder, in order (none means CPU)."""
    entries = config["model"].get("decoder", {}).get("session_options", {}).get("provider_options", [])
    names: list[str] = []
    for entry in entries:
        if isinstance(entry, dict):
            names.extend(str(key).lower() for key in entry)
    return names


def choose_provider(requested: str | None, configured: Sequence[str], cuda_available: bool) -> str:
    """The execution provider to run on: the one asked for, else CUDA when the export and the runtime allow it.

    Raises:
        UserError: an unknown provider, or CUDA asked for with a runtime that has none.
    """
    if requested is None:
        return "cuda" if "cuda" in configured and cuda_available else "cpu"
    provider = requested.strip().lower()
    if provider not in PROVIDERS:
        raise UserError(
            f"unknown execution provider '{requested}' for ONNX decoders: choose one of {', '.join(PROVIDERS)}"
        )
    if provider == "cuda" and not cuda_available:
        raise UserError(
            "this onnxruntime-genai build has no CUDA support: install onnxruntime-genai-cuda, "
            "or run with --provider cpu"
        )
    return provider


def _eos_ids(config: dict[str, Any], tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    value = config["model"].get("eos_token_id")
    if isinstance(value, int):
        ids.add(value)
    elif isinstance(value, list):
        ids.update(int(item) for item in value)
    ids.update(int(item) for item in np.asarray(tokenizer.eos_token_ids).reshape(-1))
    return frozenset(ids)


def load_decoder(card: ModelCard, location: Path, options: LoadOptions) -> OnnxDecoderBackend:
    """Load an onnxruntime-genai decoder folder with the asked threads, provider and chat setting.

    Raises:
        MissingDependencyError: onnxruntime-genai is not installed.
        UserError: the model is not a decoder, the folder's config or ONNX file is missing or corrupt, the
            tokenizer is missing, or the provider is unknown or not available.
    """
    if card.kind != "decoder":
        raise UserError(f"{card.name} is an {card.kind} model; ONNX decoders run through onnxruntime-genai only")
    genai = import_genai()
    config_data = _read_genai_config(location)
    provider = choose_provider(options.provider, _configured_providers(config_data), bool(genai.is_cuda_available()))
    threads = options.threads or usable_cpu_count()
    try:
        config = genai.Config(str(location))
        config.clear_providers()
        if provider == "cuda":
            config.append_provider("cuda")
        config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}))
        model = genai.Model(config)
    except RuntimeError as exc:
        raise UserError(
            f"onnxruntime-genai cannot load {location}: the ONNX file is missing, truncated or corrupt "
            f"({first_line(exc)}); export the model again"
        ) from exc
    try:
        tokenizer = genai.Tokenizer(model)
    except RuntimeError as exc:
        raise UserError(
            f"cannot load the tokenizer of {location}: it is missing or unreadable ({first_line(exc)}); "
            "export the model again so tokenizer.json is written beside model.onnx"
        ) from exc
    wanted = options.chat if options.chat is not None else card.chat
    template = has_chat_template(location)
    if wanted and not template:
        log.warning("%s has no chat template beside its tokenizer; using plain completion", location)
    chat = template if wanted is None else bool(wanted and template)
    # Special tokens (a BOS) are added to a plain prompt as transformers would; a chat template writes its own.
    tokenizer.update_options(add_special_tokens="false" if chat else "true")
    model_context = int(config_data["model"].get("context_length") or options.context_length)
    context_length = min(options.context_length, model_context)
    filename = str(config_data["model"].get("decoder", {}).get("filename", "model.onnx"))
    log.debug("loaded %s: provider=%s threads=%d context=%d chat=%s", location, provider, threads, context_length, chat)
    return OnnxDecoderBackend(
        genai,
        model,
        tokenizer,
        chat=chat,
        options=options,
        context_length=context_length,
        eos_ids=_eos_ids(config_data, tokenizer),
        parameters=count_parameters(location / filename),
        provider=provider,
    )
