"""Tasks by name: the five use cases, one-line errors with the valid names, and SQuAD-format QA still there."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from slm_eval.errors import UserError
from slm_eval.tasks.catalogue import USE_CASES, check_use_cases, load_use_case, resolve_task

ALL = list(USE_CASES)


def test_the_use_cases_in_canonical_order() -> None:
    assert ALL == [
        "document-verification",
        "multilingual-triage",
        "entity-threat-detection",
        "customs-help",
        "report-generation",
    ]


@pytest.mark.parametrize("name", ALL)
def test_load_use_case_gives_the_task_of_that_name(name: str) -> None:
    task = load_use_case(name)
    assert task.name == name
    assert task.metric_names and task.max_new_tokens > 0
    assert resolve_task(name).name == name


def test_load_use_case_ignores_case_and_spaces() -> None:
    assert load_use_case("  Customs-Help ").name == "customs-help"


@pytest.mark.parametrize("call", [load_use_case, lambda name: check_use_cases([name])], ids=["load", "check"])
def test_an_unknown_use_case_lists_the_valid_ones(call: Callable[[str], object]) -> None:
    with pytest.raises(UserError) as caught:
        call("passport-scan")
    message = str(caught.value)
    assert message.startswith("unknown use case 'passport-scan'")
    assert "choose from " + ", ".join(ALL) in message
    assert "did you mean" not in message


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("customs-hlp", "customs-help"),
        ("document-verify", "document-verification"),
        ("report-generator", "report-generation"),
    ],
)
def test_a_near_miss_suggests_the_use_case(typo: str, meant: str) -> None:
    for call in (load_use_case, lambda name: check_use_cases([name])):
        with pytest.raises(UserError, match=f"did you mean {meant}\\? choose from"):
            call(typo)


def test_no_selection_means_every_use_case() -> None:
    assert check_use_cases(None) == ALL
    assert check_use_cases([]) == ALL


def test_the_selection_comes_back_in_canonical_order_without_duplicates() -> None:
    chosen = check_use_cases(["report-generation", "document-verification", "report-generation"])
    assert chosen == ["document-verification", "report-generation"]


def test_comma_separated_and_mixed_case_names_are_accepted() -> None:
    chosen = check_use_cases(["Customs-Help,document-verification", " multilingual-triage "])
    assert chosen == ["document-verification", "multilingual-triage", "customs-help"]


def test_an_unknown_name_among_known_ones_is_still_an_error() -> None:
    with pytest.raises(UserError, match="unknown use case 'triage'"):
        check_use_cases(["customs-help", "triage"])


def test_border_qa_is_still_the_qa_task() -> None:
    task = resolve_task("border-qa")
    assert task.name == "border-qa"
    assert task.name not in USE_CASES
    assert len(task.examples()) > 0
    assert resolve_task(None).name == "border-qa"  # the default dataset
