"""LoRA adapter folders: recognised, their base found, and loaded by the transformers backend as base + adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slm_eval.backends.base import LoadOptions
from slm_eval.backends.transformers_adapter import (
    AdapterBase,
    is_adapter,
    read_base,
    write_base,
)
from slm_eval.errors import UserError
from slm_eval.models.registry import card_for_path
from tests.tiny_models import build_tiny_decoder


def _adapter(tmp_path: Path) -> tuple[Path, Path, object]:
    """A tiny Llama base and a LoRA adapter of it with non-zero weights; returns base, adapter and the PEFT model."""
    import peft
    import torch
    import transformers

    base = build_tiny_decoder(tmp_path / "base", "tinyllama-1.1b")
    model = transformers.AutoModelForCausalLM.from_pretrained(base)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = peft.get_peft_model(model, config)
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    transformers.AutoTokenizer.from_pretrained(base).save_pretrained(adapter)
    write_base(adapter, AdapterBase(model="tiny", weights=base))
    peft_model.eval()
    with torch.no_grad():
        expected = peft_model(torch.tensor([[5, 6, 7, 8]])).logits
    return base, adapter, expected


def test_an_adapter_folder_is_told_apart_from_a_model_folder(tmp_path: Path) -> None:
    base, adapter, _ = _adapter(tmp_path)
    assert is_adapter(adapter)
    assert not is_adapter(base)
    assert not is_adapter(None)
    assert read_base(adapter) == AdapterBase(model="tiny", weights=base)


def test_the_backend_loads_base_plus_adapter_with_the_adapters_logits(tmp_path: Path) -> None:
    import torch

    from slm_eval.backends.transformers import load

    _, adapter, expected = _adapter(tmp_path)
    backend = load(card_for_path(adapter.parent / "base"), adapter, LoadOptions(threads=1))
    with torch.no_grad():
        logits = backend._model(torch.tensor([[5, 6, 7, 8]])).logits  # type: ignore[union-attr]
    assert torch.allclose(logits, expected, atol=1e-5)
    assert backend.generate  # a decoder backend


def test_a_missing_base_says_where_it_was_and_how_to_fix_it(tmp_path: Path) -> None:
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    write_base(folder, AdapterBase(model="smollm2-135m-instruct", weights=tmp_path / "gone.gguf"))
    with pytest.raises(UserError, match=r"no longer at .*gone\.gguf.*--merge"):
        read_base(folder)
    (folder / "base_model.json").write_text(json.dumps({"model": "x"}))
    with pytest.raises(UserError, match=r"without a readable base_model\.json"):
        read_base(folder)


def test_converting_an_adapter_asks_for_a_merged_model(tmp_path: Path) -> None:
    from slm_eval.backends.transformers import model_sources

    _, adapter, _ = _adapter(tmp_path)
    with pytest.raises(UserError, match="LoRA adapter, not a whole model: train again with --merge"):
        model_sources(card_for_path(adapter.parent / "base"), adapter)
