"""Tests for the report-generation task: data, prompt, tolerant parsing, strict scoring and corpus figures."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from slm_eval.errors import UserError
from slm_eval.tasks.base import CorpusTask, Example
from slm_eval.tasks.border import build_report_data
from slm_eval.tasks.border.data_files import data_path, load_examples, write_examples
from slm_eval.tasks.border.reports import (
    CORPUS_METRIC_NAMES,
    METRIC_NAMES,
    PROMPT_HEADER,
    TASK_NAME,
    ReportTask,
    count_facts,
    load_schema,
    load_task,
    parse_report,
    rouge_l,
)

GOLD_A: dict[str, Any] = {
    "date": "2026-03-12",
    "time": None,
    "location": "Port of Gdynia",
    "persons": [{"name": "Jan Nowak", "role": "traveller", "nationality": "POL"}],
    "documents": [],
    "items": [],
    "actions": ["admitted"],
    "summary": "Traveller Jan Nowak was admitted at Port of Gdynia.",
}  # 4 facts: date, location, person, action
GOLD_B: dict[str, Any] = {
    "date": "2026-03-12",
    "time": "09:15",
    "location": "Dover Eastern Docks",
    "persons": [],
    "documents": [{"type": "passport", "number": "123456789"}],
    "items": [{"description": "cigarettes", "quantity": "3 cartons"}],
    "actions": ["seized", "fined"],
    "summary": "The driver was fined for 3 cartons of undeclared cigarettes.",
}  # 8 facts: date, time, location, document, item, quantity, 2 actions


def _example(gold: dict[str, Any], example_id: str = "x") -> Example:
    return Example(id=example_id, question="notes", references=(gold["summary"],), target={"report": gold})


@pytest.fixture(scope="module")
def task() -> ReportTask:
    return load_task()


# ---- data -------------------------------------------------------------------------------------------------------


def test_data_file_loads_with_enough_unique_examples(task: ReportTask) -> None:
    examples = task.examples()
    assert len(examples) >= 60
    assert len({e.id for e in examples}) == len(examples)
    contract: CorpusTask = task
    assert contract.name == TASK_NAME == "report-generation"


def test_incident_types_and_styles_are_balanced(task: ReportTask) -> None:
    kinds = [e.metadata["incident_type"] for e in task.examples()]
    assert set(kinds) == set(build_report_data.INCIDENT_TYPES)
    assert min(kinds.count(k) for k in set(kinds)) >= 10
    assert {e.metadata["date_style"] for e in task.examples()} == set(build_report_data.DATE_STYLES)
    assert {e.metadata["note_style"] for e in task.examples()} == set(build_report_data.NOTE_STYLES)


def test_every_gold_report_validates_and_scores_one_against_itself(task: ReportTask) -> None:
    validator = Draft202012Validator(load_schema())
    for example in task.examples():
        gold = example.target["report"]
        assert validator.is_valid(gold), example.id
        assert example.references == (gold["summary"],)
        assert task.score(example, json.dumps(gold, ensure_ascii=False)) == dict.fromkeys(METRIC_NAMES, 1.0)
        assert task.parse_error(example, json.dumps(gold)) is None


def _dates_in(notes: str) -> set[dt.date]:
    months = {m.upper(): i for i, m in enumerate(build_report_data.MONTHS, start=1)}
    found = set()
    for d, m, y in re.findall(r"\b(\d{1,2})[/.](\d{1,2})[/.](\d{2,4})\b", notes):
        found.add(dt.date(int(y) if len(y) == 4 else 2000 + int(y), int(m), int(d)))
    for d, m, y in re.findall(r"\b(\d{1,2}) ?([A-Za-z]{3}) ?(\d{2,4})\b", notes):
        if m.upper() in months:
            found.add(dt.date(int(y) if len(y) == 4 else 2000 + int(y), months[m.upper()], int(d)))
    found.update(dt.date.fromisoformat(iso) for iso in re.findall(r"\b\d{4}-\d{2}-\d{2}\b", notes))
    return found


def test_the_date_in_the_notes_resolves_to_the_gold_date(task: ReportTask) -> None:
    offsets = {"yesterday": -1, "after_midnight": 1}
    for example in task.examples():
        gold = dt.date.fromisoformat(example.target["report"]["date"])
        written = _dates_in(example.question)
        assert len(written) == 1, (example.id, example.question)
        shift = offsets.get(example.metadata["date_style"], 0)
        assert written.pop() + dt.timedelta(days=shift) == gold, example.id


def test_gold_facts_come_from_the_notes(task: ReportTask) -> None:
    for example in task.examples():
        notes, gold = example.question, example.target["report"]
        assert gold["location"] in notes, example.id
        for person in gold["persons"]:
            for word in person["name"].split():
                assert word.upper() in notes.upper(), (example.id, person["name"])
            if person["nationality"] is not None:
                assert re.fullmatch(r"[A-Z]{3}", person["nationality"])
        for document in gold["documents"]:
            assert document["number"] in notes, example.id
        if gold["time"] is not None:
            assert gold["time"].replace(":", "") in notes.replace(":", ""), example.id


def test_generator_reproduces_the_shipped_file(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    assert build_report_data.write_data(path) >= 60
    assert path.read_bytes() == data_path(build_report_data.DATA_FILE).read_bytes()


def test_a_gold_report_that_breaks_the_schema_is_named(tmp_path: Path) -> None:
    broken = copy.deepcopy(GOLD_A)
    broken["persons"][0]["role"] = "pilot"
    path = tmp_path / "bad.jsonl"
    write_examples(path, [_example(GOLD_A, "fine"), _example(broken, "broken-1")])
    with pytest.raises(UserError, match=r"bad\.jsonl: example 'broken-1': field 'target\.report\.persons\[0\]\.role'"):
        load_task(path)
    write_examples(path, [Example(id="no-target", question="notes", references=("s",))])
    with pytest.raises(UserError, match=r"'no-target': field 'target\.report': missing"):
        load_task(path)
    assert len(load_examples(path)) == 1


# ---- prompt -----------------------------------------------------------------------------------------------------


def test_prompt_shares_a_prefix_and_ends_with_the_notes(task: ReportTask) -> None:
    first, second = task.examples()[:2]
    for example in (first, second):
        prompt = task.prompt(example)
        assert prompt.startswith(PROMPT_HEADER)
        assert prompt.endswith(f"Notes: {example.question.strip()}\nReport:")
    assert all(len(task.prompt(e)) < 3200 for e in task.examples())
    assert "ONLY one JSON object" in PROMPT_HEADER
    assert 256 <= task.max_new_tokens <= 400


# ---- parsing ----------------------------------------------------------------------------------------------------


def test_parse_is_tolerant_of_fences_prose_wrappers_and_trailing_commas() -> None:
    compact = json.dumps(GOLD_B)
    pretty = json.dumps(GOLD_B, indent=2)
    outputs = [
        compact,
        f"```json\n{pretty}\n```",
        f"```\n{pretty}",  # an unclosed fence
        f"Sure! Here is the {{report}} you asked for:\n{compact}\nHope this helps.",
        json.dumps({"report": GOLD_B}),
        pretty.replace('"fined"\n', '"fined",\n').replace('"3 cartons"\n', '"3 cartons",\n'),
    ]
    for output in outputs:
        report, error = parse_report(output)
        assert error is None, output
        assert report == GOLD_B


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ("", "empty"),
        ("I cannot write that report.", "no JSON object"),
        ('{"date": "2026-03-12", "persons": [{"name": "Jan', "not closed"),
        ("{date: 2026-03-12}", "malformed"),
        ("{'date': '2026-03-12'}", "malformed"),
        ('{"date": ' + "[" * 50_000 + "]" * 50_000 + "}", "RecursionError"),
        ('{"quantity": ' + "9" * 5_000 + "}", "ValueError"),
    ],
)
def test_unparseable_outputs_score_zero_with_a_reason(task: ReportTask, output: str, reason: str) -> None:
    example = _example(GOLD_B)
    assert task.score(example, output) == dict.fromkeys(METRIC_NAMES, 0.0)
    error = task.parse_error(example, output)
    assert error is not None and reason in error and "\n" not in error


def test_an_inner_object_of_a_cut_off_report_is_not_taken_for_the_report() -> None:
    cut = json.dumps(GOLD_B)[:-40]
    assert parse_report(cut) == (None, "the JSON object is not closed (the output may have been cut off)")


# ---- scoring ----------------------------------------------------------------------------------------------------


def test_invented_person_lowers_precision_only() -> None:
    invented = copy.deepcopy(GOLD_A)
    invented["persons"].append({"name": "Anna Kowalska", "role": "passenger", "nationality": "POL"})
    counts = count_facts(invented, GOLD_A)
    assert (counts.matched, counts.predicted, counts.gold) == (4, 5, 4)
    assert counts.recall == 1.0 and counts.precision == pytest.approx(0.8)
    task = ReportTask([_example(GOLD_A)], load_schema())
    assert task.score(_example(GOLD_A), json.dumps(invented))["field_f1"] == pytest.approx(8 / 9)


def test_missing_actions_lower_recall_only() -> None:
    missing = copy.deepcopy(GOLD_B)
    missing["actions"] = ["seized"]
    counts = count_facts(missing, GOLD_B)
    assert (counts.matched, counts.predicted, counts.gold) == (7, 7, 8)
    assert counts.precision == 1.0 and counts.recall == pytest.approx(7 / 8)


def test_valid_json_with_an_invented_field_fails_the_schema_and_loses_precision() -> None:
    task = ReportTask([_example(GOLD_A)], load_schema())
    adversarial = {**GOLD_A, "threat_level": "high"}
    scores = task.score(_example(GOLD_A), json.dumps(adversarial))
    assert scores["schema_valid"] == 0.0
    assert scores["field_f1"] == pytest.approx(8 / 9)
    assert scores["rouge_l"] == 1.0


def test_normalisation_forgives_form_but_not_content() -> None:
    loose = copy.deepcopy(GOLD_B)
    loose.update(time="9:15", location="dover eastern docks.", actions=["Fined", "SEIZED"])
    loose["documents"] = [{"type": "passport", "number": "123 456 789"}]
    loose["items"] = [{"description": "Cartons of cigarettes", "quantity": "3"}]
    assert count_facts(loose, GOLD_B).f1 == 1.0
    wrong = copy.deepcopy(GOLD_B)
    wrong.update(date="12/03/2026", location="Dover")
    wrong["items"] = [{"description": "cigars", "quantity": "3 cartons"}]
    counts = count_facts(wrong, GOLD_B)
    assert (counts.matched, counts.predicted, counts.gold) == (4, 8, 8)  # time, document, 2 actions


def test_person_matching_ignores_name_order_case_and_accents_but_not_role() -> None:
    gold = {**GOLD_A, "persons": [{"name": "Łukasz Wójcik", "role": "driver", "nationality": "POL"}]}
    same = {**gold, "persons": [{"name": "WOJCIK, Łukasz", "role": "Driver", "nationality": "pol"}]}
    assert count_facts(same, gold).f1 == 1.0
    other_role = {**gold, "persons": [{"name": "Łukasz Wójcik", "role": "passenger", "nationality": "POL"}]}
    assert count_facts(other_role, gold).matched == 3
    stateless = {**gold, "persons": [{"name": "Łukasz Wójcik", "role": "driver", "nationality": None}]}
    spelled_null = {**gold, "persons": [{"name": "Łukasz Wójcik", "role": "driver", "nationality": "null"}]}
    assert count_facts(spelled_null, stateless).f1 == 1.0


def test_cash_quantities_match_by_amount() -> None:
    gold = {**GOLD_A, "items": [{"description": "cash", "quantity": "EUR 15,000"}]}
    for quantity in ("15000 EUR", "€15,000", "15k EUR", "EUR 15,000.00"):
        predicted = {**gold, "items": [{"description": "undeclared cash", "quantity": quantity}]}
        assert count_facts(predicted, gold).f1 == 1.0, quantity
    wrong = {**gold, "items": [{"description": "cash", "quantity": "EUR 1,500"}]}
    assert count_facts(wrong, gold).matched == 5


def test_odd_but_valid_json_never_raises(task: ReportTask) -> None:
    example = task.examples()[0]
    for output in ("{}", '{"persons": "John", "items": [1, {"x": 2}], "date": 5, "actions": {"a": 1}}', "[{}]"):
        scores = task.score(example, output)
        assert set(scores) == set(METRIC_NAMES)
        assert scores["schema_valid"] == 0.0 and scores["field_f1"] == 0.0


def test_rouge_l_matches_a_hand_computed_value() -> None:
    reference = "The driver was fined for undeclared cigarettes."
    prediction = "Driver fined for cigarettes and undeclared goods"
    # LCS = "driver fined for cigarettes" (4 tokens); P = 4/7, R = 4/7, F = 4/7.
    assert rouge_l(prediction, reference) == pytest.approx(4 / 7)
    assert rouge_l("a b c d", "a x c") == pytest.approx(2 * (2 / 4) * (2 / 3) / (2 / 4 + 2 / 3))
    assert rouge_l("", reference) == 0.0
    assert rouge_l(reference.upper(), reference) == 1.0


# ---- corpus -----------------------------------------------------------------------------------------------------


def test_corpus_scores_micro_average_facts_on_a_tiny_set() -> None:
    task = ReportTask([_example(GOLD_A, "a"), _example(GOLD_B, "b")], load_schema())
    a, b = task.examples()
    assert task.corpus_metric_names == CORPUS_METRIC_NAMES
    scores = task.corpus_scores([(a, json.dumps(GOLD_A)), (b, "not json")])
    assert scores == pytest.approx(
        {"schema_validity_rate": 0.5, "field_precision": 1.0, "field_recall": 4 / 12, "field_f1": 0.5, "rouge_l": 0.5}
    )
    partial = {**GOLD_B, "actions": ["seized"], "vehicle": "AB12CDE"}
    scores = task.corpus_scores([(a, json.dumps(GOLD_A)), (b, json.dumps(partial))])
    assert scores == pytest.approx(
        {"schema_validity_rate": 0.5, "field_precision": 11 / 12, "field_recall": 11 / 12, "field_f1": 11 / 12,
         "rouge_l": 1.0}
    )  # fmt: skip
    assert task.corpus_scores([]) == dict.fromkeys(CORPUS_METRIC_NAMES, 0.0)
