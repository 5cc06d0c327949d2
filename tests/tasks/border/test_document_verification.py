"""Tests of the document-verification task: parser, scorer, corpus scores, and the MRZ data checked by mrz."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pycountry
import pytest
from mrz.base.countries_ops import code_list
from mrz.base.errors import LengthError
from mrz.checker.mrva import MRVACodeChecker
from mrz.checker.mrvb import MRVBCodeChecker
from mrz.checker.td1 import TD1CodeChecker
from mrz.checker.td3 import TD3CodeChecker

from slm_eval.errors import UserError
from slm_eval.tasks.base import Example
from slm_eval.tasks.border.build_document_data import write_data
from slm_eval.tasks.border.data_files import data_path
from slm_eval.tasks.border.document_verification import (
    DATA_FILE,
    DEFECTS,
    DocumentVerificationTask,
    load_task,
    named_defect,
    parse_answer,
)

CHECKERS: dict[str, Any] = {
    "TD3": TD3CodeChecker,
    "TD1": TD1CodeChecker,
    "MRVA": MRVACodeChecker,
    "MRVB": MRVBCodeChecker,
}
LINES = {"TD3": (2, 44), "MRVA": (2, 44), "TD1": (3, 30), "MRVB": (2, 36)}
TASK = load_task()


def _example(defect: str | None, kind: str = "TD3", example_id: str = "x") -> Example:
    target = {"valid": defect is None, "defect": defect, "document_type": kind}
    return Example(
        id=example_id, question="Inspection date: 2026-06-01\nMRZ:\nP<", references=("VALID",), target=target
    )


def _fields(question: str) -> tuple[dict[str, str], list[str]]:
    """The visual-zone fields and the MRZ lines of a question."""
    head, mrz = question.split("\nMRZ:\n")
    fields = dict(line.split(": ", 1) for line in head.splitlines() if ": " in line)
    return fields, mrz.split("\n")


def _yymmdd(printed: str) -> str:
    return datetime.strptime(printed.title(), "%d %b %Y").strftime("%y%m%d")


def _by_defect(defect: str | None) -> list[Example]:
    return [e for e in TASK.examples() if e.target["defect"] == defect]


def _check(example: Example) -> Any:
    return CHECKERS[example.target["document_type"]]("\n".join(_fields(example.question)[1]))


# --- parsing and scoring -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "valid", "defect"),
    [
        ("VALID", True, None),
        ("the document is VALID.", True, None),
        ("```\nVALID\n```", True, None),
        ("**Valid**", True, None),
        ("INVALID: check_digit", False, "check_digit"),
        ("Invalid - check digit", False, "check_digit"),
        ("INVALID: Check-Digit error in line 2", False, "check_digit"),
        ("invalid (checksum of the birth date is wrong)", False, "check_digit"),
        ("The document is not valid: it has expired.", False, "expired"),
        ("The document is no longer valid", False, "expired"),
        ("INVALID: name mismatch", False, "name_mismatch"),
        ("INVALID: name_mismatch (the document has not expired)", False, "name_mismatch"),
        ("INVALID - the surname differs from the MRZ", False, "name_mismatch"),
        ("INVALID: date of birth does not match", False, "date_mismatch"),
        ("INVALID: unknown country code", False, "unknown_country"),
        ("INVALID: nationality", False, "unknown_country"),
        ("INVALID: MRZ line too short", False, "line_length"),
        ("INVALID: line_length\nbecause line 1 has 43 characters", False, "line_length"),
        ("INVALID", False, None),
        ("INVALID: check_digit, expired", False, None),
        ("expired", False, "expired"),
    ],
)
def test_parse_answer_reads_tolerantly(output: str, valid: bool, defect: str | None) -> None:
    verdict, error = parse_answer(output)
    assert error is None
    assert verdict is not None
    assert (verdict.valid, verdict.defect) == (valid, defect)


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ("", "empty output"),
        ("```\n```", "empty output"),
        ("I cannot tell.", "no VALID or INVALID decision"),
        ("VALID or INVALID", "both VALID and INVALID"),
        ("check_digit or expired", "no VALID or INVALID decision"),
    ],
)
def test_unreadable_outputs_score_zero_with_a_reason(output: str, reason: str) -> None:
    example = _example("expired")
    error = TASK.parse_error(example, output)
    assert error is not None and reason in error
    assert TASK.score(example, output) == {"decision": 0.0, "defect": 0.0, "false_accept_free": 0.0}
    assert TASK.score(_example(None), output)["decision"] == 0.0


def test_score_valid_document() -> None:
    example = _example(None)
    assert TASK.score(example, "VALID") == {"decision": 1.0, "defect": 1.0, "false_accept_free": 1.0}
    assert TASK.score(example, "INVALID: expired") == {"decision": 0.0, "defect": 0.0, "false_accept_free": 1.0}
    assert TASK.parse_error(example, "VALID") is None


def test_score_invalid_document() -> None:
    example = _example("name_mismatch")
    assert TASK.score(example, "INVALID: name_mismatch") == {"decision": 1.0, "defect": 1.0, "false_accept_free": 1.0}
    # partly right: the decision but not the defect, or no defect named, or a hedge over two defects
    for partly in ("INVALID: date_mismatch", "INVALID", "INVALID: name_mismatch or date_mismatch"):
        assert TASK.score(example, partly) == {"decision": 1.0, "defect": 0.0, "false_accept_free": 1.0}
    # the costly error: an invalid document accepted
    assert TASK.score(example, "VALID") == {"decision": 0.0, "defect": 0.0, "false_accept_free": 0.0}


def test_corpus_scores_on_a_hand_computed_set() -> None:
    pairs = [
        (_example(None, example_id="a"), "VALID"),  # right
        (_example(None, example_id="b"), "INVALID: expired"),  # false reject
        (_example("expired", example_id="c"), "INVALID: expired"),  # right, defect right
        (_example("check_digit", example_id="d"), "INVALID: expired"),  # decision right, defect wrong
        (_example("line_length", example_id="e"), "VALID"),  # false accept
        (_example("unknown_country", example_id="f"), "no idea"),  # unreadable: neither accept nor reject
    ]
    scores = TASK.corpus_scores(pairs)
    assert scores == pytest.approx(
        {"decision_accuracy": 3 / 6, "defect_accuracy": 2 / 6, "false_accept_rate": 1 / 4, "false_reject_rate": 1 / 2}
    )
    assert set(scores) == set(TASK.corpus_metric_names)
    assert TASK.corpus_scores([]) == dict.fromkeys(TASK.corpus_metric_names, 0.0)


def test_named_defect_prefers_the_vocabulary() -> None:
    assert named_defect("expiry date differs") == "date_mismatch"
    assert named_defect("wrong check digit of the date of birth") == "check_digit"
    assert named_defect("nothing useful") is None


def test_task_contract() -> None:
    assert TASK.name == "document-verification"
    assert TASK.metric_names[0] == "decision"
    assert TASK.metric_names == ("decision", "defect", "false_accept_free")
    assert 8 <= TASK.max_new_tokens <= 32
    first, second = TASK.examples()[:2]
    prompt_a, prompt_b = TASK.prompt(first), TASK.prompt(second)
    shared = prompt_a[: prompt_a.index(first.question)]
    assert prompt_b.startswith(shared)
    assert all(defect in shared for defect in DEFECTS)
    assert prompt_a.rstrip().endswith("Answer:")
    assert len(prompt_a.split()) < 400


def test_task_module_imports_no_generation_package() -> None:
    code = (
        "import sys, slm_eval.tasks.border.document_verification as m; m.load_task(); "
        "print(sorted(p for p in ('mrz', 'faker', 'pycountry') if p in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_malformed_target_names_file_line_and_field(tmp_path: Path) -> None:
    lines = data_path(DATA_FILE).read_text(encoding="utf-8").splitlines()[:3]
    record = json.loads(lines[1])
    record["target"]["defect"] = "smudge" if not record["target"]["valid"] else "expired"
    lines[1] = json.dumps(record)
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad\.jsonl: line 2: field 'target\.defect'"):
        load_task(path)
    with pytest.raises(UserError, match="no examples"):
        DocumentVerificationTask([])


# --- the shipped data ----------------------------------------------------------------------------------------


def test_data_loads_with_balance() -> None:
    examples = TASK.examples()
    assert len(examples) >= 60
    assert len({e.id for e in examples}) == len(examples)
    defects = Counter(e.target["defect"] for e in examples)
    assert 0.35 <= defects[None] / len(examples) <= 0.45
    assert {defects[d] for d in DEFECTS} == {8}
    assert set(Counter(e.target["document_type"] for e in examples).values()) == {20}
    for example in examples:
        assert example.references == (
            ("VALID",) if example.target["valid"] else (f"INVALID: {example.target['defect']}",)
        )


def test_generator_reproduces_the_shipped_file(tmp_path: Path) -> None:
    written = write_data(tmp_path / "docs.jsonl")
    assert written.read_bytes() == data_path(DATA_FILE).read_bytes()


def test_valid_documents_pass_mrz_and_match_the_visual_zone() -> None:
    for example in [*_by_defect(None), *_by_defect("expired")]:
        checker = _check(example)
        assert bool(checker), (example.id, checker.report.falses)
        viz, _ = _fields(example.question)
        mrz = checker.fields()
        assert (viz["Surname"], viz["Given names"]) == (mrz.surname, mrz.name), example.id
        assert (_yymmdd(viz["Date of birth"]), _yymmdd(viz["Date of expiry"])) == (mrz.birth_date, mrz.expiry_date)
        assert (viz["Issuing state"], viz["Nationality"]) == (mrz.country, mrz.nationality)
        assert (viz["Document number"], viz["Sex"].replace("X", "<")) == (mrz.document_number, mrz.sex)
        inspection = date.fromisoformat(viz["Inspection date"])
        expiry = datetime.strptime(viz["Date of expiry"].title(), "%d %b %Y").date()
        assert (expiry < inspection) == (example.target["defect"] == "expired"), example.id


def test_check_digit_defects_fail_on_exactly_one_hash() -> None:
    for example in _by_defect("check_digit"):
        falses = _check(example).report.falses
        assert len(falses) == 1 and falses[0][0].endswith("hash"), (example.id, falses)


def test_line_length_defects_fail_the_length_check() -> None:
    for example in _by_defect("line_length"):
        count, width = LINES[example.target["document_type"]]
        lines = _fields(example.question)[1]
        assert len(lines) == count
        assert sum(len(line) != width for line in lines) == 1, example.id
        with pytest.raises(LengthError):
            _check(example)


def test_unknown_country_defects_fail_only_on_country_codes() -> None:
    known = {c.alpha_3 for c in pycountry.countries} | {c.alpha_3 for c in pycountry.historic_countries}
    known |= set(code_list())
    for example in _by_defect("unknown_country"):
        checker = _check(example)
        names = {name for name, _ in checker.report.falses}
        assert names and names <= {"valid country code", "valid nationality code"}, (example.id, names)
        viz, _ = _fields(example.question)
        assert {viz["Issuing state"], viz["Nationality"]} - known, example.id


def test_mismatch_defects_keep_a_correct_mrz_that_differs_from_the_visual_zone() -> None:
    for defect in ("name_mismatch", "date_mismatch"):
        for example in _by_defect(defect):
            checker = _check(example)
            assert bool(checker), (example.id, checker.report.falses)
            viz, _ = _fields(example.question)
            mrz = checker.fields()
            names_differ = (viz["Surname"], viz["Given names"]) != (mrz.surname, mrz.name)
            printed = (_yymmdd(viz["Date of birth"]), _yymmdd(viz["Date of expiry"]))
            dates_differ = printed != (mrz.birth_date, mrz.expiry_date)
            assert (names_differ, dates_differ) == (defect == "name_mismatch", defect == "date_mismatch"), example.id
            inspection = date.fromisoformat(viz["Inspection date"])
            expiries = (datetime.strptime(viz["Date of expiry"].title(), "%d %b %Y").date(), mrz.expiry_date)
            assert expiries[0] >= inspection and datetime.strptime(expiries[1], "%y%m%d").date() >= inspection
