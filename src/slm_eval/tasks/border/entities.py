"""Use case 3, entity and threat detection: find the entities in an officer's note and label its threat.

The model answers with one JSON object, ``{"entities": [{"text", "type"}], "threat"}``. Parsing is tolerant
(code fences, prose around the object, single quotes, type and label synonyms, a truncated tail); scoring is
strict: an entity counts only when its whitespace-trimmed text and its type both equal a gold entity's.

Run it through the benchmark::

    python run.py benchmark --model smollm2-135m-instruct --use-cases entity-threat-detection --limit 10
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slm_eval.errors import UserError
from slm_eval.tasks.base import Example
from slm_eval.tasks.border.data_files import data_path, load_examples
from slm_eval.tasks.border.use_case import UseCase

TASK_NAME = "entity-threat-detection"
DATA_FILE = "entities.jsonl"
# Room for about eight entities and the threat label.
MAX_NEW_TOKENS = 160
ENTITY_TYPES = (
    "PERSON",
    "DOCUMENT_NUMBER",
    "NATIONALITY",
    "VEHICLE_PLATE",
    "FLIGHT_OR_VESSEL",
    "CURRENCY_AMOUNT",
    "CONTROLLED_ITEM",
)
THREAT_LABELS = ("none", "contraband", "weapon", "document_fraud", "trafficking_indicator")
METRIC_NAMES = ("combined", "entity_f1", "threat")
CORPUS_METRIC_NAMES = ("entity_precision", "entity_recall", "entity_f1", "threat_accuracy", "threat_macro_f1")

_TYPE_SYNONYMS: dict[str, str] = {
    **{name: name for name in ENTITY_TYPES},
    **dict.fromkeys(("NAME", "PER", "PERSON_NAME", "FULL_NAME", "PEOPLE", "TRAVELLER", "TRAVELER"), "PERSON"),
    **dict.fromkeys(("PASSENGER", "DRIVER", "INDIVIDUAL"), "PERSON"),
    **dict.fromkeys(("DOCUMENT", "DOC", "DOC_NUMBER", "DOCUMENT_NO", "PASSPORT", "PASSPORT_NUMBER"), "DOCUMENT_NUMBER"),
    **dict.fromkeys(("ID_NUMBER", "ID_CARD", "VISA_NUMBER", "PERMIT_NUMBER", "DOCUMENT_ID"), "DOCUMENT_NUMBER"),
    **dict.fromkeys(("NATIONALITIES", "CITIZENSHIP", "COUNTRY", "NORP"), "NATIONALITY"),
    **dict.fromkeys(("PLATE", "LICENSE_PLATE", "LICENCE_PLATE", "NUMBER_PLATE", "REGISTRATION"), "VEHICLE_PLATE"),
    **dict.fromkeys(("VEHICLE", "VEHICLE_REGISTRATION", "REGISTRATION_PLATE", "CAR_PLATE"), "VEHICLE_PLATE"),
    **dict.fromkeys(("FLIGHT", "FLIGHT_NUMBER", "VESSEL", "SHIP", "FERRY", "FLIGHT_VESSEL"), "FLIGHT_OR_VESSEL"),
    **dict.fromkeys(("CURRENCY", "MONEY", "AMOUNT", "CASH", "MONEY_AMOUNT", "CURRENCY_VALUE"), "CURRENCY_AMOUNT"),
    **dict.fromkeys(("ITEM", "CONTROLLED_ITEMS", "CONTROLLED_GOODS", "GOODS", "SUBSTANCE"), "CONTROLLED_ITEM"),
}
_THREAT_SYNONYMS: dict[str, str] = {
    **{label: label for label in THREAT_LABELS},
    **dict.fromkeys(("no", "no_threat", "null", "clear", "benign", "nothing", "n_a", "na"), "none"),
    **dict.fromkeys(("smuggling", "drugs", "contraband_goods", "customs_offence"), "contraband"),
    **dict.fromkeys(("weapons", "firearm", "firearms", "arms"), "weapon"),
    **dict.fromkeys(("fraud", "forgery", "document_forgery", "fraudulent_document", "fake_document"), "document_fraud"),
    **dict.fromkeys(("false_document", "identity_fraud", "impostor", "documents_fraud"), "document_fraud"),
    **dict.fromkeys(("trafficking", "human_trafficking", "trafficking_indicators"), "trafficking_indicator"),
    **dict.fromkeys(("people_smuggling", "human_smuggling", "migrant_smuggling"), "trafficking_indicator"),
}  # fmt: skip
_TEXT_KEYS = ("text", "span", "value", "entity", "name", "mention")
_TYPE_KEYS = ("type", "label", "entity_type", "category", "tag", "kind")
_ENTITIES_KEYS = ("entities", "entity", "ents")
_THREAT_KEYS = ("threat", "threat_label", "threat_type", "threat_level")
_FENCE = re.compile(r"```[A-Za-z]*")
_STRING_CLOSER = re.compile(r"\s*(?:[,:}\]]|$)")
_PYTHON_WORDS = re.compile(r"\b(None|True|False)\b")

PROMPT = """You read short notes written by border and customs officers. List the entities in the note and label its threat.

Entity types:
PERSON: a person's name
DOCUMENT_NUMBER: a passport, ID card, visa or permit number
NATIONALITY: a nationality or country of citizenship, as written
VEHICLE_PLATE: a vehicle registration plate
FLIGHT_OR_VESSEL: a flight number or a ship's name
CURRENCY_AMOUNT: an amount of money with its currency
CONTROLLED_ITEM: restricted or prohibited goods (drugs, weapons, ammunition, tobacco, alcohol, medicines, protected wildlife, counterfeits), without the quantity

Threat, one of: none, contraband, weapon, document_fraud, trafficking_indicator.

Copy each entity's text exactly as written in the note. Reply with one JSON object and nothing else:
{"entities": [{"text": "...", "type": "..."}], "threat": "..."}

Note: Pax Ana Lopes, Portuguese, passport CX4410923, arrived on TP 1350 and declared EUR 2,000.
Answer: {"entities": [{"text": "Ana Lopes", "type": "PERSON"}, {"text": "Portuguese", "type": "NATIONALITY"}, {"text": "CX4410923", "type": "DOCUMENT_NUMBER"}, {"text": "TP 1350", "type": "FLIGHT_OR_VESSEL"}, {"text": "EUR 2,000", "type": "CURRENCY_AMOUNT"}], "threat": "none"}

Note: Van GD-482-KL searched at lane 2; 2 kg of cocaine behind the dashboard. Driver Tomas Berg arrested.
Answer: {"entities": [{"text": "GD-482-KL", "type": "VEHICLE_PLATE"}, {"text": "cocaine", "type": "CONTROLLED_ITEM"}, {"text": "Tomas Berg", "type": "PERSON"}], "threat": "contraband"}

Note: """  # noqa: E501


@dataclass(frozen=True)
class Prediction:
    """What a model's output says: its distinct (text, type) entities and its threat label.

    Attributes:
        entities: each entity's trimmed text and canonical type (an unknown type is kept, upper-cased).
        threat: one of :data:`THREAT_LABELS`, or ``None`` when the output gives none or an unknown one.
    """

    entities: frozenset[tuple[str, str]]
    threat: str | None


class OutputParseError(ValueError):
    """A model output holds no usable answer object; the message says why, in one line."""


def normalize_type(raw: str) -> str:
    """The canonical entity type for a model's spelling, e.g. ``"person"`` or ``"Name"`` -> ``PERSON``.

    An unknown type comes back upper-cased with ``_`` separators, so it never matches a gold type.
    """
    key = re.sub(r"[^A-Z0-9]+", "_", raw.upper()).strip("_")
    return _TYPE_SYNONYMS.get(key, key)


def normalize_threat(raw: object) -> str | None:
    """The threat label for a model's spelling (``"Document fraud"`` -> ``document_fraud``), or ``None``."""
    if raw is None:
        return "none"
    if not isinstance(raw, str):
        return None
    key = re.sub(r"[^a-z0-9]+", "_", raw.lower()).strip("_")
    return _THREAT_SYNONYMS.get(key)


def _single_to_double_quotes(text: str) -> str:
    """Rewrites Python-style literals as JSON: single-quoted strings, ``None``/``True``/``False``.

    A single quote closes a string only when the next non-blank character ends a value (``,:}]``) or the text
    ends, so an apostrophe inside a name (``'O'Brien'``) stays in the string.
    """
    out: list[str] = []
    index = 0
    length = len(text)
    while index < length:
        char = text[index]
        if char == '"':
            end = index + 1
            while end < length and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            out.append(text[index : end + 1])
            index = end + 1
        elif char == "'":
            end = index + 1
            while end < length:
                if text[end] == "\\":
                    end += 2
                    continue
                if text[end] == "'" and _STRING_CLOSER.match(text, end + 1):
                    break
                end += 1
            out.append(json.dumps(text[index + 1 : end].replace("\\'", "'")))
            index = end + 1
        elif (word := _PYTHON_WORDS.match(text, index)) and not text[index - 1 : index].isalnum():
            out.append({"None": "null", "True": "true", "False": "false"}[word.group(1)])
            index = word.end()
        else:
            out.append(char)
            index += 1
    return "".join(out)


def _close_truncated(text: str) -> str | None:
    """The text cut after its last complete ``}`` and closed with the brackets still open, or ``None``."""
    stack: list[str] = []
    in_string = False
    escaped = False
    cut: tuple[int, list[str]] | None = None
    for index, char in enumerate(text):
        if not stack and char != "{":
            continue
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append("}" if char == "{" else "]")
        elif char in "}]":
            if not stack or stack[-1] != char:
                return None
            stack.pop()
            if not stack:
                cut = None
            elif char == "}":
                cut = (index + 1, list(stack))
    if cut is None:
        return None
    end, still_open = cut
    return text[:end] + "".join(reversed(still_open))


def _key(mapping: Mapping[str, Any], names: Sequence[str]) -> str | None:
    """The first key of ``mapping`` that equals one of ``names`` ignoring case, or ``None``."""
    lowered = {str(key).strip().lower(): key for key in mapping}
    return next((lowered[name] for name in names if name in lowered), None)


def _decode_objects(text: str) -> Iterable[dict[str, Any]]:
    """Every JSON object that starts at a ``{`` of ``text``, in order of position."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            yield value


def _answer_object(output: str) -> dict[str, Any]:
    """The first object with an entities or threat key: strict JSON, then single quotes, then a closed tail."""
    text = _FENCE.sub(" ", output)
    if not text.strip():
        raise OutputParseError("empty output")
    if "{" not in text:
        raise OutputParseError("no JSON object in the output")
    found_object = False
    for attempt in _attempts(text):
        for value in _decode_objects(attempt):
            found_object = True
            if _key(value, _ENTITIES_KEYS) is not None or _key(value, _THREAT_KEYS) is not None:
                return value
    if found_object:
        raise OutputParseError("no JSON object with an 'entities' or 'threat' key in the output")
    raise OutputParseError("the output's JSON object is malformed or unterminated")


def _attempts(text: str) -> Iterator[str]:
    """The text as written, then from its first ``{`` with Python quoting rewritten, then that closed off."""
    yield text
    converted = _single_to_double_quotes(text[text.index("{") :])
    yield converted
    closed = _close_truncated(converted)
    if closed is not None:
        yield closed


def _entity_pairs(raw: object) -> set[tuple[str, str]]:
    """The (text, type) pairs of an ``entities`` value: a list of objects or pairs, or a type -> texts map."""
    pairs: set[tuple[str, str]] = set()
    items: list[tuple[object, object]] = []
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, dict):
                text_key, type_key = _key(item, _TEXT_KEYS), _key(item, _TYPE_KEYS)
                items.append((item.get(text_key) if text_key else None, item.get(type_key) if type_key else None))
            elif isinstance(item, list) and len(item) == 2:
                items.append((item[0], item[1]))
    elif isinstance(raw, dict):
        for kind, texts in raw.items():
            for text in texts if isinstance(texts, list) else [texts]:
                items.append((text, kind))
    else:
        raise OutputParseError(f"'entities' must be a list of objects, got {type(raw).__name__}")
    for text, kind in items:
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            text = str(text)
        if isinstance(text, str) and isinstance(kind, str) and text.strip():
            pairs.add((text.strip(), normalize_type(kind)))
    return pairs


@functools.lru_cache(maxsize=4096)
def _parse_cached(output: str) -> Prediction | str:
    try:
        answer = _answer_object(output)
        entities_key, threat_key = _key(answer, _ENTITIES_KEYS), _key(answer, _THREAT_KEYS)
        entities = _entity_pairs(answer[entities_key]) if entities_key is not None else set()
    except OutputParseError as exc:
        return str(exc)
    threat = normalize_threat(answer[threat_key]) if threat_key is not None else None
    return Prediction(entities=frozenset(entities), threat=threat)


def parse_output(output: str) -> Prediction:
    """The entities and threat label in a model's output.

    Raises:
        OutputParseError: the output holds no JSON object with an ``entities`` or ``threat`` key, or its
            ``entities`` value has the wrong shape.
    """
    result = _parse_cached(output)
    if isinstance(result, str):
        raise OutputParseError(result)
    return result


def gold_entities(example: Example) -> frozenset[tuple[str, str]]:
    """The example's distinct (text, type) gold entities."""
    return frozenset((str(e["text"]).strip(), str(e["type"])) for e in example.target["entities"])


def _f1(true_positives: int, predicted: int, gold: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from counts; an empty side with an empty other side scores 1.0."""
    precision = true_positives / predicted if predicted else float(gold == 0)
    recall = true_positives / gold if gold else float(predicted == 0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _predictions(scored: Sequence[tuple[Example, str]]) -> list[tuple[Example, Prediction | None]]:
    """Each pair with its parsed prediction, ``None`` where the output could not be parsed."""
    result: list[tuple[Example, Prediction | None]] = []
    for example, output in scored:
        parsed = _parse_cached(output)
        result.append((example, None if isinstance(parsed, str) else parsed))
    return result


def per_type_scores(scored: Sequence[tuple[Example, str]]) -> dict[str, dict[str, float]]:
    """Micro precision, recall, F1 and gold ``support`` for each entity type, for reports.

    Args:
        scored: (example, model output) pairs.

    Returns:
        ``{type: {"precision", "recall", "f1", "support"}}`` for every type in :data:`ENTITY_TYPES`.
    """
    counts = {kind: [0, 0, 0] for kind in ENTITY_TYPES}  # true positives, predicted, gold
    for example, prediction in _predictions(scored):
        gold = gold_entities(example)
        predicted = prediction.entities if prediction is not None else frozenset()
        for text, kind in gold:
            counts[kind][2] += 1
            counts[kind][0] += (text, kind) in predicted
        for _, kind in predicted:
            if kind in counts:
                counts[kind][1] += 1
    scores: dict[str, dict[str, float]] = {}
    for kind, (true_positives, n_predicted, n_gold) in counts.items():
        precision, recall, f1 = _f1(true_positives, n_predicted, n_gold)
        scores[kind] = {"precision": precision, "recall": recall, "f1": f1, "support": float(n_gold)}
    return scores


def _check_target(example: Example, where: str) -> None:
    """Raises a UserError naming the field when an example's target is not valid gold data."""
    target = example.target
    if target.get("threat") not in THREAT_LABELS:
        raise UserError(f"{where}: field 'target.threat': expected one of {', '.join(THREAT_LABELS)}")
    entities = target.get("entities")
    if not isinstance(entities, list):
        raise UserError(f"{where}: field 'target.entities': expected a list of entities")
    for index, entity in enumerate(entities):
        field = f"{where}: field 'target.entities[{index}]"
        if not isinstance(entity, dict) or not isinstance(entity.get("text"), str) or not entity["text"].strip():
            raise UserError(f"{field}': expected an object with a non-empty 'text'")
        if entity.get("type") not in ENTITY_TYPES:
            raise UserError(f"{field}.type': expected one of {', '.join(ENTITY_TYPES)}")
        start = entity.get("start")
        if not isinstance(start, int) or example.question[start : start + len(entity["text"])] != entity["text"]:
            raise UserError(f"{field}.start': the text is not at this offset of the question; regenerate the file")


class EntityThreatTask(UseCase):
    """Entity extraction (exact span and type) and threat labelling of border officers' notes."""

    task_name = TASK_NAME
    per_example_metrics = METRIC_NAMES
    corpus_metrics = CORPUS_METRIC_NAMES
    answer_tokens = MAX_NEW_TOKENS

    def __init__(self, examples: Sequence[Example], source: str = DATA_FILE) -> None:
        """Makes the task from loaded examples, checking each one's gold data.

        Args:
            examples: at least one example, with ``target = {"entities": [...], "threat": ...}``.
            source: where the examples came from, named in error messages.

        Raises:
            UserError: no examples, or an example's target is malformed (the message names the field).
        """
        if not examples:
            raise UserError(f"{source} holds no examples; regenerate it with build_entity_data")
        for number, example in enumerate(examples, start=1):
            _check_target(example, f"{source}: example {number} ('{example.id}')")
        self._examples = tuple(examples)

    def prompt(self, example: Example) -> str:
        """The shared instruction and two worked notes, then this note and ``Answer:``."""
        return f"{PROMPT}{example.question.strip()}\nAnswer:"

    def parse_error(self, example: Example, output: str) -> str | None:
        """Why ``output`` could not be parsed, or ``None`` when it could."""
        result = _parse_cached(output)
        return result if isinstance(result, str) else None

    def score(self, example: Example, output: str) -> dict[str, float]:
        """Entity F1 (exact text and type, duplicates once), threat match, and their mean ``combined``."""
        result = _parse_cached(output)
        if isinstance(result, str):
            return dict.fromkeys(METRIC_NAMES, 0.0)
        gold = gold_entities(example)
        _, _, entity_f1 = _f1(len(gold & result.entities), len(result.entities), len(gold))
        threat = float(result.threat == example.target["threat"])
        return {"combined": (entity_f1 + threat) / 2, "entity_f1": entity_f1, "threat": threat}

    def corpus_scores(self, scored: Sequence[tuple[Example, str]]) -> dict[str, float]:
        """Micro-averaged entity P/R/F1 over all pairs, threat accuracy and macro F1 over the threat labels.

        Unparseable outputs predict no entities and no label. Labels absent from both the gold labels and the
        predictions are left out of the macro F1. An empty ``scored`` gives zeros.
        """
        if not scored:
            return dict.fromkeys(CORPUS_METRIC_NAMES, 0.0)
        true_positives = n_predicted = n_gold = correct = 0
        labels: list[tuple[str, str | None]] = []
        for example, prediction in _predictions(scored):
            gold = gold_entities(example)
            predicted = prediction.entities if prediction is not None else frozenset()
            true_positives += len(gold & predicted)
            n_predicted += len(predicted)
            n_gold += len(gold)
            label = prediction.threat if prediction is not None else None
            labels.append((str(example.target["threat"]), label))
            correct += label == example.target["threat"]
        precision, recall, f1 = _f1(true_positives, n_predicted, n_gold)
        label_f1s = []
        for label in THREAT_LABELS:
            tp = sum(1 for gold_label, predicted_label in labels if gold_label == predicted_label == label)
            fp = sum(1 for gold_label, predicted_label in labels if predicted_label == label != gold_label)
            fn = sum(1 for gold_label, predicted_label in labels if gold_label == label != predicted_label)
            if tp + fp + fn:
                label_f1s.append(2 * tp / (2 * tp + fp + fn))
        return {
            "entity_precision": precision,
            "entity_recall": recall,
            "entity_f1": f1,
            "threat_accuracy": correct / len(labels),
            "threat_macro_f1": sum(label_f1s) / len(label_f1s) if label_f1s else 0.0,
        }


def load_task(path: Path | None = None) -> EntityThreatTask:
    """The task over the shipped ``entities.jsonl`` (or another file of the same format).

    Raises:
        UserError: the file is missing or malformed (the message names the file, the record and the field).
    """
    source = path if path is not None else data_path(DATA_FILE)
    if not source.is_file():
        raise UserError(f"entity data file not found: {source}; reinstall slm-eval or run build_entity_data")
    return EntityThreatTask(load_examples(source), source=str(source))
