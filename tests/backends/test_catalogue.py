"""Choosing and loading a backend: by weight format, by request, and with a missing package."""

from __future__ import annotations

import importlib.util
from importlib.machinery import ModuleSpec
from pathlib import Path

import pytest

from slm_eval.backends.base import LoadOptions
from slm_eval.backends.catalogue import BACKENDS, choose_backend, load_backend
from slm_eval.backends.fake import FakeBackend
from slm_eval.errors import MissingDependencyError, UserError
from slm_eval.models.catalogue import default_registry
from slm_eval.models.registry import ModelCard


def _card(name: str) -> ModelCard:
    return default_registry().resolve(name)


def _choose_error(name: str, requested: str | None = None) -> str:
    with pytest.raises(UserError) as info:
        choose_backend(_card(name), requested)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_every_loader_names_an_existing_module() -> None:
    for entry in BACKENDS.values():
        module, _, attribute = entry.loader.partition(":")
        assert importlib.util.find_spec(module) is not None, entry.name
        assert attribute == "load"


def test_gguf_models_run_on_llamacpp() -> None:
    assert choose_backend(_card("smollm2"), None).name == "llamacpp"
    assert choose_backend(_card("gemma"), None).name == "llamacpp"


def test_requested_backend_is_case_insensitive() -> None:
    assert choose_backend(_card("smollm2"), " LlamaCpp ").name == "llamacpp"


def test_fake_runs_any_model() -> None:
    assert choose_backend(_card("phi3"), "fake").name == "fake"


def test_unknown_backend() -> None:
    message = _choose_error("smollm2", "vllm")
    assert "unknown backend 'vllm'" in message
    assert "llamacpp, fake" in message


def test_backend_that_cannot_run_the_model() -> None:
    message = _choose_error("distilbert", "llamacpp")
    assert "distilbert cannot run on the llamacpp backend" in message
    assert "transformers, onnx" in message


def test_an_encoder_runs_on_the_backend_for_its_weights_and_never_on_the_fake() -> None:
    card = default_registry().resolve("all-minilm-l6-v2")
    assert choose_backend(card, None).name == "transformers"
    assert choose_backend(card, "onnx").name == "onnx"
    with pytest.raises(UserError, match="cannot stand in for all-minilm-l6-v2, an encoder"):
        choose_backend(card, "fake")


def test_hub_decoder_runs_on_the_backend_for_its_format() -> None:
    # TinyLlama's hub weights are a transformers checkpoint: llama.cpp would need a GGUF file.
    assert choose_backend(_card("tinyllama"), None).name == "transformers"


def test_api_model_runs_on_the_openai_api_backend() -> None:
    card = default_registry().resolve("grok")
    assert choose_backend(card, None).name == "openai_api"


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> ModuleSpec | None:
        return None if name == "llama_cpp" else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    entry = BACKENDS["llamacpp"]
    assert entry.missing_packages() == ["llama_cpp"]
    with pytest.raises(MissingDependencyError) as info:
        load_backend(entry, _card("smollm2"), LoadOptions(), tmp_path)
    assert info.value.package == "llama_cpp"
    assert info.value.install == "pip install 'slm-eval[llama]'"
    assert "the llamacpp backend needs the package 'llama_cpp'" in str(info.value)


def test_installed_backends_miss_nothing() -> None:
    assert BACKENDS["fake"].missing_packages() == []
    assert BACKENDS["llamacpp"].missing_packages() == []


def test_fake_loads_without_locating_weights(tmp_path: Path) -> None:
    backend = load_backend(BACKENDS["fake"], _card("phi3"), LoadOptions(), tmp_path)
    assert isinstance(backend, FakeBackend)
    assert list(tmp_path.iterdir()) == []


def test_hub_weights_are_not_downloaded(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"TinyLlama/TinyLlama-1\.1B-Chat-v1\.0"):
        load_backend(BACKENDS["llamacpp"], _card("tinyllama"), LoadOptions(), tmp_path)
