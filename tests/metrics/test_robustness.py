"""Seeded perturbations: deterministic per (seed, key), rates honoured, safe on texts they cannot touch."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import unicodedata
from collections.abc import Iterable

import pytest

from slm_eval.errors import UserError
from slm_eval.metrics.robustness import (
    HOMOGLYPHS,
    PERTURBATIONS,
    RobustnessResult,
    casing_and_whitespace,
    derive_seed,
    dropped_words,
    homoglyphs,
    keyboard_typos,
    ocr_confusions,
    perturb,
    perturb_example,
)
from slm_eval.tasks.base import Example

TEXT = (
    "Travellers arriving from outside the customs union must declare cash of 10,000 EUR or more "
    "at the Red Channel; Officer Silva checks the passport, visa and boarding pass in booth B8."
)


class ScriptedRandom(random.Random):
    """A Random whose ``random()`` returns scripted values (choices still come from the seeded state)."""

    def __init__(self, values: Iterable[float]) -> None:
        super().__init__(0)
        self._values = iter(values)

    def random(self) -> float:
        return next(self._values)


def test_the_five_perturbations_are_registered_with_one_line_descriptions() -> None:
    assert set(PERTURBATIONS) == {"typos", "ocr", "homoglyphs", "casing_whitespace", "dropped_words"}
    for name, perturbation in PERTURBATIONS.items():
        assert perturbation.name == name
        assert perturbation.description
        assert "\n" not in perturbation.description


@pytest.mark.parametrize("kind", sorted(PERTURBATIONS))
def test_perturb_is_deterministic_for_seed_and_key(kind: str) -> None:
    first = perturb(TEXT, kind, 0.3, seed=1, key="q-1")
    assert first == perturb(TEXT, kind, 0.3, seed=1, key="q-1")
    assert first != TEXT
    assert first != perturb(TEXT, kind, 0.3, seed=2, key="q-1")
    assert first != perturb(TEXT, kind, 0.3, seed=1, key="q-2")


def test_perturb_is_the_same_in_another_process_with_another_hash_seed() -> None:
    here = {kind: perturb(TEXT, kind, 0.2, seed=5, key="ex-9") for kind in PERTURBATIONS}
    code = (
        "import json, sys\n"
        "from slm_eval.metrics.robustness import PERTURBATIONS, perturb\n"
        f"text = {TEXT!r}\n"
        "print(json.dumps({k: perturb(text, k, 0.2, seed=5, key='ex-9') for k in PERTURBATIONS}))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert json.loads(done.stdout) == here


def test_derive_seed_is_stable() -> None:
    # sha256("0\x1ftypos\x1fq-1"), first 8 bytes big-endian: fixed forever, so results stay comparable
    assert derive_seed(0, "typos", "q-1") == derive_seed(0, "typos", "q-1")
    assert derive_seed(0, "typos", "q-1") != derive_seed(0, "ocr", "q-1")
    assert 0 <= derive_seed(0, "typos", "q-1") < 2**64


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("typos", "123 456 !? 7,8"),
        ("ocr", "ace fun"),
        ("homoglyphs", "bdfh 42 !"),
        ("casing_whitespace", "123-456!?"),
        ("dropped_words", "  single-word\n"),
        ("typos", ""),
        ("ocr", ""),
        ("homoglyphs", ""),
        ("casing_whitespace", ""),
        ("dropped_words", ""),
    ],
)
def test_text_with_nothing_eligible_is_unchanged(kind: str, text: str) -> None:
    assert perturb(text, kind, 1.0, seed=0, key="k") == text


@pytest.mark.parametrize("kind", sorted(PERTURBATIONS))
@pytest.mark.parametrize("text", ["a", "ab", "a b", "x y z", " "])
def test_never_empty_for_non_empty_input(kind: str, text: str) -> None:
    for seed in range(30):
        assert perturb(text, kind, 1.0, seed=seed, key="k") != ""


def test_dropped_words_rate_is_honoured() -> None:
    words = [f"w{i}" for i in range(200)]
    result = dropped_words(" ".join(words), 0.5, random.Random(0))
    kept = result.split()
    assert 70 <= 200 - len(kept) <= 130
    # survivors keep their order and are a subset of the original words
    assert kept == [word for word in words if word in set(kept)]


def test_dropped_words_at_rate_one_keeps_exactly_one_word() -> None:
    for seed in range(20):
        result = dropped_words("one two three four five", 1.0, random.Random(seed))
        assert len(result.split()) == 1
        assert result in {"one", "two", "three", "four", "five"}


def test_dropped_words_takes_the_following_whitespace_along() -> None:
    rate = 0.5
    result = dropped_words(" one two\nthree four ", rate, ScriptedRandom([0.9, 0.1, 0.9, 0.9]))
    assert result == " one three four "
    result = dropped_words("one two\nthree", rate, ScriptedRandom([0.9, 0.9, 0.1]))
    assert result == "one two"


def test_homoglyphs_look_the_same_but_differ_in_code_points() -> None:
    text = "Passport CAPE TOWN copy exp"
    result = homoglyphs(text, 1.0, random.Random(3))
    assert len(result) == len(text)
    assert result != text
    for original, swapped in zip(text, result, strict=True):
        if original in HOMOGLYPHS:
            assert swapped != original
            assert swapped in HOMOGLYPHS[original]
            assert unicodedata.name(swapped).split()[0] in {"CYRILLIC", "GREEK"}
        else:
            assert swapped == original
    assert result.encode("ascii", errors="ignore") != text.encode()


def test_homoglyph_rate_is_honoured() -> None:
    result = homoglyphs("a" * 1000, 0.2, random.Random(0))
    changed = sum(1 for char in result if char != "a")
    assert 140 <= changed <= 260


def test_ocr_confusions_at_rate_one() -> None:
    assert ocr_confusions("SOS B8", 1.0, random.Random(0)) == "505 8B"
    assert ocr_confusions("modern", 1.0, random.Random(0)) == "rn0clem"  # m->rn, o->0, d->cl, e, rn->m
    assert ocr_confusions("clever", 1.0, random.Random(0)) == "dever"  # the pair cl is matched before l
    assert ocr_confusions("l", 1.0, random.Random(0)) in {"1", "I"}


def test_ocr_confusions_rate_is_honoured() -> None:
    result = ocr_confusions("O" * 1000, 0.3, random.Random(0))
    assert 230 <= result.count("0") <= 370


def test_casing_and_whitespace_at_rate_one_flips_every_letter() -> None:
    assert casing_and_whitespace("Gate 7b", 1.0, ScriptedRandom([0.0] * 5 + [0.9, 0.0])) == "gATE7B"
    assert casing_and_whitespace("a b", 1.0, ScriptedRandom([0.0, 0.0, 0.1, 0.0])) == "A  B"


def test_casing_and_whitespace_leaves_letters_without_a_single_swapcase_alone() -> None:
    assert casing_and_whitespace("ß", 1.0, random.Random(0)) == "ß"


def test_keyboard_typos_use_qwerty_neighbours_and_keep_case() -> None:
    rng = random.Random(0)
    for _ in range(50):
        result = keyboard_typos("Q", 1.0, rng)
        # replace -> W/A; insert -> Q + W/A; transpose without a next letter -> replace; delete of all -> replace
        assert result in {"W", "A", "QW", "QA"}


def test_keyboard_typos_rate_is_honoured() -> None:
    text = "a" * 2000
    result = keyboard_typos(text, 0.05, random.Random(0))
    # about 100 hits; inserts (+1) and deletes (-1) roughly cancel, replacements and swaps keep the length
    assert result != text
    assert abs(len(result) - len(text)) < 60
    changed = sum(1 for a, b in zip(text, result, strict=False) if a != b)
    assert changed > 0
    untouched = keyboard_typos(text, 1e-9, random.Random(0))
    assert untouched == text


@pytest.mark.parametrize("kind", ["typo", "", "Homoglyphs"])
def test_unknown_kind_is_a_user_error_naming_the_known_kinds(kind: str) -> None:
    with pytest.raises(UserError) as caught:
        perturb(TEXT, kind, 0.1, seed=0, key="k")
    message = str(caught.value)
    assert f"'{kind}'" in message
    for name in PERTURBATIONS:
        assert name in message


@pytest.mark.parametrize("rate", [0.0, -0.1, 1.01, float("nan"), float("inf")])
def test_rate_outside_zero_one_is_a_user_error(rate: float) -> None:
    with pytest.raises(UserError, match="rate"):
        perturb(TEXT, "typos", rate, seed=0, key="k")


def test_rate_one_is_allowed() -> None:
    assert perturb(TEXT, "homoglyphs", 1.0, seed=0, key="k") != TEXT


def test_perturb_example_changes_only_the_question() -> None:
    example = Example(
        id="border-42",
        question="Which passport page holds the photo?",
        references=("the data page", "data page"),
        context="The photo is on the data page of the passport.",
        metadata={"topic": "documents"},
    )
    perturbed = perturb_example(example, "homoglyphs", 1.0, seed=0)
    assert perturbed.question != example.question
    assert perturbed.question == perturb(example.question, "homoglyphs", 1.0, seed=0, key="border-42")
    assert perturbed.id == example.id
    assert perturbed.references == example.references
    assert perturbed.context == example.context
    assert perturbed.metadata == example.metadata
    assert perturb_example(example, "homoglyphs", 1.0, seed=0) == perturbed


def test_robustness_result() -> None:
    result = RobustnessResult(perturbation="typos", rate=0.1, clean_score=0.8, perturbed_score=0.6)
    assert result.drop == pytest.approx(0.2)
    assert result.relative_drop == pytest.approx(0.25)
    data = result.to_dict()
    assert data["perturbation"] == "typos"
    assert data["rate"] == 0.1
    assert data["clean_score"] == 0.8
    assert data["perturbed_score"] == 0.6
    assert data["drop"] == pytest.approx(0.2)
    assert data["relative_drop"] == pytest.approx(0.25)


def test_robustness_result_with_a_zero_clean_score() -> None:
    result = RobustnessResult(perturbation="ocr", rate=0.1, clean_score=0.0, perturbed_score=0.1)
    assert result.drop == pytest.approx(-0.1)
    assert result.relative_drop is None
