"""The backend catalogue: a name to ``module:attr`` map, imported only when a backend is used."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from slm_eval.backends.base import Backend, BackendLoader, EncoderBackend, LoadOptions
from slm_eval.errors import MissingDependencyError, UserError, extra_install_hint
from slm_eval.models.registry import ModelCard


@dataclass(frozen=True)
class BackendEntry:
    """One backend: where its loader lives and what it needs installed.

    Attributes:
        name: the name used with ``--backend``.
        loader: ``"module:function"`` of its ``load(card, location, options)``.
        requires: import names of the packages it needs.
        extra: the extra of this project that installs them.
        needs_weights: whether the model's weights must be located on disk first.
        description: one line for help texts.
    """

    name: str
    loader: str
    requires: tuple[str, ...]
    extra: str | None
    needs_weights: bool
    description: str

    def missing_packages(self) -> list[str]:
        """Required packages that are not installed (checked without importing them)."""
        return [module for module in self.requires if importlib.util.find_spec(module) is None]


BACKENDS: dict[str, BackendEntry] = {
    "llamacpp": BackendEntry(
        name="llamacpp",
        loader="slm_eval.backends.llamacpp:load",
        requires=("llama_cpp",),
        extra="llama",
        needs_weights=True,
        description="GGUF models through llama-cpp-python",
    ),
    "fake": BackendEntry(
        name="fake",
        loader="slm_eval.backends.fake:load",
        requires=(),
        extra=None,
        needs_weights=False,
        description="deterministic scripted answers and timings, for tests and --dry-run",
    ),
    "openai_api": BackendEntry(
        name="openai_api",
        loader="slm_eval.backends.openai_api:load",
        requires=("httpx",),
        extra="api",
        needs_weights=False,
        description="any OpenAI-compatible chat-completions API over HTTP (Grok, local servers)",
    ),
    "transformers": BackendEntry(
        name="transformers",
        loader="slm_eval.backends.transformers:load",
        requires=("torch", "transformers"),
        extra="torch",
        needs_weights=True,
        description="PyTorch decoders and encoders through transformers (local folders, dequantized GGUF files)",
    ),
    "onnx": BackendEntry(
        name="onnx",
        loader="slm_eval.backends.onnx:load",
        requires=("onnxruntime",),
        extra="onnx",
        needs_weights=True,
        description="ONNX Runtime: decoders through onnxruntime-genai, encoders through onnxruntime sessions",
    ),
}


def choose_backend(card: ModelCard, requested: str | None) -> BackendEntry:
    """The backend to run ``card`` on: the requested one, else the one for the weights' format.

    Raises:
        UserError: the backend is unknown, cannot run this model, or is not part of this version.
    """
    if requested is not None:
        entry = BACKENDS.get(requested.strip().lower())
        if entry is None:
            raise UserError(f"unknown backend '{requested}': choose one of {', '.join(BACKENDS)}")
        if entry.name == "fake" and card.kind == "encoder":
            raise UserError(f"the fake backend generates text; it cannot stand in for {card.name}, an encoder")
        if entry.name != "fake" and entry.name not in card.backends:
            raise UserError(
                f"{card.name} cannot run on the {entry.name} backend; it runs on {', '.join(card.backends)}"
            )
        return entry
    entry = BACKENDS.get(card.default_backend)
    if entry is None:
        runnable = [name for name in card.backends if name in BACKENDS]
        if runnable:
            return BACKENDS[runnable[0]]
        raise UserError(
            f"{card.name} needs the {card.default_backend} backend, which is not yet supported by this "
            f"version (available: {', '.join(BACKENDS)}); use a GGUF model such as smollm2-135m-instruct"
        )
    return entry


def load_backend(
    entry: BackendEntry, card: ModelCard, options: LoadOptions, cache_dir: Path
) -> Backend | EncoderBackend:
    """Check the backend's packages, locate the weights and load the model.

    Raises:
        MissingDependencyError: a package the backend needs is not installed.
        UserError: the weights cannot be found or loaded.
    """
    missing = entry.missing_packages()
    if missing:
        install = extra_install_hint(entry.extra) if entry.extra else "reinstall slm-eval"
        raise MissingDependencyError(missing[0], f"the {entry.name} backend", install)
    location = card.source.locate(cache_dir) if entry.needs_weights else None
    module_name, _, attribute = entry.loader.partition(":")
    loader = cast(BackendLoader, getattr(importlib.import_module(module_name), attribute))
    return loader(card, location, options)
