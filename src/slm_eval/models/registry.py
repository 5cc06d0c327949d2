"""The model registry: :class:`ModelCard`, and :func:`resolve` from a name, alias or local path."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PureWindowsPath
from typing import TYPE_CHECKING, Literal, cast
from urllib.parse import urlsplit

from slm_eval.errors import UserError
from slm_eval.models.sources import ApiEndpoint, LocalPath, WeightFormat, WeightSource

if TYPE_CHECKING:
    from slm_eval.models.store import Variant

ModelKind = Literal["decoder", "encoder", "api"]

# Which backend runs which weight format by default.
BACKEND_FOR_FORMAT: Mapping[WeightFormat, str] = {
    "gguf": "llamacpp",
    "transformers": "transformers",
    "onnx": "onnx",
    "api": "openai_api",
}


@dataclass(frozen=True)
class ModelCard:
    """What the project knows about one model before loading it.

    Attributes:
        name: canonical lower-case name used on the command line.
        display_name: the name people use.
        kind: ``decoder`` (generates text), ``encoder`` (task heads) or ``api`` (remote).
        architecture: the transformers architecture class, or the GGUF architecture.
        parameters: parameter count, or ``None`` when not published.
        context_length: the longest context the model was trained for, in tokens.
        licence: the licence of the weights.
        backends: every backend that can run the model, in order of preference.
        source: where its weights come from.
        hub_id: the Hugging Face hub id of the original weights, if any.
        aliases: other names that resolve to this card (matched case-insensitively).
        chat: ``True`` for instruction-tuned models prompted through their chat template, ``False``
            for plain completion, ``None`` to decide from the weights' own metadata.
        description: one line about the model.
    """

    name: str
    display_name: str
    kind: ModelKind
    architecture: str
    parameters: int | None
    context_length: int | None
    licence: str
    backends: tuple[str, ...]
    source: WeightSource
    hub_id: str | None = None
    aliases: tuple[str, ...] = field(default=())
    chat: bool | None = None
    description: str = ""

    @property
    def default_backend(self) -> str:
        """The backend for the format the weights come in."""
        return BACKEND_FOR_FORMAT[self.source.format]

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view of the card."""
        return {
            "name": self.name,
            "display_name": self.display_name,
            "kind": self.kind,
            "architecture": self.architecture,
            "parameters": self.parameters,
            "context_length": self.context_length,
            "licence": self.licence,
            "backends": list(self.backends),
            "default_backend": self.default_backend,
            "hub_id": self.hub_id,
            "source": self.source.describe(),
            "format": self.source.format,
            "offline": self.source.offline,
            "aliases": list(self.aliases),
            "chat": self.chat,
            "description": self.description,
        }


class Registry:
    """Looks up model cards by name or alias, case-insensitively."""

    def __init__(self, cards: Iterable[ModelCard]) -> None:
        self._cards: dict[str, ModelCard] = {}
        self._lookup: dict[str, ModelCard] = {}
        for card in cards:
            for key in (card.name, *card.aliases):
                folded = key.casefold()
                if folded in self._lookup:
                    raise ValueError(f"model name or alias '{key}' is used twice in the catalogue")
                self._lookup[folded] = card
            self._cards[card.name] = card

    def cards(self) -> list[ModelCard]:
        """All cards, in catalogue order."""
        return list(self._cards.values())

    def get(self, name: str) -> ModelCard | None:
        """The card with this name or alias, or ``None``."""
        return self._lookup.get(name.strip().casefold())

    def resolve(self, name_or_path: str, models_dir: Path | None = None) -> ModelCard:
        """A card for a catalogue name or alias, a variant in the model store, a local GGUF file, ONNX folder or
        transformers folder, or an API URL.

        A variant is named ``<model>@<variant>`` (``smollm2-135m-instruct@onnx-int4``) and looked up in the
        store under ``models_dir``. An OpenAI-compatible server is named by its URL,
        ``http(s)://host:port/v1``, optionally followed by ``#<model-id>`` (without it, the server's first
        model is used).

        Raises:
            UserError: the name is unknown (the message lists the closest names), the variant is not in the
                store, or the path holds no model.
        """
        text = name_or_path.strip()
        if not text:
            raise UserError("empty model name: pass --model NAME (see 'slm-eval models') or a path")
        card = self.get(text)
        if card is not None:
            return card
        is_url = text.lower().startswith(("http://", "https://"))
        # model@variant; a path with an "@" in a folder name (C:\Users\me@corp\x.gguf) is still a path
        if "@" in text and not is_url and not Path(text).exists() and not _looks_like_path(text.partition("@")[0]):
            return self._variant_card(text, models_dir)
        if is_url:
            return card_for_url(text)
        path = Path(text).expanduser()
        if path.exists():
            return card_for_path(path)
        if _looks_like_path(text):
            raise UserError(f"model path {text} does not exist")
        raise UserError(self._unknown_message(text))

    def _variant_card(self, reference: str, models_dir: Path | None) -> ModelCard:
        from slm_eval.models.store import ModelStore, split_reference

        model, variant = split_reference(reference)
        parent = self.get(model)
        if parent is None:
            raise UserError(self._unknown_message(model))
        if models_dir is None or not variant:
            raise UserError(f"{reference}: a variant needs the model store; see 'slm-eval models'")
        return variant_card(parent, ModelStore(models_dir).get(parent.name, variant))

    def _unknown_message(self, name: str) -> str:
        candidates = {key: card.name for card in self._cards.values() for key in (card.name, *card.aliases)}
        close = difflib.get_close_matches(name.casefold(), list(candidates), n=5, cutoff=0.5)
        suggestions = list(dict.fromkeys(candidates[key] for key in close))[:3]
        hint = f"did you mean {', '.join(suggestions)}?" if suggestions else "see 'slm-eval models'"
        return f"unknown model '{name}': {hint}"


VARIANT_BACKENDS: Mapping[str, tuple[str, ...]] = {
    "onnx": ("onnx",),
    "gguf": ("llamacpp", "transformers"),
    "transformers": ("transformers", "onnx"),
}


def variant_card(parent: ModelCard, variant: Variant) -> ModelCard:
    """The card of a store variant: the parent's facts, the variant's files and format."""
    fmt = variant.format
    if fmt not in VARIANT_BACKENDS:
        raise UserError(f"{variant.reference} has an unknown format '{fmt}' in its manifest")
    method = variant.manifest.get("method", fmt)
    return ModelCard(
        name=variant.reference,
        display_name=f"{parent.display_name} ({variant.name})",
        kind=parent.kind,
        architecture=parent.architecture,
        parameters=parent.parameters,
        context_length=parent.context_length,
        licence=parent.licence,
        backends=VARIANT_BACKENDS[fmt],
        source=LocalPath(path=variant.weights, format=cast(WeightFormat, fmt)),
        hub_id=parent.hub_id,
        chat=parent.chat,
        description=f"{method} variant of {parent.name}",
    )


def _looks_like_path(text: str) -> bool:
    """Whether ``text`` is meant as a path, in this system's form or Windows' (``C:\\models\\x.gguf``, ``D:x``)."""
    pure = PurePath(text)
    windows = PureWindowsPath(text)
    return (
        len(pure.parts) > 1
        or "/" in text
        or "\\" in text
        or bool(windows.drive)
        or pure.suffix.lower() in {".gguf", ".onnx"}
    )


def card_for_url(url: str) -> ModelCard:
    """A card for an OpenAI-compatible server at ``http(s)://host:port/v1``, with ``#<model-id>`` optional.

    The key, if the server needs one, is read from ``$OPENAI_API_KEY``.

    Raises:
        UserError: the URL is malformed, holds credentials or a query, or does not end in ``/v1``.
    """
    example = "e.g. http://127.0.0.1:8080/v1#smollm2"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UserError(f"API URL {url} is malformed ({exc}); {example}") from exc
    if parts.username is not None or parts.password is not None:
        raise UserError("an API URL must not hold credentials: put the key in $OPENAI_API_KEY instead")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"API URL {url} has no host; {example}")
    path = parts.path.rstrip("/")
    if not path.endswith("/v1") or parts.query:
        raise UserError(f"API URL {url} must end in /v1 (an OpenAI-compatible endpoint); {example}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    base_url = f"{parts.scheme}://{host}{'' if port is None else f':{port}'}{path}"
    model = parts.fragment.strip()
    return ModelCard(
        name=url,
        display_name=model or base_url,
        kind="api",
        architecture="not published",
        parameters=None,
        context_length=None,
        licence="see the server's model",
        backends=("openai_api",),
        source=ApiEndpoint(base_url=base_url, model=model, key_env="OPENAI_API_KEY"),
        chat=True,
        description=f"OpenAI-compatible server at {base_url}",
    )


def card_for_path(path: Path) -> ModelCard:
    """A card for a model on disk, with what can be read cheaply from its files.

    Raises:
        UserError: the path holds no model this project can run.
    """
    resolved = path.resolve()
    if resolved.is_file():
        # The name the user gave counts: hub caches keep files as suffix-less blobs behind .gguf symlinks.
        if ".gguf" not in (path.suffix.lower(), resolved.suffix.lower()):
            raise UserError(
                f"model file {path} is not a .gguf file; pass a GGUF file, an ONNX folder or a transformers folder"
            )
        return _local_card(resolved, "gguf", "decoder", "gguf", ("llamacpp", "transformers"))
    if any(resolved.glob("*.onnx")) or (resolved / "genai_config.json").is_file():
        kind: ModelKind = "decoder" if (resolved / "genai_config.json").is_file() else "encoder"
        return _local_card(resolved, "onnx", kind, "onnx", ("onnx",))
    config = resolved / "config.json"
    if config.is_file():
        architecture = _architecture_from_config(config)
        decoder = architecture.endswith(("ForCausalLM", "LMHeadModel"))
        return _local_card(
            resolved, "transformers", "decoder" if decoder else "encoder", architecture, ("transformers", "onnx")
        )
    raise UserError(
        f"folder {path} holds no model: expected a .gguf file, an ONNX folder (*.onnx) or a "
        "transformers folder (config.json)"
    )


def _architecture_from_config(config: Path) -> str:
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {config}: {exc}") from exc
    architectures = data.get("architectures") if isinstance(data, dict) else None
    if isinstance(architectures, list) and architectures and isinstance(architectures[0], str):
        return architectures[0]
    model_type = data.get("model_type") if isinstance(data, dict) else None
    return str(model_type or "unknown")


def _local_card(
    path: Path, fmt: WeightFormat, kind: ModelKind, architecture: str, backends: tuple[str, ...]
) -> ModelCard:
    return ModelCard(
        name=str(path),
        display_name=path.name,
        kind=kind,
        architecture=architecture,
        parameters=None,
        context_length=None,
        licence="see the model's own files",
        backends=backends,
        source=LocalPath(path=path, format=fmt),
        description=f"local {fmt} model",
    )
