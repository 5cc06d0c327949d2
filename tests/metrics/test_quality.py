"""EM and F1 against hand-computed values and the official SQuAD v1.1 script; bootstrap intervals."""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any

import pytest

from slm_eval.metrics.quality import (
    MeanWithCI,
    bootstrap_ci,
    exact_match,
    label_accuracy,
    normalize_answer,
    summarize_scores,
    token_f1,
)

# --- the official SQuAD v1.1 evaluate-v1.1.py functions, verbatim apart from names and style ----------------------


def _official_normalize(s: str) -> str:
    def remove_articles(text: str) -> str:
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def remove_punc(text: str) -> str:
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text: str) -> str:
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def _official_f1(prediction: str, ground_truth: str) -> float:
    prediction_tokens = _official_normalize(prediction).split()
    ground_truth_tokens = _official_normalize(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def _official_em(prediction: str, ground_truth: str) -> bool:
    return _official_normalize(prediction) == _official_normalize(ground_truth)


TRICKY = [
    "The Eiffel Tower",
    "  eiffel   TOWER. ",
    "U.S.A.",
    "USA",
    "don't",
    "well-known",
    "well known",
    "A-Team",
    "the-end",
    "The.",
    "an apple a day",
    "banana",
    "theatre",
    "Anna and the ant",
    "\u201cLisbon\u201d",
    "Lisbon",
    "\tCafé\n",
    "",
    "the",
    "10:15 a.m.",
    "1,000 euros",
]


# --- normalisation --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Eiffel Tower", "eiffel tower"),
        ("  eiffel   TOWER. ", "eiffel tower"),
        ("U.S.A.", "usa"),
        ("don't", "dont"),
        ("well-known", "wellknown"),  # punctuation removed, not replaced by a space
        ("A-Team", "ateam"),  # punctuation goes before articles, so no article is left to remove
        ("The.", ""),
        ("an apple a day", "apple day"),
        ("banana", "banana"),  # 'an' inside a word stays
        ("theatre", "theatre"),
        ("Anna and the ant", "anna and ant"),
        ("\u201cLisbon\u201d", "\u201clisbon\u201d"),  # curly quotes are not in string.punctuation
        ("\tCafé\n", "café"),
        ("1,000 euros", "1000 euros"),
    ],
)
def test_normalize_answer_hand_computed(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


@pytest.mark.parametrize("text", TRICKY)
def test_normalize_answer_matches_the_official_script(text: str) -> None:
    assert normalize_answer(text) == _official_normalize(text)


# --- exact match ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("The Eiffel Tower", "Eiffel Tower", 1.0),  # articles
        ("Eiffel Tower!", "eiffel tower", 1.0),  # punctuation and case
        ("  Eiffel\n\tTower ", "Eiffel Tower", 1.0),  # whitespace
        ("U.S.A.", "USA", 1.0),
        ("well-known", "well known", 0.0),  # the official script joins hyphenated words
        ("banana", "bana", 0.0),  # 'an' inside a word is not an article
        ("Eiffel Tower in Paris", "Eiffel Tower", 0.0),
        ("", "the", 1.0),  # both normalise to the empty string
    ],
)
def test_exact_match_hand_computed(prediction: str, reference: str, expected: float) -> None:
    assert exact_match(prediction, [reference]) == expected


def test_exact_match_takes_the_best_reference() -> None:
    assert exact_match("Lisbon", ["Porto", "the Lisbon", "Faro"]) == 1.0
    assert exact_match("Lisbon", ["Porto", "Faro"]) == 0.0


@pytest.mark.parametrize("prediction", TRICKY)
@pytest.mark.parametrize("reference", ["Eiffel Tower", "USA", "the", "well known", "Lisbon", "apple"])
def test_exact_match_and_f1_match_the_official_script(prediction: str, reference: str) -> None:
    assert exact_match(prediction, [reference]) == float(_official_em(prediction, reference))
    assert token_f1(prediction, [reference]) == pytest.approx(_official_f1(prediction, reference), abs=0, rel=1e-12)


# --- token F1 -------------------------------------------------------------------------------------------------------


def test_f1_partial_overlap_worked_value() -> None:
    # prediction -> [cat, sat, on, red, mat] (5 tokens), reference -> [cat, sat, on, mat] (4 tokens)
    # common = 4; precision = 4/5, recall = 4/4; F1 = 2 * 0.8 * 1 / 1.8 = 8/9
    assert token_f1("the cat sat on the red mat", ["a cat sat on a mat"]) == pytest.approx(8 / 9, abs=1e-15)


def test_f1_articles_only_difference_is_a_full_match() -> None:
    # both normalise to [cat, sat, on, mat]
    assert token_f1("the cat sat on mat", ["a cat sat on the mat"]) == 1.0
    assert exact_match("the cat sat on mat", ["a cat sat on the mat"]) == 1.0


def test_f1_counts_repeated_tokens_once_per_occurrence() -> None:
    # Counter overlap: cat x1, dog x1 -> 2 common; precision = recall = 2/3; F1 = 2/3
    assert token_f1("cat cat dog", ["cat dog dog"]) == pytest.approx(2 / 3, abs=1e-15)


def test_f1_takes_the_best_reference() -> None:
    # vs "France": P = 1/2, R = 1 -> 2/3; vs "the city of Paris": P = 1/2, R = 1/3 -> 2/5
    assert token_f1("Paris, France", ["the city of Paris"]) == pytest.approx(2 / 5, abs=1e-15)
    assert token_f1("Paris, France", ["France", "the city of Paris"]) == pytest.approx(2 / 3, abs=1e-15)
    assert exact_match("Paris, France", ["France", "the city of Paris"]) == 0.0


def test_f1_zero_overlap_and_empty_prediction() -> None:
    assert token_f1("Madrid", ["Lisbon"]) == 0.0
    assert token_f1("", ["Lisbon"]) == 0.0
    assert token_f1("the", ["a"]) == 0.0  # no tokens in common after normalisation, as in the official script


def test_f1_punctuation_and_case_are_ignored() -> None:
    assert token_f1("EIFFEL, Tower!!", ["eiffel tower"]) == 1.0


def test_empty_references_are_an_error() -> None:
    with pytest.raises(ValueError, match="reference"):
        exact_match("x", [])
    with pytest.raises(ValueError, match="reference"):
        token_f1("x", ())


def test_a_single_string_is_not_taken_as_references() -> None:
    with pytest.raises(TypeError):
        exact_match("Lisbon", "Lisbon")


# --- label accuracy -------------------------------------------------------------------------------------------------


def test_label_accuracy_ignores_case_and_surrounding_whitespace() -> None:
    assert label_accuracy([" Yes ", "no", "MAYBE"], ["yes", "No\n", "no"]) == pytest.approx(2 / 3)


def test_label_accuracy_rejects_mismatched_or_empty_inputs() -> None:
    with pytest.raises(ValueError, match="pair up"):
        label_accuracy(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        label_accuracy([], [])


# --- bootstrap ------------------------------------------------------------------------------------------------------


def test_bootstrap_ci_contains_the_mean() -> None:
    values = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.5, 1.0, 0.0, 1.0]
    low, high = bootstrap_ci(values)
    mean = sum(values) / len(values)
    assert low < mean < high
    assert low >= 0.0 and high <= 1.0


def test_bootstrap_ci_is_close_to_the_normal_approximation() -> None:
    values = [0.0, 1.0] * 50  # mean 0.5, standard error 0.05 -> roughly 0.40 .. 0.60
    low, high = bootstrap_ci(values, resamples=2000)
    assert low == pytest.approx(0.40, abs=0.03)
    assert high == pytest.approx(0.60, abs=0.03)


def test_bootstrap_ci_narrows_with_more_data() -> None:
    small = bootstrap_ci([0.0, 1.0] * 10)
    large = bootstrap_ci([0.0, 1.0] * 500)
    assert large[1] - large[0] < (small[1] - small[0]) / 3


def test_bootstrap_ci_narrows_with_lower_confidence() -> None:
    values = [0.0, 1.0, 1.0, 0.0, 1.0] * 10
    wide = bootstrap_ci(values, confidence=0.99)
    narrow = bootstrap_ci(values, confidence=0.8)
    assert wide[0] <= narrow[0] and narrow[1] <= wide[1]


def test_bootstrap_ci_is_deterministic_for_a_seed() -> None:
    values = [0.1, 0.9, 0.4, 0.7, 0.3, 1.0, 0.0, 0.6]
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)
    assert bootstrap_ci(values, seed=7) != bootstrap_ci(values, seed=8)


def test_bootstrap_ci_of_one_value_and_of_equal_values() -> None:
    assert bootstrap_ci([0.7]) == (0.7, 0.7)
    assert bootstrap_ci([1.0] * 30) == (1.0, 1.0)


@pytest.mark.parametrize(
    ("values", "kwargs"),
    [([], {}), ([1.0, 0.0], {"confidence": 1.0}), ([1.0, 0.0], {"confidence": 0.0}), ([1.0], {"resamples": 0})],
)
def test_bootstrap_ci_rejects_bad_input(values: list[float], kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        bootstrap_ci(values, **kwargs)


def test_summarize_scores() -> None:
    summary = summarize_scores([1.0, 0.0, 1.0, 1.0], seed=3)
    assert isinstance(summary, MeanWithCI)
    assert summary.mean == 0.75
    assert summary.n == 4
    assert summary.confidence == 0.95
    assert summary.low <= summary.mean <= summary.high
    assert (summary.low, summary.high) == bootstrap_ci([1.0, 0.0, 1.0, 1.0], seed=3)
    assert summary.to_dict() == {
        "mean": 0.75,
        "low": summary.low,
        "high": summary.high,
        "n": 4,
        "confidence": 0.95,
    }


def test_summarize_scores_of_equal_values_is_a_point() -> None:
    summary = summarize_scores([0.3] * 10)
    assert summary.low == summary.mean == summary.high
    assert summary.mean == pytest.approx(0.3)


def test_summarize_scores_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        summarize_scores([])
