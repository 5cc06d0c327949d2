"""The catalogue and name resolution: seed models, aliases, local paths and did-you-mean."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from slm_eval.errors import UserError
from slm_eval.models.catalogue import OFFLINE_MODELS, SEED_MODELS, default_registry
from slm_eval.models.registry import ModelCard, Registry, card_for_path
from slm_eval.models.sources import ApiEndpoint, HubSource, LocalPath, PackageData

# name: (hub id, kind, parameters, context length)
SEEDS: dict[str, tuple[str | None, str, int | None, int]] = {
    "phi-3-mini": ("microsoft/Phi-3-mini-128k-instruct", "decoder", 3_821_079_552, 131_072),
    "tinyllama-1.1b": ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "decoder", 1_100_048_384, 2048),
    "distilbert": ("distilbert/distilbert-base-uncased", "encoder", 66_362_880, 512),
    "albert": ("albert/albert-base-v2", "encoder", 11_683_584, 512),
    "mobilebert": ("google/mobilebert-uncased", "encoder", 24_581_888, 512),
    "mobilellama-1.4b": ("mtgv/MobileLLaMA-1.4B-Chat", "decoder", 1_400_000_000, 2048),
    "grok-3-mini-fast": (None, "api", None, 131_072),
}


def _resolve_error(name: str) -> str:
    with pytest.raises(UserError) as info:
        default_registry().resolve(name)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_the_seven_seed_models() -> None:
    assert [card.name for card in SEED_MODELS] == list(SEEDS)
    for card in SEED_MODELS:
        hub_id, kind, parameters, context = SEEDS[card.name]
        assert card.hub_id == hub_id, card.name
        assert card.kind == kind, card.name
        assert card.parameters == parameters, card.name
        assert card.context_length == context, card.name
        assert card.licence, card.name
        assert card.architecture, card.name
        assert card.backends, card.name
        if hub_id is not None:
            assert card.source == HubSource(hub_id)


def test_grok_is_an_api_endpoint() -> None:
    card = default_registry().resolve("grok-3-mini-fast")
    assert isinstance(card.source, ApiEndpoint)
    assert card.source.base_url == "https://api.x.ai/v1"
    assert card.source.key_env == "XAI_API_KEY"
    assert card.default_backend == "openai_api"


def test_offline_models_come_from_packages() -> None:
    cards = {card.name: card for card in OFFLINE_MODELS}
    assert set(cards) == {"smollm2-135m-instruct", "gemma-3-270m", "all-minilm-l6-v2"}
    assert cards["smollm2-135m-instruct"].source.format == "gguf"
    assert cards["gemma-3-270m"].source.format == "gguf"
    assert cards["all-minilm-l6-v2"].kind == "encoder"
    for card in OFFLINE_MODELS:
        assert card.source.offline
        assert "package" in card.source.describe()


def test_registry_holds_seed_and_offline_models() -> None:
    assert [card.name for card in default_registry().cards()] == [card.name for card in (*SEED_MODELS, *OFFLINE_MODELS)]


def test_names_and_aliases_are_unique() -> None:
    keys = [key.casefold() for card in default_registry().cards() for key in (card.name, *card.aliases)]
    assert len(keys) == len(set(keys))
    for card in default_registry().cards():
        assert card.name == card.name.lower()


def test_duplicate_alias_is_refused() -> None:
    first, second = SEED_MODELS[0], SEED_MODELS[1]
    clash = dataclasses.replace(second, aliases=("PHI3",))
    with pytest.raises(ValueError, match="PHI3"):
        Registry([first, clash])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("phi-3-mini", "phi-3-mini"),
        ("PHI-3-MINI", "phi-3-mini"),
        ("phi3", "phi-3-mini"),
        ("  Phi-3  ", "phi-3-mini"),
        ("TinyLlama", "tinyllama-1.1b"),
        ("DistilBERT-base-uncased", "distilbert"),
        ("mobilellama", "mobilellama-1.4b"),
        ("grok", "grok-3-mini-fast"),
        ("smollm2", "smollm2-135m-instruct"),
        ("Gemma", "gemma-3-270m"),
        ("MiniLM", "all-minilm-l6-v2"),
    ],
)
def test_resolve_names_and_aliases(name: str, expected: str) -> None:
    assert default_registry().resolve(name).name == expected


def test_get_returns_none_for_unknown_names() -> None:
    assert default_registry().get("phi-4") is None


def test_did_you_mean() -> None:
    message = _resolve_error("smolm2")
    assert "unknown model 'smolm2'" in message
    assert "did you mean smollm2-135m-instruct" in message


def test_nothing_close() -> None:
    assert "see 'slm-eval models'" in _resolve_error("qqqqqqqq")


def test_empty_name() -> None:
    assert "empty model name" in _resolve_error("  ")


def test_card_to_dict() -> None:
    data = default_registry().resolve("smollm2").to_dict()
    assert data["name"] == "smollm2-135m-instruct"
    assert data["default_backend"] == "llamacpp"
    assert data["hub_id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert data["aliases"] == ["smollm2", "smollm2-135m", "smollm"]
    json.dumps(data)  # JSON-ready


# --- local paths -------------------------------------------------------------------------------------


def test_gguf_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "x.gguf").write_bytes(b"GGUF")
    monkeypatch.chdir(tmp_path)
    card = default_registry().resolve("x.gguf")
    assert card.kind == "decoder"
    assert card.source == LocalPath(tmp_path.resolve() / "x.gguf", "gguf")
    assert card.default_backend == "llamacpp"
    assert card.source.available()


def test_symlink_to_the_real_gguf(tmp_path: Path, smollm2_gguf: Path) -> None:
    link = tmp_path / "smol.gguf"
    link.symlink_to(smollm2_gguf)
    card = default_registry().resolve(str(link))
    assert card.source.format == "gguf"
    assert card.source.locate(tmp_path).samefile(smollm2_gguf)


def test_gguf_symlink_to_a_blob_without_suffix(tmp_path: Path) -> None:
    blob = tmp_path / "blobs" / "3f9a0c"
    blob.parent.mkdir()
    blob.write_bytes(b"GGUF\x03\x00\x00\x00")
    link = tmp_path / "snapshots" / "model.Q4_K_M.gguf"
    link.parent.mkdir()
    link.symlink_to(os.path.relpath(blob, link.parent))
    assert card_for_path(link).source.format == "gguf"


def test_onnx_folder(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    card = default_registry().resolve(str(tmp_path))
    assert card.source.format == "onnx"
    assert card.kind == "encoder"
    assert card.backends == ("onnx",)


def test_onnx_genai_folder_is_a_decoder(tmp_path: Path) -> None:
    (tmp_path / "genai_config.json").write_text("{}", encoding="utf-8")
    card = card_for_path(tmp_path)
    assert card.source.format == "onnx"
    assert card.kind == "decoder"


@pytest.mark.parametrize(
    ("architecture", "kind"),
    [("LlamaForCausalLM", "decoder"), ("GPT2LMHeadModel", "decoder"), ("BertModel", "encoder")],
)
def test_transformers_folder(tmp_path: Path, architecture: str, kind: str) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"architectures": [architecture]}), encoding="utf-8")
    card = default_registry().resolve(str(tmp_path))
    assert card.source.format == "transformers"
    assert card.kind == kind
    assert card.architecture == architecture
    assert card.default_backend == "transformers"


def test_transformers_folder_with_model_type_only(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "bert"}', encoding="utf-8")
    card = card_for_path(tmp_path)
    assert card.architecture == "bert"
    assert card.kind == "encoder"


def test_transformers_folder_with_a_broken_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(UserError, match="cannot read"):
        card_for_path(tmp_path)


def test_empty_folder(tmp_path: Path) -> None:
    message = _resolve_error(str(tmp_path))
    assert "holds no model" in message


def test_file_that_is_not_gguf(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"\x00" * 8)
    message = _resolve_error(str(tmp_path / "weights.bin"))
    assert "is not a .gguf file" in message


@pytest.mark.parametrize("text", ["./nope/model.gguf", "nope/model", "model.gguf", "weights.ONNX"])
def test_path_that_does_not_exist(text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    message = _resolve_error(text)
    assert f"model path {text} does not exist" in message


@pytest.mark.parametrize("source", [PackageData("d", "m", "f", "pip install d"), LocalPath(Path("x.gguf"), "gguf")])
def test_gguf_sources_run_on_llamacpp(source: PackageData | LocalPath) -> None:
    card = ModelCard("m", "M", "decoder", "llama", None, None, "MIT", ("llamacpp",), source)
    assert card.default_backend == "llamacpp"


# --- OpenAI-compatible servers named by URL ---------------------------------------------------------


def test_api_url_with_a_model_id() -> None:
    card = default_registry().resolve("http://127.0.0.1:8080/v1#smollm2")
    assert card.kind == "api"
    assert card.name == "http://127.0.0.1:8080/v1#smollm2"
    assert card.source == ApiEndpoint(base_url="http://127.0.0.1:8080/v1", model="smollm2", key_env="OPENAI_API_KEY")
    assert card.backends == ("openai_api",)
    assert card.default_backend == "openai_api"
    assert not card.source.offline


@pytest.mark.parametrize(
    ("url", "base_url"),
    [
        ("https://llm.example.org/v1/", "https://llm.example.org/v1"),
        ("http://localhost:8000/openai/v1", "http://localhost:8000/openai/v1"),
    ],
)
def test_api_url_without_a_model_id(url: str, base_url: str) -> None:
    card = default_registry().resolve(url)
    assert isinstance(card.source, ApiEndpoint)
    assert (card.source.base_url, card.source.model) == (base_url, "")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8080/api", "must end in /v1"),
        ("http://127.0.0.1:8080/v1?x=1", "must end in /v1"),
        ("http://127.0.0.1:99999/v1", "malformed"),
        ("http:///v1", "has no host"),
        ("http://me:hunter2@127.0.0.1:8080/v1", "must not hold credentials"),
    ],
)
def test_bad_api_urls(url: str, expected: str) -> None:
    message = _resolve_error(url)
    assert expected in message
    assert "hunter2" not in message
