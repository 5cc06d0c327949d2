"""Tiny models and prepared datasets for the training engine tests: a tiny Llama, a tiny BERT, JSONL splits.

The tiny decoder is :func:`tests.tiny_models.build_tiny_decoder` (a TinyLlama-shaped random model with a
byte-level BPE tokenizer and a chat template); the tiny encoder is a random BERT with a WordPiece fast
tokenizer over the words of :data:`QA_RECORDS` and :data:`NER_RECORDS`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.tiny_models import build_tiny_decoder

SFT_RECORDS = [
    {"id": "s1", "prompt": "what is a visa", "response": "A visa is a travel document.", "source": "test"},
    {"id": "s2", "prompt": "who checks the passport", "response": "The officer checks the passport.", "source": "test"},
    {"id": "s3", "prompt": "what does a permit allow", "response": "A permit allows entry or exit.", "source": "test"},
    {"id": "s4", "prompt": "where is the stamp", "response": "The officer stamps the entry permit.", "source": "test"},
]
QA_RECORDS = [
    {
        "id": "q1",
        "question": "Who was detained at the checkpoint?",
        "context": "The driver, Nathaniel Balogun, was detained at the checkpoint and the van was held.",
        "answers": {"text": ["Nathaniel Balogun"], "answer_start": [12]},
    },
    {
        "id": "q2",
        "question": "What plate did the van have?",
        "context": "A white van with plate ATY-754 arrived at the Dover docks at dawn.",
        "answers": {"text": ["ATY-754"], "answer_start": [23]},
    },
    {
        "id": "q3",
        "question": "What was found under the seat?",
        "context": "Officers searched the load area and found a machete under the driver's seat.",
        "answers": {"text": ["a machete"], "answer_start": [42]},
    },
    {
        "id": "q4",
        "question": "Where did the van arrive?",
        "context": "A white van with plate ATY-754 arrived at the Dover docks at dawn.",
        "answers": {"text": ["the Dover docks"], "answer_start": [42]},
    },
]


def _entity(text: str, part: str, kind: str) -> dict[str, Any]:
    start = text.index(part)
    return {"start": start, "end": start + len(part), "type": kind}


_N1 = "Nathaniel Balogun, a Nigerian national, showed passport A01234567 at the desk."
_N2 = "The van ATY-754 carried 2000 cigarettes and a machete."
NER_RECORDS = [
    {
        "id": "n1",
        "text": _N1,
        "entities": [
            _entity(_N1, "Nathaniel Balogun", "PERSON"),
            _entity(_N1, "Nigerian", "NATIONALITY"),
            _entity(_N1, "A01234567", "DOCUMENT_NUMBER"),
        ],
    },
    {
        "id": "n2",
        "text": _N2,
        "entities": [
            _entity(_N2, "ATY-754", "VEHICLE_PLATE"),
            _entity(_N2, "2000 cigarettes", "CONTROLLED_ITEM"),
            _entity(_N2, "machete", "CONTROLLED_ITEM"),
        ],
    },
]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_split(folder: Path, split: str, records: Iterable[Mapping[str, Any]]) -> Path:
    """Write ``<folder>/<split>/<split>.jsonl`` as the dataset preparation does; the split's folder."""
    target = folder / split
    target.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(record) for record in records]
    (target / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def write_dataset(folder: Path, train: Sequence[Mapping[str, Any]], validation: Sequence[Mapping[str, Any]]) -> Path:
    """A prepared dataset folder with ``train/`` and ``validation/``; the folder."""
    write_split(folder, "train", train)
    write_split(folder, "validation", validation)
    return folder


def tiny_decoder(folder: Path) -> Path:
    """A tiny random TinyLlama-shaped decoder with a chat template, saved in ``folder``."""
    return build_tiny_decoder(folder, "tinyllama-1.1b")


def _words(texts: Iterable[str]) -> list[str]:
    words: set[str] = set()
    for text in texts:
        words.update(re.findall(r"\w+|[^\w\s]", text.lower()))
    return sorted(words)


def encoder_texts() -> list[str]:
    """Every text of the QA and NER records."""
    texts = [record["text"] for record in NER_RECORDS]
    for record in QA_RECORDS:
        texts += [record["question"], record["context"]]
    return texts


def tiny_bert(folder: Path, *, head: str = "BertForQuestionAnswering", hidden: int = 32, seed: int = 5) -> Path:
    """A tiny random BERT (``head``: a transformers class name) with a WordPiece fast tokenizer, in ``folder``.

    The vocabulary holds whole words, so a word longer than a few letters also appears split into pieces
    (``ba``, ``##log``, ...) only when it is missing: here the pieces ``##s`` and ``##ed`` exist for that.
    """
    import torch
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    words = [word for word in _words(encoder_texts()) if word != "balogun"]
    vocab = [*SPECIALS, *words, "bal", "##og", "##un", "##s", "##ed"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = transformers.BertTokenizerFast(vocab=str(folder / "vocab.txt"), do_lower_case=True)
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    getattr(transformers, head)(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
