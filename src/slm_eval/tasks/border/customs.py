"""Customs declaration help: a traveller's question answered in 2-3 sentences, scored on key facts.

Four categories of question: duty-free ``allowance`` (EU, Council Directive 2007/74/EC), ``cash`` declaration
thresholds (EU Regulation 2018/1672; US FinCEN Form 105), ``prohibited_restricted`` goods, and
``hs_classification`` (which Harmonized System heading or subheading classifies a good). Each example's
``target`` holds::

    {"category": "cash",
     "key_facts": [{"id": "threshold", "patterns": ["(?<![\\d.])10000(?![\\d])", "ten thousand"]}],
     "contradictions": [{"id": "wrong_threshold", "patterns": ["(?<![\\d.])5000\\s*(?:eur|euros?)\\b"]}],
     "hs_code": null}

Patterns are regular expressions searched case-insensitively in the normalised answer (see :func:`normalise`):
lower case, one space between words, thousands separators removed (``10,000``, ``10.000``, ``10 000`` and
``10k`` all read ``10000``), ``€`` read ``eur`` and ``$`` read ``usd``, a leading ``Answer:`` dropped (so ``^``
anchors at the answer's first word), and anything from a new ``Question:`` line on (a model continuing the
few-shot pattern) ignored.

Per-example scores: ``key_fact_recall`` (share of key facts stated), ``no_contradiction`` (0 when any
contradiction pattern matches), ``hs_code`` (1 when the predicted code starts with the gold code, compared at
the gold's 4 or 6 digits, dots and spaces ignored; not applicable, and so 1, for the other categories) and the
primary ``score``: ``key_fact_recall x no_contradiction``, or for classification questions
``mean(key_fact_recall, hs_code) x no_contradiction``. An empty output, or a classification answer that names
no HS code, cannot be parsed and scores 0 on everything.

Example::

    slm-eval benchmark --model smollm2-135m-instruct --use-cases customs-help --limit 10
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from slm_eval.errors import UserError
from slm_eval.tasks.base import Example
from slm_eval.tasks.border.data_files import data_path, load_examples
from slm_eval.tasks.border.use_case import UseCase

TASK_NAME = "customs-help"
DATA_FILE = "customs.jsonl"
CATEGORIES = ("allowance", "cash", "prohibited_restricted", "hs_classification")
CLASSIFICATION = "hs_classification"

PROMPT_PREFIX = (
    "You answer travellers' customs questions. Unless the question names another country, answer for the "
    "European Union: a traveller entering the EU from, or leaving it for, a country outside the EU. Answer in "
    "2-3 short sentences and state the exact figures (amounts, quantities, ages, documents). When the question "
    "asks for an HS code, end with one line 'HS: <code>' giving the 4-digit heading or the 6-digit subheading "
    "asked for.\n\n"
    "Question: How much fuel can I bring into the EU in my car without paying duty?\n"
    "Answer: Besides the fuel in your vehicle's standard tank, you may bring up to 10 litres of fuel in a "
    "portable container duty-free.\n\n"
    "Question: Which HS heading (4 digits) covers a folding umbrella?\n"
    "Answer: Umbrellas are classified under HS heading 66.01, 'Umbrellas; sun umbrellas'.\n"
    "HS: 6601\n\n"
)
PROMPT_TEMPLATE = PROMPT_PREFIX + "Question: {question}\nAnswer:"

_MARKUP = re.compile(r"[*`#]+")
_THOUSANDS = re.compile(r"(?<=\d)[,. '\u00a0\u202f](?=\d{3}(?!\d))")
_KILO = re.compile(r"(?<![\w.])(\d+)\s?k(?![a-z])")
_LEADING = re.compile(r"^[\s\"'>:\-]*(?:(?:answer|a)\s*:\s*)?[\s\"'>:\-]*")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-"})
_ECHO = re.compile(r"\s*(?:question|q)\s*:[^\n]*\n\s*(?:answer|a)\s*:", re.IGNORECASE)
_NEXT_QUESTION = re.compile(r"\n\s*(?:question|q)\s*:", re.IGNORECASE)
_CODE = r"(\d{2}(?:[ .]?\d)*)"
_HS_PATTERNS = (
    re.compile(r"^[\s>*_-]*HS\s*(?:code)?\s*[:=]\s*" + _CODE, re.IGNORECASE | re.MULTILINE),
    re.compile(r"\bH\.?S\b\.?[^\d\n]{0,40}?" + _CODE, re.IGNORECASE),
    re.compile(r"\b(?:sub)?heading\s*(?:no\.?\s*)?" + _CODE, re.IGNORECASE),
)


def answer_text(output: str) -> str:
    """The answer in a model's output, without an echoed question or a new question of the model's own.

    The text is NFKC-normalised, a leading ``Question: ... Answer:`` echo is skipped, and the rest is cut where
    the model starts a new ``Question:`` (continuing the few-shot pattern).
    """
    text = unicodedata.normalize("NFKC", output)
    echo = _ECHO.match(text)
    return _NEXT_QUESTION.split(text[echo.end() :] if echo else text, maxsplit=1)[0]


def normalise(text: str) -> str:
    """The answer text that key-fact and contradiction patterns are searched in.

    Example: ``'**Answer:** Yes, €10.000 or more'`` -> ``'yes, eur 10000 or more'``.
    """
    text = answer_text(text).translate(_QUOTES)
    text = _MARKUP.sub("", text).lower()
    text = text.replace("€", " eur ").replace("us$", " usd ").replace("$", " usd ")
    text = " ".join(text.split())
    previous = None
    while previous != text:
        previous, text = text, _THOUSANDS.sub("", text)
    text = _KILO.sub(r"\g<1>000", text)
    return " ".join(_LEADING.sub("", text, count=1).split())


def predicted_hs_code(output: str) -> str | None:
    """The digits of the HS code an answer gives (``HS: 0901.21`` -> ``090121``), or ``None`` if it gives none.

    A line ``HS: <code>`` wins; otherwise the first ``HS ... <code>`` phrase, then ``heading <code>``.
    """
    text = _MARKUP.sub("", answer_text(output))
    for pattern in _HS_PATTERNS:
        match = pattern.search(text)
        if match:
            return re.sub(r"\D", "", match.group(1))[:10]
    return None


def hs_code_matches(predicted: str | None, gold: str) -> bool:
    """Whether a predicted code equals the gold one at the gold's level of digits (4 or 6)."""
    gold_digits = re.sub(r"\D", "", gold)
    return predicted is not None and len(predicted) >= len(gold_digits) and predicted.startswith(gold_digits)


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def _groups(target: Mapping[str, Any], key: str) -> list[list[str]]:
    return [list(group["patterns"]) for group in target.get(key, [])]


def _any_match(patterns: Sequence[str], text: str) -> bool:
    return any(_compiled(pattern).search(text) for pattern in patterns)


def _check_target(example: Example, source: str) -> None:
    """Raise a one-line UserError naming the example and field when its target is malformed."""
    where = f"{source}: example '{example.id}': field 'target"
    target = example.target
    if target.get("category") not in CATEGORIES:
        raise UserError(f"{where}.category': expected one of {', '.join(CATEGORIES)}; fix the data file")
    for key in ("key_facts", "contradictions"):
        groups = target.get(key)
        if not isinstance(groups, list) or (key == "key_facts" and not groups):
            raise UserError(f"{where}.{key}': expected a list of {{id, patterns}} objects; fix the data file")
        for index, group in enumerate(groups):
            patterns = group.get("patterns") if isinstance(group, dict) else None
            if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) for p in patterns):
                raise UserError(f"{where}.{key}[{index}].patterns': expected a non-empty list of regular expressions")
            for pattern in patterns:
                try:
                    _compiled(pattern)
                except re.error as exc:
                    raise UserError(f"{where}.{key}[{index}].patterns': invalid regex {pattern!r} ({exc})") from None
    code = target.get("hs_code")
    is_classification = target["category"] == CLASSIFICATION
    if is_classification and not (isinstance(code, str) and re.fullmatch(r"\d{4}|\d{6}", code)):
        raise UserError(f"{where}.hs_code': a classification question needs a 4- or 6-digit code string")
    if not is_classification and code is not None:
        raise UserError(f"{where}.hs_code': expected null outside the hs_classification category")


class CustomsHelpTask(UseCase):
    """Traveller customs questions scored on key facts, contradictions and HS codes."""

    task_name = TASK_NAME
    per_example_metrics = ("score", "key_fact_recall", "no_contradiction", "hs_code")
    corpus_metrics = ("key_fact_recall", "contradiction_rate", "hs_code_accuracy")
    answer_tokens = 96  # two or three sentences and an HS line

    def __init__(self, examples: Sequence[Example], source: str = DATA_FILE) -> None:
        """Makes the task from loaded examples, checking each example's target.

        Args:
            examples: at least one example whose ``target`` follows the module docstring's shape.
            source: the data file's name, for error messages.

        Raises:
            UserError: no examples, or a malformed target (named by example id and field).
        """
        if not examples:
            raise UserError(
                f"{source} holds no examples; regenerate it with python -m {__package__}.build_customs_data"
            )
        for example in examples:
            _check_target(example, source)
        self._examples = tuple(examples)

    def prompt(self, example: Example) -> str:
        """The shared instruction and two shots, then the traveller's question."""
        return PROMPT_TEMPLATE.format(question=example.question.strip())

    def parse_error(self, example: Example, output: str) -> str | None:
        """``empty output``, a classification answer without an HS code, or ``None``."""
        if not normalise(output):
            return "empty output"
        if example.target.get("category") == CLASSIFICATION and predicted_hs_code(output) is None:
            return "no HS code found; expected a line 'HS: <4- or 6-digit code>'"
        return None

    def score(self, example: Example, output: str) -> dict[str, float]:
        """Key-fact recall, no-contradiction, HS code match and the primary score; zeros when unparsable."""
        if self.parse_error(example, output) is not None:
            return dict.fromkeys(self.metric_names, 0.0)
        text = normalise(output)
        facts = _groups(example.target, "key_facts")
        recall = sum(_any_match(patterns, text) for patterns in facts) / len(facts)
        contradicted = any(_any_match(patterns, text) for patterns in _groups(example.target, "contradictions"))
        no_contradiction = 0.0 if contradicted else 1.0
        gold = example.target.get("hs_code")
        if isinstance(gold, str):
            hs_code = 1.0 if hs_code_matches(predicted_hs_code(output), gold) else 0.0
            primary = (recall + hs_code) / 2 * no_contradiction
        else:
            hs_code = 1.0
            primary = recall * no_contradiction
        return {"score": primary, "key_fact_recall": recall, "no_contradiction": no_contradiction, "hs_code": hs_code}

    def corpus_scores(self, scored: Sequence[tuple[Example, str]]) -> dict[str, float]:
        """Scores over the whole set.

        ``key_fact_recall`` is micro-averaged (facts stated over all facts; an unparsable answer states none),
        ``contradiction_rate`` is the share of answers that match any contradiction pattern, and
        ``hs_code_accuracy`` is over classification questions only; it is left out when the set holds none.
        """
        if not scored:
            return {}
        stated = total = contradicted = classified = correct = 0
        for example, output in scored:
            parsed = self.parse_error(example, output) is None
            text = normalise(output)
            facts = _groups(example.target, "key_facts")
            total += len(facts)
            stated += sum(_any_match(patterns, text) for patterns in facts) if parsed else 0
            contradicted += any(_any_match(patterns, text) for patterns in _groups(example.target, "contradictions"))
            gold = example.target.get("hs_code")
            if isinstance(gold, str):
                classified += 1
                correct += hs_code_matches(predicted_hs_code(output), gold)
        scores = {"key_fact_recall": stated / total if total else 0.0, "contradiction_rate": contradicted / len(scored)}
        if classified:
            scores["hs_code_accuracy"] = correct / classified
        return scores


def load_task() -> CustomsHelpTask:
    """The customs-help task on the shipped data file.

    Raises:
        UserError: the data file is missing or malformed.
    """
    return CustomsHelpTask(load_examples(data_path(DATA_FILE)), source=DATA_FILE)
