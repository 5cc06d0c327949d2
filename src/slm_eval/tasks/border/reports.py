"""Mobile report generation: an officer's terse notes become a structured incident report in JSON.

The model reads notes such as ``0915 Port of Gdynia. drv Jan NOWAK POL pp 123456789, 3 ctn cig undecl, seized,
fined`` and answers with one JSON object in the fixed schema of ``data/report_schema.json`` (draft 2020-12): date,
time, location, persons, documents, items, actions and a one-sentence summary.

Scoring (per example, each in 0..1):

* ``field_f1``, the primary score: F1 over normalised facts. The scalar fields date, time and location are one fact
  each (compared after lower-casing and removing punctuation and extra whitespace; times by their digits); list fields
  are multisets: a person is one fact (name tokens in any order, role, nationality), a document one fact (type and
  number without separators), an action one fact (its label), an item one fact when its description shares enough
  words with a gold item (token F1 >= 0.5, plural ``s`` ignored) plus one fact for its quantity (the same numbers, so
  ``EUR 15,000`` matches ``15000 EUR``). A key outside the schema is one invented fact. Null values make no fact.
  So a report that is valid JSON but invents persons, items or keys loses precision; one that omits them loses recall.
* ``schema_valid``: 1 when the parsed object validates against the JSON Schema, else 0.
* ``rouge_l``: ROUGE-L F-measure (beta = 1) of the summary against the gold summary: the longest common subsequence
  of lower-cased word tokens (runs of letters and digits), ``P = LCS / len(prediction)``, ``R = LCS / len(reference)``,
  ``F = 2PR / (P + R)``; implemented here, without stemming or stop-word removal.

An output with no parseable JSON object scores 0 on everything and :meth:`ReportTask.parse_error` says why. Parsing
is tolerant: code fences, prose around the object, a ``{"report": {...}}`` wrapper, and, as a last resort, trailing
commas before ``}`` or ``]``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match

from slm_eval.errors import UserError
from slm_eval.tasks.base import Example
from slm_eval.tasks.border.data_files import data_path, load_examples
from slm_eval.tasks.border.use_case import UseCase

TASK_NAME = "report-generation"
DATA_FILE = "reports.jsonl"
SCHEMA_FILE = "report_schema.json"
REPORT_KEYS = ("date", "time", "location", "persons", "documents", "items", "actions", "summary")
METRIC_NAMES = ("field_f1", "schema_valid", "rouge_l")
CORPUS_METRIC_NAMES = ("schema_validity_rate", "field_precision", "field_recall", "field_f1", "rouge_l")
# The longest gold report on one line takes 276 SmolLM2 tokens; 320 leaves a margin.
MAX_NEW_TOKENS = 320
ITEM_MATCH_THRESHOLD = 0.5

PROMPT_HEADER = """Turn a border officer's notes into an incident report. Reply with ONLY one JSON object on one line, \
no other text. Keys, all required:
"date": "YYYY-MM-DD" (notes write the day first; resolve "yday" and "after midnight" from the date given)
"time": "HH:MM" or null
"location": the place as written
"persons": [{"name": "First Last", "role": driver|passenger (in a vehicle)|traveller|officer|other (found hidden), \
"nationality": ISO alpha-3 code or null}]
"documents": [{"type": passport|id_card|visa|residence_permit|driving_licence|other, "number": "..."}]
"items": [{"description": "goods in plain words", "quantity": "number and unit" or null}] (goods only)
"actions": [inspected (searched, x-rayed, examined)|seized|fined|detained|released|referred|refused_entry|admitted]
"summary": "one sentence"
Use [] for an empty list. Expand abbreviations. Add nothing the notes do not say.

Notes: 05/11/25 1440 Harwich ferry terminal. trav Ana PEREIRA PRT ppt CB448120, bags x-rayed, 3 kg cheese undecl, \
seized, rel'd.
Report: {"date": "2025-11-05", "time": "14:40", "location": "Harwich ferry terminal", "persons": [{"name": "Ana \
Pereira", "role": "traveller", "nationality": "PRT"}], "documents": [{"type": "passport", "number": "CB448120"}], \
"items": [{"description": "cheese", "quantity": "3 kg"}], "actions": ["inspected", "seized", "released"], "summary": \
"Traveller Ana Pereira did not declare 3 kg of cheese at Harwich ferry terminal; the goods were seized and the \
traveller was released."}

"""

_FENCE = re.compile(r"```[a-zA-Z]*[ \t]*\n?(.*?)(?:```|$)", re.DOTALL)
_WORD = re.compile(r"[^\W_]+")
_NUMBER = re.compile(r"(\d+(?:[.,]\d+)*)(\s*k\b)?", re.IGNORECASE)
_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}
_NULL_WORDS = frozenset({"", "null", "none", "n a", "unknown"})
_STOP_WORDS = frozenset({"a", "an", "the", "of", "and", "in", "with"})


# ---- parsing ------------------------------------------------------------------------------------------------------


def _object_spans(text: str) -> tuple[list[str], bool]:
    """Balanced top-level ``{...}`` spans in ``text`` (braces inside strings ignored), and whether one is unclosed."""
    spans: list[str] = []
    depth, start, in_string, escaped = 0, -1, False, False
    for index, char in enumerate(text):
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"' and depth > 0:
            in_string = True
        elif char == "{":
            start = index if depth == 0 else start
            depth += 1
        elif char == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append(text[start : index + 1])
    return spans, depth > 0


def _drop_trailing_commas(text: str) -> str:
    """``text`` without commas that stand (outside strings) right before ``}`` or ``]``."""
    kept: list[str] = []
    in_string, escaped = False, False
    for index, char in enumerate(text):
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char == "," and text[index + 1 :].lstrip()[:1] in ("}", "]"):
            continue
        kept.append(char)
    return "".join(kept)


def parse_report(output: str) -> tuple[dict[str, Any] | None, str | None]:
    """The report object in a model's output, or ``None`` and a one-line reason.

    Tries, in order: the inside of a code fence, then the whole output; in each, every balanced top-level ``{...}``
    span as JSON, then the same span without trailing commas. A lone ``{"report": {...}}`` wrapper is removed.
    """
    text = output.strip()
    if not text:
        return None, "the output is empty; expected one JSON object"
    fence = _FENCE.search(text)
    sources = [fence.group(1), text] if fence else [text]
    first_error: str | None = None
    cut_off = False
    for source in sources:
        spans, unclosed = _object_spans(source)
        cut_off = cut_off or (unclosed and not spans)
        for span in spans:
            for candidate in (span, _drop_trailing_commas(span)):
                try:
                    value = json.loads(candidate)
                except json.JSONDecodeError as exc:
                    first_error = first_error or f"{exc.msg} at line {exc.lineno} column {exc.colno}"
                    continue
                except (ValueError, RecursionError) as exc:  # an over-long number, nesting too deep
                    first_error = first_error or f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
                    continue
                if set(value) == {"report"} and isinstance(value["report"], dict):
                    value = value["report"]
                return value, None
    if first_error is not None:
        return None, f"the JSON object is malformed: {first_error}"
    if cut_off:
        return None, "the JSON object is not closed (the output may have been cut off)"
    return None, "no JSON object found in the output"


# ---- facts --------------------------------------------------------------------------------------------------------


def normalize_text(value: object) -> str:
    """Lower case, accents removed, punctuation turned into spaces, whitespace collapsed."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    decomposed = unicodedata.normalize("NFKD", text.lower())
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(_WORD.findall(plain))


def _is_null(value: object) -> bool:
    return value is None or (isinstance(value, str) and normalize_text(value) in _NULL_WORDS)


def _label(value: object) -> str:
    return "_".join(normalize_text(value).split())


def _time_key(value: object) -> str:
    digits = "".join(ch for ch in str(value) if ch.isdigit())
    return digits.zfill(4) if 3 <= len(digits) <= 4 else normalize_text(value)


def _quantity_key(value: object) -> str | None:
    """The numbers of a quantity, sorted (``"EUR 15,000"`` and ``"15k EUR"`` give ``"15000"``); ``None`` for null."""
    if _is_null(value):
        return None
    text = normalize_text(value) if not isinstance(value, str) else value.lower()
    numbers = [float(m.group(1).replace(",", "")) * (1000 if m.group(2) else 1) for m in _NUMBER.finditer(text)]
    numbers += [float(_NUMBER_WORDS[word]) for word in normalize_text(value).split() if word in _NUMBER_WORDS]
    return " ".join(f"{n:.12g}" for n in sorted(numbers)) if numbers else normalize_text(value)


def _description_tokens(value: object) -> list[str]:
    words = [w for w in normalize_text(value).split() if w not in _STOP_WORDS]
    return [w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words]


def _entries(value: object) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def _person_key(entry: object) -> tuple[str, ...]:
    if not isinstance(entry, Mapping):
        return ("?", normalize_text(entry))
    nationality = entry.get("nationality")
    code = "" if _is_null(nationality) else normalize_text(nationality)
    return (" ".join(sorted(normalize_text(entry.get("name", "")).split())), _label(entry.get("role", "")), code)


def _document_key(entry: object) -> tuple[str, ...]:
    if not isinstance(entry, Mapping):
        return ("?", normalize_text(entry))
    return (_label(entry.get("type", "")), normalize_text(entry.get("number", "")).replace(" ", ""))


def _scalar_facts(report: Mapping[str, Any]) -> Counter[tuple[str, ...]]:
    facts: Counter[tuple[str, ...]] = Counter()
    for key in ("date", "location"):
        if not _is_null(report.get(key)):
            facts[(key, normalize_text(report[key]))] += 1
    if not _is_null(report.get("time")):
        facts[("time", _time_key(report["time"]))] += 1
    facts.update(("person", *_person_key(entry)) for entry in _entries(report.get("persons")))
    facts.update(("document", *_document_key(entry)) for entry in _entries(report.get("documents")))
    facts.update(("action", _label(action)) for action in _entries(report.get("actions")))
    facts.update(("invented", str(key)) for key in report if key not in REPORT_KEYS)
    return facts


def token_f1(predicted: Sequence[str], gold: Sequence[str]) -> float:
    """Bag-of-tokens F1 of two token lists (0 when either is empty)."""
    common = sum((Counter(predicted) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def _item(entry: object) -> tuple[list[str], str | None]:
    """An item's description tokens and quantity key; an item that is not an object is all description."""
    if not isinstance(entry, Mapping):
        return _description_tokens(entry), None
    return _description_tokens(entry.get("description", "")), _quantity_key(entry.get("quantity"))


def _item_counts(predicted: list[Any], gold: list[Any]) -> tuple[int, int, int]:
    """(matched, predicted, gold) facts of items: one per item, one more per non-null quantity."""
    pred_items = [_item(entry) for entry in predicted]
    gold_items = [_item(entry) for entry in gold]
    pairs = sorted(
        ((token_f1(p[0], g[0]), -gi, -pi) for gi, g in enumerate(gold_items) for pi, p in enumerate(pred_items)),
        reverse=True,
    )
    used_gold: set[int] = set()
    used_pred: set[int] = set()
    matched = 0
    for overlap, neg_gi, neg_pi in pairs:
        gi, pi = -neg_gi, -neg_pi
        if overlap < ITEM_MATCH_THRESHOLD or gi in used_gold or pi in used_pred:
            continue
        used_gold.add(gi)
        used_pred.add(pi)
        quantity = gold_items[gi][1]
        matched += 1 + (quantity is not None and quantity == pred_items[pi][1])
    n_pred = sum(1 + (q is not None) for _, q in pred_items)
    n_gold = sum(1 + (q is not None) for _, q in gold_items)
    return matched, n_pred, n_gold


@dataclass(frozen=True)
class FactCounts:
    """How many normalised facts a report matched, stated and should have stated."""

    matched: int
    predicted: int
    gold: int

    def __add__(self, other: FactCounts) -> FactCounts:
        """The counts of two reports together (for micro averages)."""
        return FactCounts(self.matched + other.matched, self.predicted + other.predicted, self.gold + other.gold)

    @property
    def precision(self) -> float:
        """Matched over predicted facts (0 when nothing was predicted)."""
        return self.matched / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        """Matched over gold facts (1 when there is nothing to find)."""
        return self.matched / self.gold if self.gold else 1.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall (1 when both sides are empty)."""
        if self.predicted == 0 and self.gold == 0:
            return 1.0
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0


def count_facts(predicted: Mapping[str, Any], gold: Mapping[str, Any]) -> FactCounts:
    """Compares a predicted report with the gold one fact by fact (see the module docstring)."""
    pred_facts, gold_facts = _scalar_facts(predicted), _scalar_facts(gold)
    item_matched, item_pred, item_gold = _item_counts(_entries(predicted.get("items")), _entries(gold.get("items")))
    return FactCounts(
        sum((pred_facts & gold_facts).values()) + item_matched,
        sum(pred_facts.values()) + item_pred,
        sum(gold_facts.values()) + item_gold,
    )


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (beta = 1) over lower-cased word tokens; 0 when either side has no words."""
    pred, ref = _WORD.findall(prediction.lower()), _WORD.findall(reference.lower())
    if not pred or not ref:
        return 0.0
    previous = [0] * (len(ref) + 1)
    for token in pred:
        current = [0]
        for j, ref_token in enumerate(ref, start=1):
            current.append(previous[j - 1] + 1 if token == ref_token else max(previous[j], current[j - 1]))
        previous = current
    lcs = previous[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


# ---- the task -----------------------------------------------------------------------------------------------------


def load_schema(path: Path | None = None) -> dict[str, Any]:
    """The report's JSON Schema (the shipped one by default), checked against draft 2020-12.

    Raises:
        UserError: the file is missing, not JSON, or not a valid schema.
    """
    path = path or data_path(SCHEMA_FILE)
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(schema)
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(
            f"cannot read the report schema {path}: {exc}; reinstall slm-eval with its package data"
        ) from exc
    except SchemaError as exc:
        raise UserError(f"{path} is not a valid JSON Schema: {exc.message}; restore the shipped file") from exc
    if not isinstance(schema, dict):
        raise UserError(f"{path} is not a JSON Schema object; restore the shipped file")
    return schema


class ReportTask(UseCase):
    """Notes to a JSON incident report, scored by field F1, schema validity and ROUGE-L of the summary."""

    task_name = TASK_NAME
    per_example_metrics = METRIC_NAMES
    corpus_metrics = CORPUS_METRIC_NAMES
    answer_tokens = MAX_NEW_TOKENS

    def __init__(self, examples: Sequence[Example], schema: Mapping[str, Any], source: str = DATA_FILE) -> None:
        """Makes the task and checks every gold report against the schema.

        Raises:
            UserError: no examples, or an example whose ``target.report`` is missing or breaks the schema.
        """
        fix = "regenerate it with python -m slm_eval.tasks.border.build_report_data"
        if not examples:
            raise UserError(f"{source} holds no examples; {fix}")
        self._validator = Draft202012Validator(schema)
        for example in examples:
            gold = example.target.get("report")
            if not isinstance(gold, dict):
                raise UserError(
                    f"{source}: example '{example.id}': field 'target.report': missing or not an object; {fix}"
                )
            error = best_match(self._validator.iter_errors(gold))
            if error is not None:
                where = f"target.report{error.json_path[1:]}"
                raise UserError(f"{source}: example '{example.id}': field '{where}': {error.message}; {fix}")
        self._examples = tuple(examples)

    def prompt(self, example: Example) -> str:
        """The fixed instruction and one worked example, then the notes and ``Report:``."""
        return f"{PROMPT_HEADER}Notes: {example.question.strip()}\nReport:"

    def is_schema_valid(self, report: object) -> bool:
        """Whether ``report`` validates against the report schema."""
        return self._validator.is_valid(report)

    def parse_error(self, example: Example, output: str) -> str | None:
        """Why ``output`` holds no parseable report, or ``None``."""
        return parse_report(output)[1]

    def _evaluate(self, example: Example, output: str) -> tuple[dict[str, float], FactCounts]:
        gold = example.target["report"]
        report, _ = parse_report(output)
        if report is None:
            return dict.fromkeys(METRIC_NAMES, 0.0), FactCounts(0, 0, count_facts({}, gold).gold)
        counts = count_facts(report, gold)
        summary = report.get("summary")
        references = example.references or (gold["summary"],)
        summary_score = max(rouge_l(summary, ref) for ref in references) if isinstance(summary, str) else 0.0
        scores = {
            "field_f1": counts.f1,
            "schema_valid": 1.0 if self.is_schema_valid(report) else 0.0,
            "rouge_l": summary_score,
        }
        return scores, counts

    def score(self, example: Example, output: str) -> dict[str, float]:
        """Field F1, schema validity and summary ROUGE-L of ``output``; all 0 when it holds no JSON object."""
        return self._evaluate(example, output)[0]

    def corpus_scores(self, scored: Sequence[tuple[Example, str]]) -> dict[str, float]:
        """Schema validity rate, micro-averaged fact precision/recall/F1 and mean ROUGE-L over every pair."""
        if not scored:
            return dict.fromkeys(CORPUS_METRIC_NAMES, 0.0)
        total = FactCounts(0, 0, 0)
        valid = summary = 0.0
        for example, output in scored:
            scores, counts = self._evaluate(example, output)
            total += counts
            valid += scores["schema_valid"]
            summary += scores["rouge_l"]
        return {
            "schema_validity_rate": valid / len(scored),
            "field_precision": total.precision,
            "field_recall": total.recall,
            "field_f1": total.f1,
            "rouge_l": summary / len(scored),
        }


def load_task(path: Path | None = None) -> ReportTask:
    """The report-generation task on the shipped data (or a JSONL file of the same shape)."""
    path = path or data_path(DATA_FILE)
    return ReportTask(load_examples(path), load_schema(), source=str(path))
