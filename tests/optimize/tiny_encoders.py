"""Tiny random encoders built from the seed encoders' real architecture configs, and the bundled MiniLM.

DistilBERT, ALBERT and MobileBERT cannot be downloaded offline, so their code paths run on models with the
same architecture settings scaled down to a few thousand parameters, saved as safetensors with a WordPiece
fast tokenizer built from a small vocabulary file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from slm_eval.models.catalogue import default_registry
from slm_eval.models.registry import ModelCard, Registry
from slm_eval.optimize.encoder_parity import DEFAULT_REQUESTS

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Each seed encoder's architecture settings as its hub config has them, scaled down to a tiny width.
ARCHITECTURES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "distilbert-base-uncased": (
        "DistilBertConfig",
        "DistilBertForMaskedLM",
        {
            "activation": "gelu",
            "dim": 32,
            "hidden_dim": 64,
            "n_layers": 2,
            "n_heads": 2,
            "max_position_embeddings": 512,
            "sinusoidal_pos_embds": False,
            "tie_word_embeddings": True,
        },
    ),
    "albert-base-v2": (
        "AlbertConfig",
        "AlbertForMaskedLM",
        {
            "embedding_size": 16,  # factorised embeddings: narrower than the hidden layers
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_hidden_groups": 1,  # one set of layer weights shared by every layer
            "inner_group_num": 1,
            "num_attention_heads": 2,
            "hidden_act": "gelu_new",
            "max_position_embeddings": 512,
            "type_vocab_size": 2,
        },
    ),
    "mobilebert-uncased": (
        "MobileBertConfig",
        "MobileBertForMaskedLM",
        {
            "hidden_size": 64,
            "embedding_size": 16,
            "true_hidden_size": 32,  # the bottleneck each block narrows to
            "intra_bottleneck_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_feedforward_networks": 2,
            "hidden_act": "relu",
            "normalization_type": "no_norm",
            "trigram_input": True,
            "use_bottleneck": True,
            "key_query_shared_bottleneck": True,
            "max_position_embeddings": 512,
        },
    ),
}


def minilm() -> tuple[ModelCard, Path]:
    """The bundled all-MiniLM-L6-v2 card and its transformers folder (skips the test when not installed)."""
    card = default_registry().resolve("all-minilm-l6-v2")
    try:
        return card, card.source.locate(Path("unused"))
    except Exception as exc:  # MissingDependencyError when the package is absent
        pytest.skip(f"the bundled MiniLM encoder is not installed: {exc}")


def vocabulary() -> list[str]:
    """Special tokens, the lower-cased words and punctuation of the parity inputs, and a few word pieces."""
    words: set[str] = set()
    for requests in DEFAULT_REQUESTS.values():
        for request in requests:
            for text in (request.text, request.context or ""):
                words.update(re.findall(r"\w+|[^\w\s]", text.lower()))
    return [*SPECIALS, *sorted(words), "##s", "##ed", "##ing"]


def build_tiny_encoder(folder: Path, architecture: str, seed: int = 3) -> Path:
    """Save a tiny random ``architecture`` encoder (masked-LM checkpoint, no task head) with its tokenizer."""
    import torch
    import transformers

    config_class, model_class, settings = ARCHITECTURES[architecture]
    folder.mkdir(parents=True, exist_ok=True)
    vocab = vocabulary()
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = transformers.BertTokenizerFast(vocab=str(vocab_file), do_lower_case=True)
    config = getattr(transformers, config_class)(vocab_size=len(vocab), pad_token_id=0, **settings)
    torch.manual_seed(seed)
    model = getattr(transformers, model_class)(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_card(folder: Path) -> ModelCard:
    """The card a local folder resolves to."""
    return Registry([]).resolve(str(folder))
