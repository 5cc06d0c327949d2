"""Held-out splits: whole groups by hash, and use-case training data that never repeats an evaluation text."""

from __future__ import annotations

import functools
import importlib

import pytest

from slm_eval.tasks.base import Example
from slm_eval.tasks.catalogue import load_use_case
from slm_eval.tasks.squad import load_builtin_border_qa
from slm_eval.training.training_splits import (
    BORDER_QA_VALIDATION_SHARE,
    USE_CASE_SOURCES,
    GeneratedSplit,
    generate_use_case_split,
    hash_order,
    normalise,
    phrase_key,
    split_by_group,
)

GENERATED = [name for name in USE_CASE_SOURCES if name != "multilingual-triage"]


@functools.cache
def _split(name: str) -> GeneratedSplit:
    return generate_use_case_split(name)


def test_split_by_group_holds_out_whole_groups_in_hash_order() -> None:
    items = [f"{group}:{index}" for group in "abcdefghij" for index in range(4)]
    train, validation = split_by_group(items, lambda item: item.split(":")[0], 0.25)
    assert len(validation) == 12  # 3 groups of 4 reach 25% of 40 (10) only with the third
    assert {item.split(":")[0] for item in train}.isdisjoint({item.split(":")[0] for item in validation})
    assert sorted(train + validation) == sorted(items)
    assert split_by_group(list(reversed(items)), lambda item: item.split(":")[0], 0.25)[1] == list(reversed(validation))


def test_split_by_group_keeps_a_group_for_training_and_needs_two() -> None:
    assert split_by_group(["x", "x", "x"], lambda item: item, 0.5) == (["x", "x", "x"], [])
    train, validation = split_by_group(["a", "b"], lambda item: item, 0.99)
    assert len(train) == 1 and len(validation) == 1


def test_split_by_group_compares_normalised_text() -> None:
    train, validation = split_by_group(["Same  text", "same text", "other"], lambda item: item, 0.1)
    sides = [{normalise(item) for item in side} for side in (train, validation)]
    assert sides[0].isdisjoint(sides[1])


def test_border_qa_split_is_by_paragraph_and_fixed() -> None:
    examples = load_builtin_border_qa()
    train, validation = split_by_group(examples, lambda e: e.context or "", BORDER_QA_VALIDATION_SHARE)
    assert {e.context for e in train}.isdisjoint({e.context for e in validation})
    # The documented split of the shipped file: 8 of 31 paragraphs, 42 of 165 questions (25%) held out.
    assert (len({e.context for e in validation}), len(validation), len(train)) == (8, 42, 123)
    again = split_by_group(list(reversed(examples)), lambda e: e.context or "", BORDER_QA_VALIDATION_SHARE)
    assert {e.id for e in again[1]} == {e.id for e in validation}


def test_hash_order_is_stable_and_ignores_input_order() -> None:
    words = ["alpha", "beta", "gamma", "delta"]
    assert hash_order(words, str) == hash_order(list(reversed(words)), str)


@pytest.mark.parametrize("name", GENERATED)
def test_generated_split_never_repeats_an_evaluation_question(name: str) -> None:
    split = _split(name)
    evaluation = load_use_case(name).examples()
    evaluation_texts = {(normalise(e.question), normalise(e.context)) for e in evaluation}
    kept = [*split.train, *split.validation]
    texts = [(normalise(e.question), normalise(e.context)) for e in kept]
    assert (len(split.train), len(split.validation)) == (200, 40)
    assert evaluation_texts.isdisjoint(texts)
    assert len(set(texts)) == len(texts)  # training and validation share no question either
    ids = [e.id for e in kept]
    assert len(set(ids)) == len(ids)
    assert {e.id for e in evaluation}.isdisjoint(ids)
    assert split.seeds[0] == importlib.import_module(USE_CASE_SOURCES[name].builder).SEED + 1000


def test_a_smaller_split_is_a_prefix_of_a_larger_one() -> None:
    small = generate_use_case_split("entity-threat-detection", 10, 40)
    large = _split("entity-threat-detection")
    assert small.validation == large.validation
    assert small.train == large.train[:10]


def test_customs_drops_reworded_questions_that_match_evaluation() -> None:
    split = _split("customs-help")
    assert split.dropped_evaluation > 0  # its templates are few, so some generated questions repeat evaluation's
    assert split.describe()["dropped_matching_evaluation"] == split.dropped_evaluation


def test_triage_phrase_key_catches_either_direction() -> None:
    evaluation = Example(
        "e", "Do you have a hotel reservation?", ("¿Tiene una reserva de hotel?",), target={"reference": "x"}
    )
    reverse = Example("t", "¿Tiene una reserva de hotel?", ("Do you have a hotel reservation?",))
    other_language = Example("u", "Do you have a hotel reservation?", ("Avez-vous une réservation d'hôtel ?",))
    for candidate in (reverse, other_language):
        assert phrase_key(candidate) & phrase_key(evaluation)


def test_triage_has_no_disjoint_training_data() -> None:
    split = _split("multilingual-triage")
    assert split.train == () and split.validation == ()
    assert split.dropped_evaluation > 0
    assert "no training data disjoint" in split.shortfall()
    evaluation = load_use_case("multilingual-triage").examples()
    assert len({e.metadata["phrase"] for e in evaluation}) == 48  # every phrase of the bank is evaluated
