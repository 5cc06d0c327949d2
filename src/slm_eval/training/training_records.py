"""Training records in the prepared dataset's shapes, built from examples or read from a user's JSONL file.

Shapes, one JSON object a line (see the training contract)::

    sft       {"id", "prompt", "response", "source"}
    qa        {"id", "question", "context", "answers": {"text": [...], "answer_start": [...]}}
    ner       {"id", "text", "entities": [{"start", "end", "type"}]}
    classify  {"id", "text", "label"}

A user's file in the sft, ner or classify shape may leave out ``id`` (the line number names the record) and
``source`` (the file's stem); every other field is checked, and a bad one is named with the file and the line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from slm_eval.errors import UserError
from slm_eval.json_files import line_place, read_json_lines
from slm_eval.tasks.base import Example

Record = dict[str, Any]

# The fields each record-shaped file must have, beyond an optional id.
RECORD_FIELDS: dict[str, tuple[str, ...]] = {
    "sft": ("prompt", "response"),
    "ner": ("text", "entities"),
    "classify": ("text", "label"),
}


def sft_record(record_id: str, prompt: str, response: str, source: str) -> Record:
    """An instruction/response pair."""
    return {"id": record_id, "prompt": prompt, "response": response, "source": source}


def qa_record(example: Example) -> Record | None:
    """An extractive QA record; answers are located at their first occurrence in the context.

    Returns:
        ``None`` when the example has no context or none of its answers occurs in it (nothing to point at).
    """
    context = example.context
    if context is None:
        return None
    found = [(text, context.find(text)) for text in example.references]
    found = [(text, start) for text, start in found if start >= 0]
    if not found:
        return None
    return {
        "id": example.id,
        "question": example.question,
        "context": context,
        "answers": {"text": [text for text, _ in found], "answer_start": [start for _, start in found]},
    }


def ner_record(example: Example) -> Record:
    """An entity-tagging record from an entity-threat-detection example (character offsets into the note)."""
    entities = sorted(
        (
            {"start": int(entity["start"]), "end": int(entity["start"]) + len(entity["text"]), "type": entity["type"]}
            for entity in example.target["entities"]
        ),
        key=lambda entity: (entity["start"], entity["end"]),
    )
    return {"id": example.id, "text": example.question, "entities": entities}


def classify_record(example: Example) -> Record:
    """A threat-classification record from an entity-threat-detection example."""
    return {"id": example.id, "text": example.question, "label": example.target["threat"]}


def group_text(record: Mapping[str, Any]) -> str:
    """The text that keeps copies of one input on the same side of a split: the prompt, else the text."""
    return str(record.get("prompt", record.get("text", "")))


def load_record_file(path: Path, task: str) -> list[Record]:
    """Reads a JSONL file of records already in ``task``'s shape (sft, ner or classify).

    Raises:
        UserError: unreadable file, invalid JSON, a missing or mistyped field, bad entity offsets, a duplicate
            id, or no records; the message names the file, the line and the field.
    """
    records: list[Record] = []
    first_line: dict[str, int] = {}
    for number, raw in read_json_lines(path, expected=f"a JSON object with {_fields(task)}"):
        where = line_place(path, number)
        record = _checked(raw, task, where, default_id=f"{path.stem}-{number}", default_source=path.stem)
        if record["id"] in first_line:
            raise UserError(
                f"{where}: field 'id': duplicate id '{record['id']}' (first on line {first_line[record['id']]})"
            )
        first_line[record["id"]] = number
        records.append(record)
    if not records:
        raise UserError(f"{path} holds no records; add one {_fields(task)} object a line")
    return records


def _fields(task: str) -> str:
    return "{" + ", ".join(RECORD_FIELDS[task]) + "}"


def _string(raw: Mapping[str, Any], key: str, where: str) -> str:
    if key not in raw:
        raise UserError(f"{where}: field '{key}': missing; every record needs it")
    value = raw[key]
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: field '{key}': expected a non-empty string, got {json.dumps(value)[:40]}")
    return value


def _record_id(raw: Mapping[str, Any], where: str, default: str) -> str:
    value = raw.get("id", default)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: field 'id': expected a non-empty string or an integer")
    return value


def _checked(raw: Mapping[str, Any], task: str, where: str, default_id: str, default_source: str) -> Record:
    record_id = _record_id(raw, where, default_id)
    if task == "sft":
        source = raw.get("source", default_source)
        if not isinstance(source, str):
            raise UserError(f"{where}: field 'source': expected a string")
        return sft_record(record_id, _string(raw, "prompt", where), _string(raw, "response", where), source)
    text = _string(raw, "text", where)
    if task == "classify":
        return {"id": record_id, "text": text, "label": _string(raw, "label", where).strip()}
    if "entities" not in raw:
        raise UserError(f"{where}: field 'entities': missing; give a list of {{start, end, type}} objects")
    if not isinstance(raw["entities"], list):
        raise UserError(f"{where}: field 'entities': expected a list of {{start, end, type}} objects")
    entities = [_entity(item, text, f"{where}: field 'entities[{index}]") for index, item in enumerate(raw["entities"])]
    entities.sort(key=lambda entity: (entity["start"], entity["end"]))
    return {"id": record_id, "text": text, "entities": entities}


def _entity(item: object, text: str, field: str) -> Record:
    if not isinstance(item, dict):
        raise UserError(f"{field}': expected an object {{start, end, type}}")
    for key in ("start", "end"):
        value = item.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{field}.{key}': expected an integer character offset")
    start, end = int(item["start"]), int(item["end"])
    if not 0 <= start < end <= len(text):
        raise UserError(f"{field}': offsets {start}..{end} are outside the text (length {len(text)}) or empty")
    kind = item.get("type")
    if not isinstance(kind, str) or not kind.strip():
        raise UserError(f"{field}.type': expected a non-empty string")
    span = item.get("text")
    if span is not None and span != text[start:end]:
        raise UserError(f"{field}.text': {span!r} is not the text at {start}..{end} ({text[start:end]!r})")
    return {"start": start, "end": end, "type": kind.strip()}
