"""Encoder heads without a model: hand-made logits on the real MiniLM tokenizer become spans, entities, labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from slm_eval.backends.base import EncoderRequest
from slm_eval.backends.encoder_heads import (
    ENCODER_TASKS,
    MAX_ANSWER_TOKENS,
    EncodedInput,
    decode_entities,
    default_labels,
    encode,
    extract_span,
    labels_from_config,
    parse_encoder_task,
    to_prediction,
)
from slm_eval.errors import UserError
from slm_eval.models.catalogue import default_registry
from slm_eval.tasks.border.entities import ENTITY_TYPES, THREAT_LABELS

transformers = pytest.importorskip("transformers")

QUESTION = "Who was detained?"
CONTEXT = "Driver Nathaniel Balogun was detained at the Dover crossing."
NER_LABELS = default_labels("ner")
LOW, HIGH = -5.0, 5.0


@pytest.fixture(scope="module")
def tokenizer() -> object:
    """The real fast tokenizer shipped with the bundled MiniLM (a BERT WordPiece tokenizer)."""
    folder = default_registry().resolve("all-minilm-l6-v2").source.locate(Path("unused"))
    loaded = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert loaded.is_fast
    return loaded


def _tokens(tokenizer: object, encoded: EncodedInput) -> list[str]:
    return list(tokenizer.convert_ids_to_tokens(list(encoded.input_ids)))  # type: ignore[attr-defined]


def _qa(tokenizer: object, question: str = QUESTION, context: str = CONTEXT, max_length: int = 512) -> EncodedInput:
    return encode(tokenizer, "qa", EncoderRequest(question, context), max_length)


def _index(tokenizer: object, encoded: EncodedInput, token: str, sequence: int | None = 1) -> int:
    """The position of ``token`` in the given sequence (1 the context, 0 the question)."""
    tokens = _tokens(tokenizer, encoded)
    return next(i for i, t in enumerate(tokens) if t == token and encoded.sequence_ids[i] == sequence)


# --- task names and labels -----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "task"), [("qa", "qa"), (" NER ", "ner"), ("Classify", "classify")])
def test_parse_encoder_task_accepts_any_case(value: str, task: str) -> None:
    assert parse_encoder_task(value) == task


def test_parse_encoder_task_names_the_choices() -> None:
    with pytest.raises(UserError, match="unknown encoder task 'summarise': choose one of qa, ner, classify"):
        parse_encoder_task("summarise")


def test_default_labels() -> None:
    assert default_labels("qa") == ()
    assert default_labels("classify") == THREAT_LABELS
    ner = default_labels("ner")
    assert ner[0] == "O"
    assert set(ner[1:]) == {f"{prefix}-{name}" for name in ENTITY_TYPES for prefix in ("B", "I")}
    assert len(ner) == 1 + 2 * len(ENTITY_TYPES)
    assert ENCODER_TASKS == ("qa", "ner", "classify")


def test_labels_from_config_ignores_transformers_placeholders() -> None:
    assert labels_from_config({0: "LABEL_0", 1: "LABEL_1"}, "classify") is None
    assert labels_from_config({0: "label_0", 1: "Label_1"}, "ner") is None
    assert labels_from_config(None, "classify") is None
    assert labels_from_config({}, "ner") is None


def test_labels_from_config_keeps_real_labels_in_id_order() -> None:
    # config.json keys are strings; "10" must come after "2", not before it.
    id2label = {str(i): f"class{i}" for i in range(11)}
    assert labels_from_config(id2label, "classify") == tuple(f"class{i}" for i in range(11))
    assert labels_from_config({1: "B-PER", 0: "O", 2: "I-PER"}, "ner") == ("O", "B-PER", "I-PER")


def test_labels_from_config_has_none_for_qa() -> None:
    assert labels_from_config({0: "start", 1: "end"}, "qa") is None


# --- encode --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   \n"])
@pytest.mark.parametrize("task", ["qa", "ner", "classify"])
def test_encode_refuses_empty_text(tokenizer: object, task: str, text: str) -> None:
    with pytest.raises(UserError, match="empty input"):
        encode(tokenizer, task, EncoderRequest(text, CONTEXT), 512)  # type: ignore[arg-type]


@pytest.mark.parametrize("context", [None, "", "  "])
def test_encode_refuses_qa_without_context(tokenizer: object, context: str | None) -> None:
    with pytest.raises(UserError, match="needs a context"):
        encode(tokenizer, "qa", EncoderRequest(QUESTION, context), 512)


def test_encode_qa_puts_the_question_first_and_maps_offsets_into_each_text(tokenizer: object) -> None:
    encoded = _qa(tokenizer)
    tokens = _tokens(tokenizer, encoded)
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert encoded.sequence_ids[0] is None and encoded.sequence_ids[-1] is None
    question = [i for i, sid in enumerate(encoded.sequence_ids) if sid == 0]
    context = [i for i, sid in enumerate(encoded.sequence_ids) if sid == 1]
    assert question and context and max(question) < min(context)
    assert QUESTION[slice(*encoded.offsets[question[0]])] == "Who"
    assert CONTEXT[slice(*encoded.offsets[context[0]])] == "Driver"
    assert all(encoded.token_type_ids[i] == 1 for i in context)
    assert len(encoded.input_ids) == len(encoded.attention_mask) == len(encoded.offsets) == len(tokens)
    assert set(encoded.attention_mask) == {1}


def test_encode_single_text_has_one_sequence(tokenizer: object) -> None:
    text = "Nathaniel Balogun carried a passport."
    encoded = encode(tokenizer, "ner", EncoderRequest(text, None), 512)
    assert set(encoded.sequence_ids) == {None, 0}
    assert set(encoded.token_type_ids) == {0}
    assert text[slice(*encoded.offsets[1])] == "Nathaniel"


def test_arrays_gives_only_the_named_inputs_as_int64_batches_of_one(tokenizer: object) -> None:
    encoded = _qa(tokenizer)
    arrays = encoded.arrays(("input_ids", "attention_mask"))  # what DistilBERT's forward takes
    assert set(arrays) == {"input_ids", "attention_mask"}
    for array in arrays.values():
        assert array.dtype == np.int64
        assert array.shape == (1, len(encoded.input_ids))
    assert arrays["input_ids"][0].tolist() == list(encoded.input_ids)
    assert set(encoded.arrays(("input_ids", "token_type_ids", "pixel_values"))) == {"input_ids", "token_type_ids"}


def test_truncation_keeps_the_whole_question_and_cuts_the_context(tokenizer: object) -> None:
    question = "Which crossing did the driver use on the night of the check?"
    context = "The lorry arrived at the Dover crossing late at night. " * 40
    full_question = tokenizer(question)["input_ids"]  # type: ignore[operator]
    encoded = _qa(tokenizer, question, context, max_length=48)
    assert len(encoded.input_ids) == 48
    assert list(encoded.input_ids[: len(full_question)]) == list(full_question)  # [CLS] question [SEP], whole
    assert encoded.sequence_ids.count(0) == len(full_question) - 2
    assert 0 < encoded.sequence_ids.count(1) < 48
    assert encoded.sequence_ids[-1] is None  # the closing [SEP] is kept


def test_truncation_of_a_single_text(tokenizer: object) -> None:
    encoded = encode(tokenizer, "classify", EncoderRequest("contraband " * 300, None), 64)
    assert len(encoded.input_ids) == 64
    assert _tokens(tokenizer, encoded)[-1] == "[SEP]"


def test_a_question_longer_than_the_window_is_a_user_error(tokenizer: object) -> None:
    with pytest.raises(UserError):
        _qa(tokenizer, "where is the passport office " * 40, CONTEXT, max_length=128)


# --- extractive QA: the span -----------------------------------------------------------------------------


def _span_logits(encoded: EncodedInput, starts: dict[int, float], ends: dict[int, float]) -> tuple[np.ndarray, ...]:
    start = np.full(len(encoded.input_ids), LOW, dtype=np.float32)
    end = np.full(len(encoded.input_ids), LOW, dtype=np.float32)
    for position, value in starts.items():
        start[position] = value
    for position, value in ends.items():
        end[position] = value
    return start, end


def test_span_is_the_best_start_and_end_inside_the_context(tokenizer: object) -> None:
    encoded = _qa(tokenizer)
    first = _index(tokenizer, encoded, "nathaniel")
    last = _index(tokenizer, encoded, "##un")
    start, end = _span_logits(encoded, {first: HIGH}, {last: HIGH})
    text, begin, finish, probability = extract_span(start, end, encoded, CONTEXT)
    assert text == "Nathaniel Balogun"
    assert (begin, finish) == (CONTEXT.index("Nathaniel"), CONTEXT.index(" was"))
    assert CONTEXT[begin:finish] == text
    assert 0.5 < probability <= 1.0


def test_span_never_comes_from_the_question_or_special_tokens(tokenizer: object) -> None:
    encoded = _qa(tokenizer)
    in_question = _index(tokenizer, encoded, "detained", sequence=0)
    dover = _index(tokenizer, encoded, "dover")
    sep = len(encoded.input_ids) - 1
    start, end = _span_logits(
        encoded,
        {0: 50.0, in_question: 40.0, sep: 45.0, dover: 1.0},
        {0: 50.0, in_question: 40.0, sep: 45.0, dover: 1.0},
    )
    text, begin, finish, _ = extract_span(start, end, encoded, CONTEXT)
    assert text == "Dover"
    assert CONTEXT[begin:finish] == "Dover"


def test_span_end_is_never_before_its_start(tokenizer: object) -> None:
    encoded = _qa(tokenizer)
    driver = _index(tokenizer, encoded, "driver")
    dover = _index(tokenizer, encoded, "dover")
    # The best start is late and the best end early: the reversed pair is not a span.
    start, end = _span_logits(encoded, {dover: HIGH, driver: 0.0}, {driver: HIGH + 1, dover: 0.0})
    text, begin, finish, _ = extract_span(start, end, encoded, CONTEXT)
    assert begin < finish
    assert text == "Driver"  # start 0 + end 6 beats start 5 + end 0; the reversed 5 + 6 is no span


def test_span_is_at_most_max_answer_tokens_long(tokenizer: object) -> None:
    context = " ".join(f"w{i}" for i in range(80))
    encoded = _qa(tokenizer, "Which word?", context)
    context_positions = [i for i, sid in enumerate(encoded.sequence_ids) if sid == 1]
    first = context_positions[0]
    too_far = first + MAX_ANSWER_TOKENS + 5
    start, end = _span_logits(encoded, {first: HIGH + 1}, {too_far: HIGH})
    _, begin, finish, _ = extract_span(start, end, encoded, context)
    assert begin == encoded.offsets[first][0]
    chosen = [i for i in context_positions if encoded.offsets[i][0] >= begin and encoded.offsets[i][1] <= finish]
    assert 1 <= len(chosen) <= MAX_ANSWER_TOKENS


def test_span_probability_multiplies_start_and_end_softmaxes_over_the_context(tokenizer: object) -> None:
    encoded = _qa(tokenizer)
    context_positions = [i for i, sid in enumerate(encoded.sequence_ids) if sid == 1]
    start = np.zeros(len(encoded.input_ids), dtype=np.float32)
    end = np.zeros(len(encoded.input_ids), dtype=np.float32)
    start[: context_positions[0]] = 100.0  # the question and [CLS] must not enter the softmax
    *_, probability = extract_span(start, end, encoded, CONTEXT)
    assert probability == pytest.approx(1 / len(context_positions) ** 2)


def test_to_prediction_for_qa(tokenizer: object) -> None:
    request = EncoderRequest(QUESTION, CONTEXT)
    encoded = _qa(tokenizer)
    first = _index(tokenizer, encoded, "dover")
    start, end = _span_logits(encoded, {first: HIGH}, {first + 1: HIGH})
    outputs = {"start_logits": start[None, :], "end_logits": end[None, :]}  # a batch of one, as models return
    prediction = to_prediction("qa", outputs, encoded, request, (), 1.0, 1.25)
    assert prediction.text == "Dover crossing"
    assert CONTEXT[prediction.detail["start"] : prediction.detail["end"]] == prediction.text
    assert prediction.input_tokens == len(encoded.input_ids)
    assert prediction.end_to_end_s == pytest.approx(0.25)
    assert prediction.confidence is not None and 0 < prediction.confidence <= 1


# --- token classification: BIO merging ------------------------------------------------------------------


def _tag(tokenizer: object, text: str, tags: dict[str, str]) -> tuple[EncodedInput, np.ndarray]:
    """Encode ``text`` and build logits that give each listed token (by its string) the listed tag; others O."""
    encoded = encode(tokenizer, "ner", EncoderRequest(text, None), 512)
    logits = np.zeros((len(encoded.input_ids), len(NER_LABELS)), dtype=np.float32)
    logits[:, 0] = HIGH
    for position, token in enumerate(_tokens(tokenizer, encoded)):
        if token in tags:
            logits[position, 0] = LOW
            logits[position, NER_LABELS.index(tags[token])] = HIGH
    return encoded, logits


def _entities(tokenizer: object, text: str, tags: dict[str, str]) -> list[tuple[str, str]]:
    encoded, logits = _tag(tokenizer, text, tags)
    entities, _ = decode_entities(logits, encoded, text, NER_LABELS)
    for entity in entities:
        assert text[entity["start"] : entity["end"]] == entity["text"]
    return [(entity["text"], entity["type"]) for entity in entities]


def test_b_then_i_merge_into_one_entity(tokenizer: object) -> None:
    text = "Officer met Nathaniel Smith at Dover"
    found = _entities(tokenizer, text, {"nathaniel": "B-PERSON", "smith": "I-PERSON", "dover": "B-NATIONALITY"})
    assert found == [("Nathaniel Smith", "PERSON"), ("Dover", "NATIONALITY")]


def test_sub_word_pieces_tagged_o_continue_their_word(tokenizer: object) -> None:
    text = "Officer met Nathaniel Balogun at Dover"
    # "Balogun" is bal ##og ##un; only its first piece is tagged, as models trained on first pieces do.
    found = _entities(tokenizer, text, {"nathaniel": "B-PERSON", "bal": "I-PERSON"})
    assert found == [("Nathaniel Balogun", "PERSON")]


def test_i_without_b_starts_an_entity(tokenizer: object) -> None:
    text = "Officer met Nathaniel Smith at Dover"
    assert _entities(tokenizer, text, {"smith": "I-PERSON"}) == [("Smith", "PERSON")]


def test_b_after_b_and_a_type_change_start_new_entities(tokenizer: object) -> None:
    text = "Officer met Nathaniel Smith at Dover"
    found = _entities(tokenizer, text, {"nathaniel": "B-PERSON", "smith": "B-PERSON", "at": "I-NATIONALITY"})
    assert found == [("Nathaniel", "PERSON"), ("Smith", "PERSON"), ("at", "NATIONALITY")]


def test_o_between_ends_an_entity(tokenizer: object) -> None:
    text = "Nathaniel met Smith"
    assert _entities(tokenizer, text, {"nathaniel": "B-PERSON", "smith": "I-PERSON"}) == [
        ("Nathaniel", "PERSON"),
        ("Smith", "PERSON"),
    ]


def test_special_tokens_are_never_entities(tokenizer: object) -> None:
    text = "Officer met Nathaniel"
    assert _entities(tokenizer, text, {"[CLS]": "B-PERSON", "[SEP]": "I-PERSON"}) == []


def test_a_tag_index_beyond_the_labels_counts_as_o(tokenizer: object) -> None:
    text = "Officer met Nathaniel"
    encoded = encode(tokenizer, "ner", EncoderRequest(text, None), 512)
    logits = np.zeros((len(encoded.input_ids), 4), dtype=np.float32)
    logits[:, 3] = HIGH  # a head with more outputs than labels
    entities, confidence = decode_entities(logits, encoded, text, ("O", "B-PERSON", "I-PERSON"))
    assert entities == [] and confidence is None


def test_entity_confidence_is_the_mean_probability_of_its_tagged_tokens(tokenizer: object) -> None:
    text = "Officer met Nathaniel Smith"
    encoded, logits = _tag(tokenizer, text, {"nathaniel": "B-PERSON", "smith": "I-PERSON"})
    _, confidence = decode_entities(logits, encoded, text, NER_LABELS)
    row = np.exp(logits[3] - logits[3].max())
    expected = float(row.max() / row.sum())
    assert confidence == pytest.approx(expected)


def test_punctuation_after_an_entity_is_not_part_of_it(tokenizer: object) -> None:
    text = "Nathaniel Balogun, a driver from Lagos, was stopped."
    found = _entities(tokenizer, text, {"nathaniel": "B-PERSON", "bal": "I-PERSON", "lagos": "B-NATIONALITY"})
    assert found == [("Nathaniel Balogun", "PERSON"), ("Lagos", "NATIONALITY")]


def test_a_sub_word_piece_with_another_type_stays_in_its_word(tokenizer: object) -> None:
    text = "Officer met Nathaniel Balogun at Dover"
    found = _entities(tokenizer, text, {"nathaniel": "B-PERSON", "bal": "I-PERSON", "##og": "B-VEHICLE_PLATE"})
    assert found == [("Nathaniel Balogun", "PERSON")]


def test_to_prediction_for_ner_is_json_the_entity_scorer_reads(tokenizer: object) -> None:
    text = "Officer met Nathaniel Smith at Dover"
    request = EncoderRequest(text, None)
    encoded, logits = _tag(tokenizer, text, {"nathaniel": "B-PERSON", "smith": "I-PERSON"})
    prediction = to_prediction("ner", {"logits": logits[None, :, :]}, encoded, request, NER_LABELS, 0.0, 0.5)
    assert json.loads(prediction.text) == {"entities": [{"text": "Nathaniel Smith", "type": "PERSON"}]}
    assert prediction.detail["entities"] == [
        {"text": "Nathaniel Smith", "type": "PERSON", "start": 12, "end": 27},
    ]
    assert prediction.confidence is not None and 0 < prediction.confidence <= 1


def test_to_prediction_for_ner_without_entities(tokenizer: object) -> None:
    text = "nothing to see here"
    encoded, logits = _tag(tokenizer, text, {})
    prediction = to_prediction("ner", {"logits": logits[None]}, encoded, EncoderRequest(text), NER_LABELS, 0.0, 0.1)
    assert json.loads(prediction.text) == {"entities": []}
    assert prediction.confidence is None


# --- sequence classification ----------------------------------------------------------------------------


def test_classify_probabilities_sum_to_one_and_the_label_is_the_best(tokenizer: object) -> None:
    text = "Undeclared firearm found under the seat."
    encoded = encode(tokenizer, "classify", EncoderRequest(text), 512)
    logits = np.array([[0.1, -1.0, 3.0, 0.5, 0.0]], dtype=np.float32)
    prediction = to_prediction("classify", {"logits": logits}, encoded, EncoderRequest(text), THREAT_LABELS, 0.0, 0.1)
    scores = prediction.detail["scores"]
    assert prediction.text == "weapon"
    assert list(scores) == list(THREAT_LABELS)
    assert sum(scores.values()) == pytest.approx(1.0)
    assert prediction.confidence == pytest.approx(max(scores.values()))
    assert prediction.confidence == scores["weapon"]
    assert all(0 < value < 1 for value in scores.values())


def test_classify_with_fewer_labels_than_logits_names_the_index(tokenizer: object) -> None:
    text = "A note."
    encoded = encode(tokenizer, "classify", EncoderRequest(text), 512)
    logits = np.array([[0.0, 0.0, 9.0]], dtype=np.float32)
    prediction = to_prediction("classify", {"logits": logits}, encoded, EncoderRequest(text), ("a", "b"), 0.0, 0.1)
    assert prediction.text == "2"
    assert set(prediction.detail["scores"]) == {"a", "b", "2"}
