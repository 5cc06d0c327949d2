"""Encoder features: QA answer tokens, NER tags that the evaluation's decoder reads back, class labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from slm_eval.backends.base import EncoderRequest
from slm_eval.backends.encoder_heads import decode_entities, default_labels, encode
from slm_eval.errors import UserError
from slm_eval.training.encoder_data import (
    IGNORE_INDEX,
    answer_span,
    build_classify_examples,
    build_encoder_examples,
    build_ner_examples,
    build_qa_examples,
    resolve_labels,
)
from tests.training.engine_fixtures import NER_RECORDS, QA_RECORDS, tiny_bert

NER_LABELS = default_labels("ner")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import transformers

    folder = tiny_bert(tmp_path_factory.mktemp("tiny-bert"))
    return transformers.AutoTokenizer.from_pretrained(str(folder))


@pytest.fixture(scope="module")
def minilm_tokenizer() -> Any:
    """The bundled MiniLM's real WordPiece tokenizer (skips when the package is absent)."""
    import transformers

    from slm_eval.models.catalogue import default_registry

    try:
        folder = default_registry().resolve("all-minilm-l6-v2").source.locate(Path("unused"))
    except UserError as exc:
        pytest.skip(f"the bundled MiniLM is not installed: {exc}")
    return transformers.AutoTokenizer.from_pretrained(str(folder))


def answer_text(feature: dict[str, Any], tokenizer: Any, record: dict[str, Any], max_length: int) -> str:
    """The context text between the labelled start and end tokens, read through the evaluation's offsets."""
    encoded = tokenizer(
        record["question"],
        record["context"],
        truncation="only_second",
        max_length=max_length,
        return_offsets_mapping=True,
    )
    ids = feature["input_ids"]
    assert encoded["input_ids"] == ids or len(ids) == max_length  # a later window when the context was cut
    if encoded["input_ids"] != ids:
        return tokenizer.decode(ids[feature["start_positions"] : feature["end_positions"] + 1])
    offsets = encoded["offset_mapping"]
    return str(record["context"][offsets[feature["start_positions"]][0] : offsets[feature["end_positions"]][1]])


@pytest.mark.parametrize("which", ["tiny", "minilm"])
def test_qa_labels_point_at_the_answer_tokens(which: str, request: pytest.FixtureRequest) -> None:
    tokenizer = request.getfixturevalue("tokenizer" if which == "tiny" else "minilm_tokenizer")
    examples = build_qa_examples(QA_RECORDS, tokenizer, max_length=128)
    assert examples.unanswered == 0
    for record, feature in zip(QA_RECORDS, examples.features, strict=True):
        assert answer_text(feature, tokenizer, record, 128) == record["answers"]["text"][0]
        assert set(feature) >= {"input_ids", "attention_mask", "start_positions", "end_positions"}


def test_a_long_context_keeps_a_window_that_holds_the_answer(minilm_tokenizer: Any) -> None:
    filler = "The officers checked every lorry at the gate that morning. " * 12
    context = filler + "The driver, Nathaniel Balogun, was detained." + filler
    record = {
        "id": "long",
        "question": "Who was detained?",
        "context": context,
        "answers": {"text": ["Nathaniel Balogun"], "answer_start": [context.index("Nathaniel")]},
    }
    (feature,) = build_qa_examples([record], minilm_tokenizer, max_length=64).features
    assert len(feature["input_ids"]) <= 64
    start, end = feature["start_positions"], feature["end_positions"]
    assert start > 0
    assert minilm_tokenizer.decode(feature["input_ids"][start : end + 1]) == "nathaniel balogun"


def test_no_answer_or_one_wider_than_any_window_is_labelled_cls(minilm_tokenizer: Any) -> None:
    wide = " ".join(["border"] * 80)
    records = [
        {"id": "none", "question": "Who?", "context": "Nobody came.", "answers": {"text": [], "answer_start": []}},
        {"id": "wide", "question": "What?", "context": wide, "answers": {"text": [wide], "answer_start": [0]}},
    ]
    examples = build_qa_examples(records, minilm_tokenizer, max_length=48)
    assert examples.unanswered == 2
    assert [(f["start_positions"], f["end_positions"]) for f in examples.features] == [(0, 0), (0, 0)]


def test_an_answer_start_off_by_a_few_characters_is_moved_to_the_answer() -> None:
    record = {
        "id": "x",
        "question": "q",
        "context": "at the Dover docks",
        "answers": {"text": ["Dover"], "answer_start": [5]},
    }
    assert answer_span(record) == (7, 12)


@pytest.mark.parametrize(
    ("answers", "words"),
    [
        ({"text": ["Calais"], "answer_start": [0]}, "record x: the answer 'Calais' is not in its context"),
        (["Dover"], "record x: 'answers' must be"),
    ],
)
def test_bad_answers_name_the_record(answers: Any, words: str) -> None:
    record = {"id": "x", "question": "q", "context": "at the Dover docks", "answers": answers}
    with pytest.raises(UserError, match=words):
        answer_span(record)


@pytest.mark.parametrize("which", ["tiny", "minilm"])
def test_ner_tags_round_trip_through_the_evaluation_decoder(which: str, request: pytest.FixtureRequest) -> None:
    tokenizer = request.getfixturevalue("tokenizer" if which == "tiny" else "minilm_tokenizer")
    examples = build_ner_examples(NER_RECORDS, tokenizer, max_length=128, labels=NER_LABELS)
    for record, feature in zip(NER_RECORDS, examples.features, strict=True):
        encoded = encode(tokenizer, "ner", EncoderRequest(text=record["text"]), 128)
        assert list(encoded.input_ids) == feature["input_ids"]
        outside = NER_LABELS.index("O")
        tags = [tag if tag != IGNORE_INDEX else outside for tag in feature["labels"]]
        logits = np.eye(len(NER_LABELS), dtype=np.float32)[tags] * 10
        entities, _ = decode_entities(logits, encoded, record["text"], NER_LABELS)
        expected = [
            {"text": record["text"][e["start"] : e["end"]], "type": e["type"], "start": e["start"], "end": e["end"]}
            for e in record["entities"]
        ]
        assert entities == expected


def test_ner_labels_only_the_first_piece_of_each_word(tokenizer: Any) -> None:
    (feature,) = build_ner_examples(NER_RECORDS[:1], tokenizer, max_length=128, labels=NER_LABELS).features
    pieces = tokenizer.convert_ids_to_tokens(feature["input_ids"])
    tagged = {piece: NER_LABELS[tag] for piece, tag in zip(pieces, feature["labels"], strict=True) if tag >= 0}
    assert tagged["nathaniel"] == "B-PERSON"
    assert tagged["bal"] == "I-PERSON"
    assert feature["labels"][pieces.index("##og")] == IGNORE_INDEX
    assert feature["labels"][0] == IGNORE_INDEX  # [CLS]


@pytest.mark.parametrize(
    ("entity", "words"),
    [
        ({"start": 0, "end": 4, "type": "LOCATION"}, "record n: entity type 'LOCATION' has no B-/I- label"),
        ({"start": 0, "end": 400, "type": "PERSON"}, "record n: entity 0-400 lies outside"),
        ({"start": 0, "type": "PERSON"}, "record n: each entity needs"),
    ],
)
def test_bad_entities_name_the_record(tokenizer: Any, entity: dict[str, Any], words: str) -> None:
    record = {"id": "n", "text": "Dover docks", "entities": [entity]}
    with pytest.raises(UserError, match=words):
        build_ner_examples([record], tokenizer, max_length=32, labels=NER_LABELS)


def test_classify_features_carry_the_label_index(tokenizer: Any) -> None:
    labels = default_labels("classify")
    records = [{"id": "c1", "text": "a machete under the seat", "label": "weapon"}]
    (feature,) = build_classify_examples(records, tokenizer, max_length=32, labels=labels).features
    assert feature["labels"] == labels.index("weapon")
    with pytest.raises(UserError, match="record c2: label 'spam' is not one of"):
        build_classify_examples([{"id": "c2", "text": "x", "label": "spam"}], tokenizer, max_length=32, labels=labels)


def test_labels_default_to_the_border_sets_and_bad_ner_sets_are_refused() -> None:
    assert resolve_labels("ner", ()) == NER_LABELS
    assert resolve_labels("classify", ()) == default_labels("classify")
    assert resolve_labels("qa", ("x",)) == ()
    assert resolve_labels("classify", ("a", "b")) == ("a", "b")
    with pytest.raises(UserError, match="must include O"):
        resolve_labels("ner", ("B-X", "I-X"))
    with pytest.raises(UserError, match="not I-X"):
        resolve_labels("ner", ("O", "B-X"))
    with pytest.raises(UserError, match="repeats"):
        resolve_labels("classify", ("a", "a"))


def test_a_slow_tokenizer_is_refused() -> None:
    class Slow:
        is_fast = False

    with pytest.raises(UserError, match="fast tokenizer"):
        build_encoder_examples("qa", QA_RECORDS, Slow(), max_length=64, labels=())
