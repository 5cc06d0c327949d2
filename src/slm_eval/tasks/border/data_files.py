"""The use cases' data files: JSON Lines of examples, shipped as package data, read with line-level errors.

Each line is one object: ``id`` (string), ``question`` (string), and optionally ``references`` (list of
strings), ``context`` (string), ``metadata`` (object of strings) and ``target`` (object). A file that breaks
this names the file, the line and the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

from slm_eval.errors import UserError
from slm_eval.json_files import line_place, read_json_lines
from slm_eval.tasks.base import Example


def data_path(file_name: str) -> Path:
    """The path of a data file shipped in ``slm_eval/tasks/border/data``."""
    return Path(str(files("slm_eval.tasks.border").joinpath("data").joinpath(file_name)))


def load_examples(path: Path) -> list[Example]:
    """Every example in a JSONL file.

    Raises:
        UserError: unreadable file, invalid JSON, a missing or mistyped field, a duplicate id, no examples.
    """
    examples: list[Example] = []
    seen: set[str] = set()
    for number, record in read_json_lines(path):
        where = line_place(path, number)
        example = example_from_record(record, where)
        if example.id in seen:
            raise UserError(f"{where}: field 'id': duplicate id '{example.id}'")
        seen.add(example.id)
        examples.append(example)
    if not examples:
        raise UserError(f"{path} holds no examples")
    return examples


def example_from_record(record: Mapping[str, Any], where: str) -> Example:
    """One example from a decoded JSON object; ``where`` prefixes error messages.

    Raises:
        UserError: a missing or mistyped field, named.
    """
    for key in ("id", "question"):
        if not isinstance(record.get(key), str) or not record[key]:
            raise UserError(f"{where}: field '{key}': expected a non-empty string")
    references = record.get("references", [])
    if not isinstance(references, list) or not all(isinstance(r, str) for r in references):
        raise UserError(f"{where}: field 'references': expected a list of strings")
    context = record.get("context")
    if context is not None and not isinstance(context, str):
        raise UserError(f"{where}: field 'context': expected a string")
    metadata = record.get("metadata", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise UserError(f"{where}: field 'metadata': expected an object of strings")
    target = record.get("target", {})
    if not isinstance(target, dict):
        raise UserError(f"{where}: field 'target': expected an object")
    return Example(
        id=record["id"],
        question=record["question"],
        references=tuple(references),
        context=context,
        metadata=dict(metadata),
        target=target,
    )


def example_to_record(example: Example) -> dict[str, Any]:
    """The JSON object of an example (what :func:`example_from_record` reads)."""
    record: dict[str, Any] = {"id": example.id, "question": example.question, "references": list(example.references)}
    if example.context is not None:
        record["context"] = example.context
    if example.metadata:
        record["metadata"] = dict(example.metadata)
    if example.target:
        record["target"] = dict(example.target)
    return record


def write_examples(path: Path, examples: Iterable[Example]) -> int:
    """Write examples as JSONL (one sorted-key object per line); returns how many were written."""
    lines = [json.dumps(example_to_record(e), ensure_ascii=False, sort_keys=True) for e in examples]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)
