"""Document verification: is this passport, ID card or visa valid on the inspection date, and if not, why?

Each example is what a document reader sees: the printed (visual-zone) fields and the machine-readable zone
(ICAO 9303) of a TD3 passport, TD1 identity card or MRV-A/MRV-B visa, with an inspection date. The model answers
``VALID`` or ``INVALID: <defect>``; the decision and the named defect are scored apart, and accepting an
invalid document (the costly error) is counted on its own::

    slm-eval benchmark --model smollm2-135m-instruct --use-cases document-verification --limit 20
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from slm_eval.errors import UserError
from slm_eval.tasks.base import Example
from slm_eval.tasks.border.data_files import data_path, load_examples
from slm_eval.tasks.border.use_case import UseCase

TASK_NAME = "document-verification"
DATA_FILE = "document_verification.jsonl"
DEFECTS = ("check_digit", "expired", "name_mismatch", "date_mismatch", "unknown_country", "line_length")
DOCUMENT_TYPES = ("TD3", "TD1", "MRVA", "MRVB")

PROMPT_PREFIX = """You check travel documents at a border. You get the printed fields of a passport, ID card or \
visa and the lines of its machine-readable zone (MRZ). Decide if the document is valid on the inspection date.
It is INVALID if it has one of these defects:
- check_digit: an MRZ check digit is wrong (digits weighted 7,3,1 repeating; A=10 ... Z=35, < = 0; sum mod 10)
- expired: the date of expiry is before the inspection date
- name_mismatch: the printed name differs from the name in the MRZ
- date_mismatch: the printed date of birth or expiry differs from the MRZ
- unknown_country: a country code is not a real ISO 3166 or ICAO code (Germany is D)
- line_length: an MRZ line is too short or too long (passport and visa A: 2 lines of 44; ID card: 3 lines of \
30; visa B: 2 lines of 36)
Otherwise it is VALID. Answer with one line only: VALID, or INVALID: followed by the defect's name, \
e.g. "INVALID: expired".

Document:
"""
PROMPT_SUFFIX = "\nAnswer:"

_FENCE = re.compile(r"^\s*```[\w-]*\s*$", re.MULTILINE)
_NEGATIVE = r"invalid|(?:not|isn['\u2019]?t|no\s+longer)\s+(?:a\s+)?valid|non[\s-]?valid"
_DECISION = re.compile(rf"\b(?:(?P<negative>{_NEGATIVE})|(?P<positive>valid))\b", re.IGNORECASE)
_MISMATCH = (
    r"(?:mis\s?match\w*|differ\w*|do(?:es)?\s?n[o'\u2019]?t\s+match|inconsisten\w*|discrepan\w*|wrong|conflict\w*)"
)
_NAMES = r"\b(?:sur)?names?\b"
_DATES = r"\b(?:dates?|birth|dob|expiry)\b"
# The defect names as asked (after lowercasing and turning _ and - into spaces).
_CANONICAL = {defect: re.compile(rf"\b{defect.replace('_', ' ')}\b") for defect in DEFECTS}
# Plain-word synonyms, tried in this order (the first that matches wins).
_SYNONYMS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("check_digit", re.compile(r"check\s?(?:digit|sum|character)|control\s+digit|\bhash\b")),
    ("line_length", re.compile(r"\blength\b|too\s+(?:short|long)|\bcharacters?\b|truncat\w*|malformed\s+line")),
    ("unknown_country", re.compile(r"\b(?:country|nationality|state)\b|\bcountry\s+code|\bunknown\s+code")),
    ("name_mismatch", re.compile(rf"{_NAMES}.*{_MISMATCH}|{_MISMATCH}.*{_NAMES}")),
    ("date_mismatch", re.compile(rf"{_DATES}.*{_MISMATCH}|{_MISMATCH}.*{_DATES}")),
    ("expired", re.compile(r"expired|out\s+of\s+date|expir\w*\s+(?:date\s+)?(?:has\s+)?passed|no\s+longer\s+valid")),
    ("name_mismatch", re.compile(_NAMES)),
    ("date_mismatch", re.compile(r"\b(?:dates?|birth|dob)\b")),
    ("expired", re.compile(r"\bexpir\w*")),
)


@dataclass(frozen=True)
class Verdict:
    """A parsed answer.

    Attributes:
        valid: the model called the document valid.
        defect: the one defect it named (vocabulary name), or ``None`` when it named none or several.
    """

    valid: bool
    defect: str | None


def reference_answer(defect: str | None) -> str:
    """The expected answer line: ``VALID`` or ``INVALID: <defect>``."""
    return "VALID" if defect is None else f"INVALID: {defect}"


def named_defect(text: str) -> str | None:
    """The defect an answer names, in the fixed vocabulary; ``None`` when none or several are named.

    The vocabulary names (``check_digit``, ``check digit``, ``Check-Digit``) count first, and naming two of them is
    a hedge that names none; otherwise plain words are mapped, e.g. ``checksum`` or ``too short``.
    """
    words = _words(text)
    named = _canonical(words)
    if named:
        return named.pop() if len(named) == 1 else None
    return next((defect for defect, pattern in _SYNONYMS if pattern.search(words)), None)


def _words(text: str) -> str:
    """Lowercase text with ``_ - /`` as spaces and negated expiry (``not expired``) dropped."""
    words = re.sub(r"[_\-/]+", " ", text.lower())
    return re.sub(r"\b(?:not|n['\u2019]t|never)\s+(?:yet\s+)?expired\b", " ", words)


def _canonical(words: str) -> set[str]:
    return {defect for defect, pattern in _CANONICAL.items() if pattern.search(words)}


def parse_answer(output: str) -> tuple[Verdict | None, str | None]:
    """The verdict in a model's output, or ``None`` with the reason it cannot be read.

    The first ``VALID`` / ``INVALID`` (or ``not valid``) decides; a line that says ``VALID`` and then ``INVALID``
    hedges and is unreadable. A bare defect name (``expired``) without a decision reads as ``INVALID``.
    """
    text = _FENCE.sub("", output).replace("*", " ").replace("`", " ").strip()
    if not text:
        return None, "empty output"
    match = _DECISION.search(text)
    if match is None:
        named = _canonical(_words(text))
        if len(named) != 1:
            return None, "no VALID or INVALID decision in the output"
        return Verdict(valid=False, defect=named.pop()), None
    if match.group("positive"):
        line_rest = text[match.end() :].split("\n", 1)[0]
        if any(m.group("negative") for m in _DECISION.finditer(line_rest)):
            return None, "the output says both VALID and INVALID"
        return Verdict(valid=True, defect=None), None
    return Verdict(valid=False, defect=named_defect(text)), None


def _target(example: Example) -> tuple[bool, str | None]:
    return bool(example.target["valid"]), example.target.get("defect")


def check_target(example: Example) -> str | None:
    """What is wrong with an example's ``target``, or ``None`` when it is well formed."""
    target: Mapping[str, object] = example.target
    if not isinstance(target.get("valid"), bool):
        return "field 'target.valid': expected true or false"
    defect = target.get("defect")
    if target["valid"] and defect is not None:
        return "field 'target.defect': a valid document has no defect (expected null)"
    if not target["valid"] and defect not in DEFECTS:
        return f"field 'target.defect': expected one of {', '.join(DEFECTS)}"
    if target.get("document_type") not in DOCUMENT_TYPES:
        return f"field 'target.document_type': expected one of {', '.join(DOCUMENT_TYPES)}"
    return None


class DocumentVerificationTask(UseCase):
    """VALID / INVALID decisions on travel documents, with the defect named, scored strictly."""

    task_name = TASK_NAME
    per_example_metrics = ("decision", "defect", "false_accept_free")
    corpus_metrics = ("decision_accuracy", "defect_accuracy", "false_accept_rate", "false_reject_rate")
    answer_tokens = 16  # VALID, or INVALID and a defect name

    def __init__(self, examples: Sequence[Example]) -> None:
        """Makes the task from loaded examples.

        Raises:
            UserError: no examples, or an example whose target is malformed (named by id and field).
        """
        if not examples:
            raise UserError(f"the {TASK_NAME} data holds no examples; reinstall slm-eval or regenerate the data")
        for example in examples:
            problem = check_target(example)
            if problem is not None:
                raise UserError(f"{TASK_NAME}: example '{example.id}': {problem}; fix the data file")
        self._examples = tuple(examples)

    def prompt(self, example: Example) -> str:
        """The shared instruction, then the example's document, then ``Answer:``."""
        return PROMPT_PREFIX + example.question.strip() + PROMPT_SUFFIX

    def score(self, example: Example, output: str) -> dict[str, float]:
        """Per-example scores; an unreadable output scores 0 on all three.

        ``decision`` is 1 when VALID/INVALID is right; ``defect`` is 1 when the decision is right and, for an invalid
        document, the one named defect is the right one; ``false_accept_free`` is 0 only when an invalid document
        was called VALID.
        """
        verdict, _ = parse_answer(output)
        if verdict is None:
            return {"decision": 0.0, "defect": 0.0, "false_accept_free": 0.0}
        valid, defect = _target(example)
        decision = verdict.valid == valid
        return {
            "decision": float(decision),
            "defect": float(decision and (valid or verdict.defect == defect)),
            "false_accept_free": float(valid or not verdict.valid),
        }

    def parse_error(self, example: Example, output: str) -> str | None:
        """Why ``output`` holds no readable VALID/INVALID decision, or ``None`` when it does."""
        return parse_answer(output)[1]

    def corpus_scores(self, scored: Sequence[tuple[Example, str]]) -> dict[str, float]:
        """Accuracies over all pairs, and the error rates over the invalid and the valid documents.

        ``false_accept_rate`` is the share of invalid documents the model explicitly called VALID; ``false_reject_rate``
        the share of valid documents it called INVALID. Unreadable answers count as neither (they lower the
        accuracies). A rate over no documents is 0.0.
        """
        totals = {"decision": 0.0, "defect": 0.0}
        invalid = accepted = valid_count = rejected = 0
        for example, output in scored:
            scores = self.score(example, output)
            totals["decision"] += scores["decision"]
            totals["defect"] += scores["defect"]
            verdict, _ = parse_answer(output)
            valid, _ = _target(example)
            if valid:
                valid_count += 1
                rejected += verdict is not None and not verdict.valid
            else:
                invalid += 1
                accepted += verdict is not None and verdict.valid
        count = len(scored)
        return {
            "decision_accuracy": totals["decision"] / count if count else 0.0,
            "defect_accuracy": totals["defect"] / count if count else 0.0,
            "false_accept_rate": accepted / invalid if invalid else 0.0,
            "false_reject_rate": rejected / valid_count if valid_count else 0.0,
        }


def load_task(path: Path | None = None) -> DocumentVerificationTask:
    """The task over the shipped data file (or ``path``).

    Raises:
        UserError: the file is missing or malformed; the message names the file, the line and the field.
    """
    source = path or data_path(DATA_FILE)
    examples = load_examples(source)
    lines = [n for n, line in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1) if line.strip()]
    for example, line in zip(examples, lines, strict=True):
        problem = check_target(example)
        if problem is not None:
            raise UserError(f"{source}: line {line}: {problem}; fix the file or regenerate it")
    return DocumentVerificationTask(examples)
