"""Tests for the entity and threat detection use case: parsing, scoring, corpus scores and the data file."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from slm_eval.errors import UserError
from slm_eval.tasks.base import Example
from slm_eval.tasks.border import build_entity_data
from slm_eval.tasks.border.data_files import data_path
from slm_eval.tasks.border.entities import (
    CORPUS_METRIC_NAMES,
    ENTITY_TYPES,
    METRIC_NAMES,
    THREAT_LABELS,
    EntityThreatTask,
    load_task,
    normalize_threat,
    normalize_type,
    parse_output,
    per_type_scores,
)

NOTE = "Driver Tomas Berg (POL) of van GD-482-KL had 2 kg of cocaine and EUR 12,000 undeclared."


def _example(note: str, spans: list[tuple[str, str]], threat: str, example_id: str = "x1") -> Example:
    entities = [{"text": text, "type": kind, "start": note.index(text)} for text, kind in spans]
    return Example(id=example_id, question=note, references=(), target={"entities": entities, "threat": threat})


EXAMPLE = _example(
    NOTE,
    [
        ("Tomas Berg", "PERSON"),
        ("POL", "NATIONALITY"),
        ("GD-482-KL", "VEHICLE_PLATE"),
        ("cocaine", "CONTROLLED_ITEM"),
        ("EUR 12,000", "CURRENCY_AMOUNT"),
    ],
    "contraband",
)
TASK = EntityThreatTask([EXAMPLE], source="inline")


def _answer(spans: list[tuple[str, str]], threat: str) -> str:
    return json.dumps({"entities": [{"text": text, "type": kind} for text, kind in spans], "threat": threat})


GOLD_SPANS = [(e["text"], e["type"]) for e in EXAMPLE.target["entities"]]


def test_correct_output_scores_one() -> None:
    assert TASK.score(EXAMPLE, _answer(GOLD_SPANS, "contraband")) == {"combined": 1.0, "entity_f1": 1.0, "threat": 1.0}
    assert TASK.parse_error(EXAMPLE, _answer(GOLD_SPANS, "contraband")) is None


def test_partly_correct_output() -> None:
    # 3 predicted, 2 right (one has the wrong type): P = 2/3, R = 2/5, F1 = 0.5; wrong threat.
    spans = [("Tomas Berg", "PERSON"), ("cocaine", "CONTROLLED_ITEM"), ("GD-482-KL", "DOCUMENT_NUMBER")]
    scores = TASK.score(EXAMPLE, _answer(spans, "none"))
    assert scores["entity_f1"] == pytest.approx(0.5)
    assert scores["threat"] == 0.0
    assert scores["combined"] == pytest.approx(0.25)


def test_span_match_is_strict_but_trims_whitespace() -> None:
    trimmed = TASK.score(EXAMPLE, _answer([("  Tomas Berg ", "person")], "contraband"))
    assert trimmed["entity_f1"] == pytest.approx(2 * 1 * 0.2 / 1.2)
    for wrong in ("tomas berg", "Tomas", "Driver Tomas Berg", "12,000"):
        assert TASK.score(EXAMPLE, _answer([(wrong, "PERSON")], "contraband"))["entity_f1"] == 0.0


def test_duplicate_predictions_count_once() -> None:
    doubled = _answer([*GOLD_SPANS, *GOLD_SPANS, ("Tomas Berg", "name")], "contraband")
    assert TASK.score(EXAMPLE, doubled)["entity_f1"] == 1.0


def test_invented_entities_lower_precision() -> None:
    invented = [*GOLD_SPANS, ("Anna Nowak", "PERSON"), ("XK1234567", "DOCUMENT_NUMBER"), ("LH 400", "FLIGHT_OR_VESSEL")]
    output = _answer(invented, "contraband")
    assert TASK.parse_error(EXAMPLE, output) is None
    # 5 right of 8 predicted: P = 0.625, R = 1, F1 = 2 * 0.625 / 1.625
    assert TASK.score(EXAMPLE, output)["entity_f1"] == pytest.approx(2 * 0.625 / 1.625)
    corpus = TASK.corpus_scores([(EXAMPLE, output)])
    assert corpus["entity_precision"] == pytest.approx(5 / 8)
    assert corpus["entity_recall"] == 1.0


@pytest.mark.parametrize(
    "output",
    [
        "```json\n" + _answer(GOLD_SPANS, "contraband") + "\n```",
        "Here is the JSON you asked for:\n" + _answer(GOLD_SPANS, "contraband") + "\nLet me know if you need more.",
        "{'entities': [{'text': 'Tomas Berg', 'type': 'Person'}, {'text': 'POL', 'type': 'country'}, "
        "{'text': 'GD-482-KL', 'type': 'licence plate'}, {'text': 'cocaine', 'type': 'controlled item'}, "
        "{'text': 'EUR 12,000', 'type': 'money'}], 'threat': 'Contraband'}",
        '{"Entities": {"PERSON": ["Tomas Berg"], "NATIONALITY": "POL", "VEHICLE_PLATE": ["GD-482-KL"], '
        '"CONTROLLED_ITEM": ["cocaine"], "CURRENCY_AMOUNT": ["EUR 12,000"]}, "Threat": "smuggling"}',
    ],
)
def test_tolerant_parsing(output: str) -> None:
    assert TASK.parse_error(EXAMPLE, output) is None
    assert TASK.score(EXAMPLE, output) == {"combined": 1.0, "entity_f1": 1.0, "threat": 1.0}


def test_single_quote_fallback_keeps_apostrophes() -> None:
    prediction = parse_output("{'entities': [{'text': 'Sean O'Brien', 'type': 'PERSON'}], 'threat': None}")
    assert prediction.entities == {("Sean O'Brien", "PERSON")}
    assert prediction.threat == "none"


def test_truncated_output_keeps_complete_entities() -> None:
    prediction = parse_output('{"entities": [{"text": "Tomas Berg", "type": "PERSON"}, {"text": "GD-48')
    assert prediction.entities == {("Tomas Berg", "PERSON")}
    assert prediction.threat is None


def test_normalizers() -> None:
    assert normalize_type("person") == "PERSON"
    assert normalize_type("Name") == "PERSON"
    assert normalize_type("flight number") == "FLIGHT_OR_VESSEL"
    assert normalize_type("weather") == "WEATHER"
    assert normalize_threat("Document fraud") == "document_fraud"
    assert normalize_threat("trafficking-indicator") == "trafficking_indicator"
    assert normalize_threat("No threat") == "none"
    assert normalize_threat("maybe") is None
    assert normalize_threat(3) is None


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ("", "empty output"),
        ("I think this is contraband.", "no JSON object"),
        ('{"text": "Tomas Berg", "type": "PERSON"}', "no JSON object with an 'entities' or 'threat' key"),
        ('{"entities": "Tomas Berg", "threat": "none"}', "'entities' must be a list"),
        ("{entities: [Tomas Berg], threat: contraband", "malformed"),
        ("[1, 2, 3]", "no JSON object"),
    ],
)
def test_unparseable_outputs_score_zero(output: str, reason: str) -> None:
    error = TASK.parse_error(EXAMPLE, output)
    assert error is not None
    assert reason in error
    assert "\n" not in error
    assert TASK.score(EXAMPLE, output) == dict.fromkeys(METRIC_NAMES, 0.0)


def test_unknown_threat_label_scores_zero_on_threat_only() -> None:
    scores = TASK.score(EXAMPLE, _answer(GOLD_SPANS, "suspicious"))
    assert scores == {"combined": 0.5, "entity_f1": 1.0, "threat": 0.0}


def test_empty_gold_and_empty_prediction_is_perfect() -> None:
    quiet = _example("Routine check of a coach at lane 3, all documents in order.", [], "none")
    task = EntityThreatTask([quiet])
    assert task.score(quiet, '{"entities": [], "threat": "none"}')["entity_f1"] == 1.0
    assert task.score(quiet, _answer([("lane 3", "VEHICLE_PLATE")], "none"))["entity_f1"] == 0.0


def test_corpus_scores_hand_computed() -> None:
    second = _example("Pax Ana Lopes showed passport CX4410923 with a lifted laminate.", [
        ("Ana Lopes", "PERSON"), ("CX4410923", "DOCUMENT_NUMBER")], "document_fraud", "x2")  # fmt: skip
    third = _example(
        "Pistol found on Jan Dvorak.", [("Pistol", "CONTROLLED_ITEM"), ("Jan Dvorak", "PERSON")], "weapon", "x3"
    )
    task = EntityThreatTask([EXAMPLE, second, third])
    pairs = [
        (EXAMPLE, _answer(GOLD_SPANS[:4], "contraband")),  # 4 tp, 4 predicted, 5 gold; right label
        (second, _answer([("Ana Lopes", "PERSON"), ("Lopes", "PERSON")], "contraband")),  # 1 tp, 2 pred, 2 gold
        (third, "no answer"),  # unparseable: 0 predicted, 2 gold, no label
    ]
    scores = task.corpus_scores(pairs)
    assert set(scores) == set(CORPUS_METRIC_NAMES)
    assert scores["entity_precision"] == pytest.approx(5 / 6)
    assert scores["entity_recall"] == pytest.approx(5 / 9)
    assert scores["entity_f1"] == pytest.approx(2 * (5 / 6) * (5 / 9) / (5 / 6 + 5 / 9))
    assert scores["threat_accuracy"] == pytest.approx(1 / 3)
    # contraband: tp 1, fp 1 -> 2/3; document_fraud: fn 1 -> 0; weapon: fn 1 -> 0; none, trafficking skipped.
    assert scores["threat_macro_f1"] == pytest.approx((2 / 3) / 3)
    assert task.corpus_scores([]) == dict.fromkeys(CORPUS_METRIC_NAMES, 0.0)


def test_per_type_scores() -> None:
    output = _answer([("Tomas Berg", "PERSON"), ("GD-482-KL", "PERSON"), ("cocaine", "CONTROLLED_ITEM")], "none")
    scores = per_type_scores([(EXAMPLE, output)])
    assert set(scores) == set(ENTITY_TYPES)
    assert scores["PERSON"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1.0}
    assert scores["VEHICLE_PLATE"]["recall"] == 0.0
    assert scores["CONTROLLED_ITEM"]["f1"] == 1.0
    assert scores["FLIGHT_OR_VESSEL"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 0.0}


def test_prompt_shares_its_prefix_and_ends_with_the_note() -> None:
    task = load_task()
    first, second = task.examples()[:2]
    prompt_one, prompt_two = task.prompt(first), task.prompt(second)
    prefix = prompt_one[: prompt_one.index(first.question)]
    assert prompt_two.startswith(prefix)
    assert prompt_one.endswith(first.question + "\nAnswer:")
    assert '{"entities": [{"text": "...", "type": "..."}], "threat": "..."}' in prefix
    assert len(prompt_one) < 2400  # well under ~700 tokens
    assert task.name == "entity-threat-detection"
    assert task.metric_names[0] == "combined"
    assert task.corpus_metric_names == CORPUS_METRIC_NAMES
    assert 100 <= task.max_new_tokens <= 200


def test_data_file_loads_balanced_and_exact() -> None:
    task = load_task()
    examples = task.examples()
    assert len(examples) >= 60
    assert len({e.id for e in examples}) == len(examples)
    assert len({e.question for e in examples}) == len(examples)
    labels = Counter(e.target["threat"] for e in examples)
    assert set(labels) == set(THREAT_LABELS)
    assert max(labels.values()) - min(labels.values()) <= 1
    types: Counter[str] = Counter()
    for example in examples:
        for entity in example.target["entities"]:
            start, text = entity["start"], entity["text"]
            assert example.question[start : start + len(text)] == text
            assert text == text.strip()
            types[entity["type"]] += 1
        assert 1 <= example.question.count(".") + example.question.count(";") <= 6
        # The reference answer is what the prompt asks for and scores perfectly.
        assert task.score(example, example.references[0])["combined"] == 1.0
    assert set(types) == set(ENTITY_TYPES)
    assert len({e.metadata["template"] for e in examples}) >= 20
    assert any(e.metadata["difficulty"] == "hard" for e in examples if e.target["threat"] != "none")
    benign = [e for e in examples if e.target["threat"] == "none"]
    benign_with_items = [e for e in benign if any(x["type"] == "CONTROLLED_ITEM" for x in e.target["entities"])]
    assert len(benign_with_items) >= 4
    assert any(not e.target["entities"] for e in examples)


def test_generator_reproduces_the_shipped_file(tmp_path: Path) -> None:
    written = build_entity_data.write_data(tmp_path / "entities.jsonl")
    assert written.read_bytes() == data_path("entities.jsonl").read_bytes()


def test_malformed_targets_name_the_field(tmp_path: Path) -> None:
    misplaced = {"entities": [{"text": "POL", "type": "NATIONALITY", "start": 0}], "threat": "none"}
    bad_offset = Example(id="b1", question=NOTE, references=(), target=misplaced)
    with pytest.raises(UserError, match=r"target.entities\[0\].start"):
        EntityThreatTask([bad_offset])
    bad_label = Example(id="b2", question=NOTE, references=(), target={"entities": [], "threat": "bad"})
    with pytest.raises(UserError, match=r"target\.threat"):
        EntityThreatTask([bad_label])
    bad_type = _example(NOTE, [("POL", "COUNTRY")], "none")
    with pytest.raises(UserError, match=r"target.entities\[0\].type"):
        EntityThreatTask([bad_type])
    with pytest.raises(UserError, match="not found"):
        load_task(tmp_path / "missing.jsonl")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "a", "question": "q", "target": {"entities": [], "threat": "none"}}\n{"id": 3}\n')
    with pytest.raises(UserError, match="line 2"):
        load_task(broken)
