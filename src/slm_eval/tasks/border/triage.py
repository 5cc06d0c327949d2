"""Multilingual conversational triage: translate a desk phrase and label its intent.

Officer and traveller phrases at a border desk go from English into French, Spanish, Arabic, Russian
or Ukrainian and back. The model answers in two lines, ``Translation: ...`` and ``Intent: <label>``;
the translation is scored with sentence chrF++ (sacrebleu, ``word_order=2``) and the intent by exact
label. Over the whole set the task adds corpus chrF++, corpus BLEU and intent accuracy::

    slm-eval benchmark --model smollm2-135m-instruct --use-cases multilingual-triage --limit 20
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sacrebleu.metrics.bleu import BLEU
from sacrebleu.metrics.chrf import CHRF

from slm_eval.tasks.base import Example
from slm_eval.tasks.border.data_files import data_path, load_examples
from slm_eval.tasks.border.use_case import UseCase

TASK_NAME = "multilingual-triage"
DATA_FILE = "triage.jsonl"
INTENTS: tuple[str, ...] = (
    "purpose_of_visit",
    "length_of_stay",
    "declaration",
    "medical_need",
    "asylum_request",
    "document_request",
    "accommodation",
    "onward_travel",
)
LANGUAGE_NAMES: dict[str, str] = {
    "en": "English",
    "fr": "French",
    "es": "Spanish",
    "ar": "Arabic",
    "ru": "Russian",
    "uk": "Ukrainian",
}

# Other names a model may give a label, written in normalised form (lower case, words joined by "_").
INTENT_SYNONYMS: dict[str, str] = {
    "purpose": "purpose_of_visit",
    "visit_purpose": "purpose_of_visit",
    "purpose_of_travel": "purpose_of_visit",
    "purpose_of_trip": "purpose_of_visit",
    "reason_for_visit": "purpose_of_visit",
    "reason_for_travel": "purpose_of_visit",
    "length": "length_of_stay",
    "duration": "length_of_stay",
    "duration_of_stay": "length_of_stay",
    "stay_length": "length_of_stay",
    "stay_duration": "length_of_stay",
    "length_of_visit": "length_of_stay",
    "declare": "declaration",
    "customs": "declaration",
    "customs_declaration": "declaration",
    "anything_to_declare": "declaration",
    "medical": "medical_need",
    "medical_needs": "medical_need",
    "medical_help": "medical_need",
    "medical_emergency": "medical_need",
    "health": "medical_need",
    "asylum": "asylum_request",
    "asylum_claim": "asylum_request",
    "asylum_application": "asylum_request",
    "international_protection": "asylum_request",
    "protection_request": "asylum_request",
    "document": "document_request",
    "documents": "document_request",
    "documents_request": "document_request",
    "document_check": "document_request",
    "documentation": "document_request",
    "passport_check": "document_request",
    "lodging": "accommodation",
    "housing": "accommodation",
    "hotel": "accommodation",
    "place_to_stay": "accommodation",
    "onward": "onward_travel",
    "onward_journey": "onward_travel",
    "onward_ticket": "onward_travel",
    "transit": "onward_travel",
    "return_travel": "onward_travel",
}

PROMPT_PREFIX = (
    "You help a border officer at the passport desk. Translate the phrase into the target language, "
    "then say what it is about.\n"
    "Intent labels:\n"
    "- purpose_of_visit: why the person travels\n"
    "- length_of_stay: how long the person stays\n"
    "- declaration: goods, cash or items to declare\n"
    "- medical_need: illness, medicine or a doctor\n"
    "- asylum_request: asylum or protection\n"
    "- document_request: passports, visas or other papers\n"
    "- accommodation: where the person will sleep or stay\n"
    "- onward_travel: the next or return journey, transit\n"
    "Reply with exactly two lines and nothing else:\n"
    "Translation: <the translation only>\n"
    "Intent: <one label from the list>\n"
    "\n"
    "Example 1\n"
    "Translate from English to Spanish.\n"
    "Phrase: Do you have travel insurance for your stay?\n"
    "Translation: ¿Tiene un seguro de viaje para su estancia?\n"
    "Intent: document_request\n"
    "\n"
    "Example 2\n"
    "Translate from Russian to English.\n"
    "Phrase: Мне нужно срочно принять лекарство.\n"
    "Translation: I need to take my medicine urgently.\n"
    "Intent: medical_need\n"
    "\n"
    "Now this phrase\n"
)
PROMPT_INPUT = "Translate from {source} to {target}.\nPhrase: {question}\n"

METRIC_NAMES: tuple[str, ...] = ("chrf", "intent")
CORPUS_METRIC_NAMES: tuple[str, ...] = ("chrf_pp", "bleu", "intent_accuracy")
# The longest two-line reference answer (Arabic, Russian) takes 61 SmolLM2 tokens.
MAX_NEW_TOKENS = 80

_CHRF = CHRF(word_order=2)
# "Translation:", "French translation:", "**Translation (English):**", "Here is the translation:".
_TRANSLATION_LINE = re.compile(
    r"^[\s*_#>`-]*(?:[^\s:]+\s+){0,4}?translation(?:\s*\([^)]*\))?[\s*_`]*[:\uff1a]\s*(?P<rest>.*)$", re.IGNORECASE
)
# "Intent: x", "Intent label: x", "**Label:** x", "The intent: x".
_INTENT_LINE = re.compile(
    r"^[\s*_#>`-]*(?:[^\s:]+\s+){0,2}?(?:intent(?:\s+label)?|label)[\s*_`]*[:\uff1a=]\s*(?P<rest>.*)$", re.IGNORECASE
)
_INLINE_INTENT = re.compile(r"[\s*_`|;,-]*\bintent(?:\s+label)?\b[\s*_`]*[:\uff1a=]\s*", re.IGNORECASE)
_FENCE_LINE = re.compile(r"^\s*```[\w-]*\s*$")
_EDGE_CHARS = " \t*_`"
_QUOTE_PAIRS = {'"': '"', "'": "'", "\u201c": "\u201d", "\u201e": "\u201c", "\u00ab": "\u00bb", "\u2018": "\u2019"}
_NON_WORD = re.compile(r"[^\w]+")
# Typographic apostrophes (U+2019, U+02BC; Ukrainian and French) count as the ASCII one, in outputs and references.
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u02bc": "'"})


@dataclass(frozen=True)
class TriageAnswer:
    """A model's answer, parsed.

    Attributes:
        translation: the translated phrase, stripped of its ``Translation:`` prefix and surrounding quotes.
        intent: one label of :data:`INTENTS`, or ``None`` when no single label could be read.
    """

    translation: str
    intent: str | None


def _clean(text: str) -> str:
    """Strips markdown emphasis, backticks and one pair of surrounding quotes."""
    text = text.strip(_EDGE_CHARS)
    if len(text) >= 2 and _QUOTE_PAIRS.get(text[0]) == text[-1]:
        text = text[1:-1].strip(_EDGE_CHARS)
    return text


def _normalise_label(text: str) -> str:
    return _NON_WORD.sub("_", text.lower()).strip("_")


def parse_intent(text: str, allow_synonyms: bool = True) -> str | None:
    """The one intent label named in ``text``, or ``None`` when none or several are named.

    Tries, in order: the whole text as a label, as a synonym, then labels (and synonyms) found inside it.
    A hedge that names two labels (``purpose_of_visit or length_of_stay``) is ``None``.

    Args:
        text: the value after ``Intent:``, or any line of the output.
        allow_synonyms: also accept the names of :data:`INTENT_SYNONYMS`.
    """
    value = _normalise_label(text)
    if not value:
        return None
    if value in INTENTS:
        return value
    if allow_synonyms and value in INTENT_SYNONYMS:
        return INTENT_SYNONYMS[value]
    padded = f"_{value}_"
    found = {label for label in INTENTS if f"_{label}_" in padded}
    if not found and allow_synonyms:
        found = {label for name, label in INTENT_SYNONYMS.items() if f"_{name}_" in padded}
    return found.pop() if len(found) == 1 else None


def parse_answer(output: str) -> TriageAnswer | None:
    """The translation and intent in a model's output, or ``None`` when no translation can be read.

    The translation is the text after ``Translation:`` (or on the line below a bare ``Translation:``);
    without that prefix it is the first non-empty line that is not an ``Intent:`` line. The intent is
    read from an ``Intent:`` line (or an inline ``Intent:`` after the translation); without one, from a
    bare label on another line. Code fences, markdown emphasis and surrounding quotes are ignored.
    """
    lines = [line.strip() for line in output.splitlines() if line.strip() and not _FENCE_LINE.match(line)]
    translation: str | None = None
    translation_index: int | None = None
    for index, line in enumerate(lines):
        match = _TRANSLATION_LINE.match(line)
        if match is None:
            continue
        rest = _clean(match.group("rest"))
        if rest:
            translation, translation_index = rest, index
        elif index + 1 < len(lines) and _INTENT_LINE.match(lines[index + 1]) is None:
            translation, translation_index = _clean(lines[index + 1]), index + 1
        break
    if translation is None:
        for index, line in enumerate(lines):
            if _INTENT_LINE.match(line) is None and not line.endswith((":", "\uff1a")):
                translation, translation_index = _clean(line), index
                break
    intent_values: list[str] = []
    if translation is not None:
        head, *inline = _INLINE_INTENT.split(translation, maxsplit=1)
        translation = _clean(head)
        intent_values.extend(inline)
    if not translation or not any(char.isalpha() for char in translation):
        return None
    others = [line for index, line in enumerate(lines) if index != translation_index]
    for line in others:
        match = _INTENT_LINE.match(line)
        if match is not None:
            intent_values.append(match.group("rest"))
    intent_values = [value for value in intent_values if value.strip(_EDGE_CHARS)]
    if intent_values:
        intent = parse_intent(intent_values[0])
    else:
        intent = parse_intent(" ".join(others), allow_synonyms=False) if others else None
    return TriageAnswer(translation=translation, intent=intent)


def _parse_error(output: str) -> str | None:
    if not output.strip():
        return "the output is empty"
    if parse_answer(output) is None:
        return "no translation found: expected a line 'Translation: <text>' with words in it"
    return None


def _reference(example: Example) -> str:
    return example.references[0] if example.references else str(example.target["reference"])


def _for_scoring(text: str) -> str:
    return text.translate(_APOSTROPHES)


def _sentence_chrf(hypothesis: str, references: Sequence[str]) -> float:
    refs = [_for_scoring(reference) for reference in references]
    score = float(_CHRF.sentence_score(_for_scoring(hypothesis), refs).score) / 100.0
    return min(1.0, max(0.0, score))


def _pair_key(example: Example) -> str:
    return f"{example.target['source_lang']}-{example.target['target_lang']}"


def _corpus(scored: Sequence[tuple[Example, str]]) -> dict[str, float]:
    if not scored:
        return dict.fromkeys(CORPUS_METRIC_NAMES, 0.0)
    hypotheses: list[str] = []
    references: list[str] = []
    correct = 0
    for example, output in scored:
        answer = parse_answer(output)
        hypotheses.append(_for_scoring(answer.translation) if answer is not None else "")
        references.append(_for_scoring(_reference(example)))
        correct += int(answer is not None and answer.intent == example.target["intent"])
    chrf = float(_CHRF.corpus_score(hypotheses, [references]).score) / 100.0
    bleu = float(BLEU().corpus_score(hypotheses, [references]).score) / 100.0
    return {
        "chrf_pp": min(1.0, max(0.0, chrf)),
        "bleu": min(1.0, max(0.0, bleu)),
        "intent_accuracy": correct / len(scored),
    }


def corpus_scores_by_pair(pairs: Iterable[tuple[Example, str]]) -> dict[str, dict[str, float]]:
    """Corpus chrF++, BLEU and intent accuracy for each direction, keyed ``"en-fr"``, ``"fr-en"`` and so on.

    Args:
        pairs: (example, model output) pairs.

    Returns:
        For each direction present, ``{"chrf_pp", "bleu", "intent_accuracy", "n"}`` (scores in 0..1, ``n`` the
        number of examples), in the order the directions first appear.
    """
    groups: dict[str, list[tuple[Example, str]]] = {}
    for example, output in pairs:
        groups.setdefault(_pair_key(example), []).append((example, output))
    return {key: {**_corpus(group), "n": float(len(group))} for key, group in groups.items()}


class TriageTask(UseCase):
    """Desk-phrase translation with intent labels, scored with chrF++ (primary), BLEU and intent accuracy."""

    task_name = TASK_NAME
    per_example_metrics = METRIC_NAMES
    corpus_metrics = CORPUS_METRIC_NAMES
    answer_tokens = MAX_NEW_TOKENS

    def __init__(self, examples: Sequence[Example]) -> None:
        """Makes the task from loaded examples (each ``target`` holds ``source_lang``, ``target_lang``, ``intent``)."""
        self._examples = tuple(examples)

    def prompt(self, example: Example) -> str:
        """The shared instruction and two shots, then the directions and the phrase to translate."""
        source = LANGUAGE_NAMES[str(example.target["source_lang"])]
        target = LANGUAGE_NAMES[str(example.target["target_lang"])]
        return PROMPT_PREFIX + PROMPT_INPUT.format(source=source, target=target, question=example.question.strip())

    def score(self, example: Example, output: str) -> dict[str, float]:
        """Sentence chrF++ of the translation against the references, and 1.0 when the intent is right."""
        answer = parse_answer(output)
        if answer is None:
            return dict.fromkeys(METRIC_NAMES, 0.0)
        return {
            "chrf": _sentence_chrf(answer.translation, example.references or (_reference(example),)),
            "intent": 1.0 if answer.intent == example.target["intent"] else 0.0,
        }

    def parse_error(self, example: Example, output: str) -> str | None:
        """Why no translation could be read from ``output``, or ``None`` (a missing intent only scores 0)."""
        return _parse_error(output)

    def corpus_scores(self, scored: Sequence[tuple[Example, str]]) -> dict[str, float]:
        """Corpus chrF++ and BLEU (sacrebleu defaults, 13a tokenizer, first reference) and intent accuracy, in 0..1.

        An unparsable output counts as an empty translation and a wrong intent; typographic apostrophes count as
        ASCII ones on both sides.
        """
        return _corpus(scored)

    def corpus_scores_by_pair(self, scored: Sequence[tuple[Example, str]]) -> dict[str, dict[str, float]]:
        """The corpus scores of each direction; see :func:`corpus_scores_by_pair`."""
        return corpus_scores_by_pair(scored)


def load_task() -> TriageTask:
    """The task over the shipped data file ``data/triage.jsonl``.

    Raises:
        UserError: the file is missing or malformed (the message names the line and field).
    """
    return TriageTask(load_examples(data_path(DATA_FILE)))
