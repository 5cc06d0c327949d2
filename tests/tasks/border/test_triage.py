"""Tests for the multilingual triage task: parsing, scoring, corpus scores, the data file and its generator."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from sacrebleu.metrics.bleu import BLEU
from sacrebleu.metrics.chrf import CHRF

from slm_eval.tasks.base import CorpusTask, Example
from slm_eval.tasks.border.build_triage_data import LANGUAGES, PHRASES, directions, write_data
from slm_eval.tasks.border.data_files import data_path
from slm_eval.tasks.border.triage import (
    CORPUS_METRIC_NAMES,
    DATA_FILE,
    INTENTS,
    METRIC_NAMES,
    PROMPT_PREFIX,
    TASK_NAME,
    TriageTask,
    corpus_scores_by_pair,
    load_task,
    parse_answer,
    parse_intent,
)


def _example(source: str, target: str, question: str, reference: str, intent: str, key: str = "x") -> Example:
    return Example(
        id=f"t-{source}-{target}-{key}",
        question=question,
        references=(reference,),
        target={"source_lang": source, "target_lang": target, "reference": reference, "intent": intent},
    )


EN_FR = _example("en", "fr", "Do you have anything to declare?", "Avez-vous quelque chose à déclarer ?", "declaration")
AR_EN = _example("ar", "en", "أريد أن أطلب اللجوء هنا.", "I want to ask for asylum here.", "asylum_request")
EN_UK = _example("en", "uk", "Do you have a hotel reservation?", "У вас є бронювання в готелі?", "accommodation")


@pytest.fixture(scope="module")
def task() -> TriageTask:
    return load_task()


def _answer(example: Example, intent: str | None = None) -> str:
    return f"Translation: {example.references[0]}\nIntent: {intent or example.target['intent']}"


# --- scoring hand-made outputs -------------------------------------------------------------------------


@pytest.mark.parametrize("example", [EN_FR, AR_EN, EN_UK])
def test_exact_translation_and_intent_score_one(task: TriageTask, example: Example) -> None:
    assert task.score(example, _answer(example)) == {"chrf": 1.0, "intent": 1.0}
    assert task.parse_error(example, _answer(example)) is None


def test_every_shipped_reference_scores_one(task: TriageTask) -> None:
    for example in task.examples():
        assert task.score(example, _answer(example)) == {"chrf": 1.0, "intent": 1.0}, example.id


@pytest.mark.parametrize(
    "output",
    [
        "Avez-vous quelque chose à déclarer ?\nIntent: declaration",  # no "Translation:" prefix
        "translation:   Avez-vous quelque chose à déclarer ?  \n\nINTENT: Declaration",
        '**Translation:** "Avez-vous quelque chose à déclarer ?"\n**Intent:** `declaration`',
        "```\nTranslation: Avez-vous quelque chose à déclarer ?\nIntent: declaration\n```",
        "Translation: Avez-vous quelque chose à déclarer ? Intent: declaration",
        "Sure, here is the translation:\nAvez-vous quelque chose à déclarer ?\nIntent: customs declaration",
        "French translation: « Avez-vous quelque chose à déclarer ? »\nLabel: declare",
        "Translation:\nAvez-vous quelque chose à déclarer ?\nIntent: declaration (the officer asks about goods)",
        "Avez-vous quelque chose à déclarer ?\ndeclaration",
        "Translation: Avez-vous quelque chose à déclarer ?\nIntent:\ndeclaration",
    ],
)
def test_tolerant_parsing_of_the_right_answer(task: TriageTask, output: str) -> None:
    assert task.score(EN_FR, output) == {"chrf": 1.0, "intent": 1.0}
    assert task.parse_error(EN_FR, output) is None


def test_ascii_and_typographic_apostrophes_score_alike(task: TriageTask) -> None:
    example = _example("en", "uk", "Ninety days.", "Дев’яносто днів.", "length_of_stay")
    assert task.score(example, "Translation: Дев'яносто днів.\nIntent: length_of_stay")["chrf"] == 1.0


def test_right_translation_wrong_intent(task: TriageTask) -> None:
    assert task.score(EN_FR, _answer(EN_FR, "purpose_of_visit")) == {"chrf": 1.0, "intent": 0.0}


def test_partial_translation_scores_between_zero_and_one(task: TriageTask) -> None:
    scores = task.score(EN_FR, "Translation: Avez-vous quelque chose ?\nIntent: declaration")
    assert 0.3 < scores["chrf"] < 1.0
    assert scores["intent"] == 1.0


def test_missing_intent_keeps_the_translation_score(task: TriageTask) -> None:
    output = "Translation: Avez-vous quelque chose à déclarer ?"
    assert task.score(EN_FR, output) == {"chrf": 1.0, "intent": 0.0}
    assert task.parse_error(EN_FR, output) is None


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ("", "empty"),
        ("   \n\t", "empty"),
        ("@@@ ### !!! 123", "no translation"),
        ("Intent: declaration", "no translation"),
    ],
)
def test_unparsable_output_scores_zero_with_a_parse_error(task: TriageTask, output: str, reason: str) -> None:
    assert task.score(EN_FR, output) == dict.fromkeys(METRIC_NAMES, 0.0)
    error = task.parse_error(EN_FR, output)
    assert error is not None and reason in error
    assert "\n" not in error


def test_hedged_or_listed_intents_score_zero(task: TriageTask) -> None:
    hedge = "Translation: Avez-vous quelque chose à déclarer ?\nIntent: declaration or document_request"
    assert task.score(EN_FR, hedge)["intent"] == 0.0
    every_label = "Translation: Avez-vous quelque chose à déclarer ?\nIntent: " + ", ".join(INTENTS)
    assert task.score(EN_FR, every_label)["intent"] == 0.0


def test_untranslated_echo_scores_low(task: TriageTask) -> None:
    scores = task.score(EN_FR, "Translation: Do you have anything to declare?\nIntent: declaration")
    assert scores["chrf"] < 0.3


def test_wrong_language_scores_low(task: TriageTask) -> None:
    russian = "Translation: Вам есть что задекларировать?\nIntent: declaration"
    assert task.score(EN_UK, russian)["chrf"] < 0.2


def test_scores_always_carry_every_metric(task: TriageTask) -> None:
    for output in ["", "garbage", _answer(EN_FR), "Intent: x"]:
        scores = task.score(EN_FR, output)
        assert tuple(scores) == METRIC_NAMES
        assert all(0.0 <= value <= 1.0 for value in scores.values())


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("purpose_of_visit", "purpose_of_visit"),
        ("Purpose of visit", "purpose_of_visit"),
        ("LENGTH-OF-STAY", "length_of_stay"),
        ("asylum", "asylum_request"),
        ("medical need.", "medical_need"),
        ("hotel", "accommodation"),
        ("transit", "onward_travel"),
        ("the label is onward_travel", "onward_travel"),
        ("purpose_of_visit / length_of_stay", None),
        ("weather", None),
        ("", None),
    ],
)
def test_parse_intent(text: str, label: str | None) -> None:
    assert parse_intent(text) == label


def test_parse_answer_strips_inline_intent_and_quotes() -> None:
    answer = parse_answer('Translation: "I want to ask for asylum here." | Intent: asylum')
    assert answer is not None
    assert answer.translation == "I want to ask for asylum here."
    assert answer.intent == "asylum_request"


# --- corpus scores -------------------------------------------------------------------------------------

HAND_SET = [
    (EN_FR, "Translation: Avez-vous quelque chose à déclarer ?\nIntent: declaration"),
    (AR_EN, "Translation: I want to request asylum here.\nIntent: medical_need"),
    (EN_UK, "Translation: У вас є бронь у готелі?\nIntent: accommodation"),
]


def test_corpus_scores_match_sacrebleu(task: TriageTask) -> None:
    hypotheses = ["Avez-vous quelque chose à déclarer ?", "I want to request asylum here.", "У вас є бронь у готелі?"]
    references = [[example.references[0] for example, _ in HAND_SET]]
    scores = task.corpus_scores(HAND_SET)
    assert tuple(scores) == CORPUS_METRIC_NAMES
    assert scores["chrf_pp"] == pytest.approx(CHRF(word_order=2).corpus_score(hypotheses, references).score / 100)
    assert scores["bleu"] == pytest.approx(BLEU().corpus_score(hypotheses, references).score / 100)
    assert scores["intent_accuracy"] == pytest.approx(2 / 3)
    assert 0.0 < scores["bleu"] < scores["chrf_pp"] < 1.0


def test_corpus_scores_count_an_unparsable_output_as_empty(task: TriageTask) -> None:
    scored = [HAND_SET[0], (AR_EN, ""), HAND_SET[2]]
    hypotheses = ["Avez-vous quelque chose à déclarer ?", "", "У вас є бронь у готелі?"]
    references = [[example.references[0] for example, _ in scored]]
    scores = task.corpus_scores(scored)
    assert scores["chrf_pp"] == pytest.approx(CHRF(word_order=2).corpus_score(hypotheses, references).score / 100)
    assert scores["intent_accuracy"] == pytest.approx(2 / 3)


def test_corpus_scores_of_nothing_are_zero(task: TriageTask) -> None:
    assert task.corpus_scores([]) == dict.fromkeys(CORPUS_METRIC_NAMES, 0.0)


def test_perfect_corpus_scores_one(task: TriageTask) -> None:
    scores = task.corpus_scores([(example, _answer(example)) for example in task.examples()])
    assert scores == pytest.approx(dict.fromkeys(CORPUS_METRIC_NAMES, 1.0))


def test_corpus_scores_by_pair() -> None:
    by_pair = corpus_scores_by_pair(HAND_SET)
    assert list(by_pair) == ["en-fr", "ar-en", "en-uk"]
    assert by_pair["en-fr"] == pytest.approx({"chrf_pp": 1.0, "bleu": 1.0, "intent_accuracy": 1.0, "n": 1.0})
    expected = BLEU().corpus_score(["I want to request asylum here."], [["I want to ask for asylum here."]])
    assert by_pair["ar-en"]["bleu"] == pytest.approx(expected.score / 100)
    assert by_pair["ar-en"]["intent_accuracy"] == 0.0


# --- task contract and prompt --------------------------------------------------------------------------


def test_task_meets_the_corpus_task_contract(task: TriageTask) -> None:
    contract: CorpusTask = task
    assert contract.name == TASK_NAME == "multilingual-triage"
    assert contract.metric_names[0] == "chrf"
    assert contract.corpus_metric_names == ("chrf_pp", "bleu", "intent_accuracy")
    assert 48 <= contract.max_new_tokens <= 128


def test_prompt_shares_a_prefix_and_ends_with_the_phrase(task: TriageTask) -> None:
    for example in task.examples()[:12]:
        prompt = task.prompt(example)
        assert prompt.startswith(PROMPT_PREFIX)
        assert prompt.rstrip().endswith(example.question)
    prompt = task.prompt(AR_EN)
    assert "Translate from Arabic to English." in prompt
    assert all(label in PROMPT_PREFIX for label in INTENTS)
    assert "Translation:" in PROMPT_PREFIX and "Intent:" in PROMPT_PREFIX


def test_few_shot_phrases_are_not_in_the_data(task: TriageTask) -> None:
    shots = {"Do you have travel insurance for your stay?", "Мне нужно срочно принять лекарство."}
    assert not shots & {example.question for example in task.examples()}


# --- the data file and its generator -------------------------------------------------------------------


def test_data_file_loads_with_unique_ids(task: TriageTask) -> None:
    examples = task.examples()
    assert len(examples) >= 60
    assert len({example.id for example in examples}) == len(examples)


def test_data_is_balanced_by_direction_and_intent(task: TriageTask) -> None:
    examples = task.examples()
    by_pair = Counter(f"{e.target['source_lang']}-{e.target['target_lang']}" for e in examples)
    assert set(by_pair) == {f"{source}-{target}" for source, target in directions()}
    assert max(by_pair.values()) - min(by_pair.values()) <= 1
    by_intent = Counter(str(e.target["intent"]) for e in examples)
    assert set(by_intent) == set(INTENTS)
    assert max(by_intent.values()) - min(by_intent.values()) <= 1
    assert set(Counter(e.metadata["speaker"] for e in examples)) == {"officer", "traveller"}


def test_targets_are_consistent(task: TriageTask) -> None:
    for example in task.examples():
        target = example.target
        assert set(target) == {"source_lang", "target_lang", "reference", "intent"}
        assert "en" in (target["source_lang"], target["target_lang"])
        assert target["source_lang"] != target["target_lang"]
        assert example.references == (target["reference"],)
        assert example.context is None


_SCRIPTS = {
    "en": re.compile(r"^[A-Za-z0-9 ,.?'!-]+$"),
    "fr": re.compile(r"^[A-Za-zÀ-ÿœ0-9 ,.?'!-]+$"),
    "es": re.compile(r"^[A-Za-zÁÉÍÓÚÑáéíóúñü¿¡0-9 ,.?'!-]+$"),
    "ar": re.compile(r"^[\u0600-\u06ff ،.؟]+$"),
    "ru": re.compile(r"^[А-Яа-яЁё ,.?!-]+$"),
    "uk": re.compile(r"^[А-ЩЬЮЯЄІЇҐа-щьюяєіїґ’ ,.?!-]+$"),
}


def test_phrase_tables_are_in_the_right_script_and_length() -> None:
    keys = [phrase.key for phrase in PHRASES]
    assert len(set(keys)) == len(keys)
    for phrase in PHRASES:
        assert set(phrase.text) == {"en", *LANGUAGES}
        assert phrase.intent in INTENTS
        for lang, text in phrase.text.items():
            assert _SCRIPTS[lang].match(text), (phrase.key, lang, text)
            assert 4 <= len(text.split()) <= 15, (phrase.key, lang, text)
        assert phrase.text["ru"] != phrase.text["uk"]
        assert not re.search("[ыэъё]", phrase.text["uk"]), phrase.key  # Russian-only letters
        assert not re.search("[іїєґ]", phrase.text["ru"]), phrase.key  # Ukrainian-only letters


def test_examples_come_from_the_phrase_tables(task: TriageTask) -> None:
    by_key = {phrase.key: phrase for phrase in PHRASES}
    for example in task.examples():
        phrase = by_key[example.metadata["phrase"]]
        assert example.question == phrase.text[str(example.target["source_lang"])]
        assert example.references[0] == phrase.text[str(example.target["target_lang"])]
        assert example.target["intent"] == phrase.intent


def test_generator_reproduces_the_shipped_file(tmp_path: Path) -> None:
    rebuilt = tmp_path / DATA_FILE
    assert write_data(rebuilt) >= 60
    assert rebuilt.read_bytes() == data_path(DATA_FILE).read_bytes()
