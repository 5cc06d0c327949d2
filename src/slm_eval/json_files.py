"""Reading JSON and JSON Lines files, with one-line errors that name the file, the line and what it is."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from slm_eval.errors import UserError


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in ``path``.

    Args:
        path: the file.
        what: what the file is, for messages, e.g. ``"config file"``.

    Raises:
        UserError: the file cannot be read, is not JSON, or does not hold an object.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{what} {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from exc
    if not isinstance(data, dict):
        raise UserError(f"{what} {path} must hold a JSON object at the top level")
    return data


def line_place(path: Path, number: int) -> str:
    """Where a line stands, for messages: ``"<path>: line <number>"``."""
    return f"{path}: line {number}"


def read_json_lines(path: Path, *, expected: str = "a JSON object") -> Iterator[tuple[int, dict[str, Any]]]:
    """Each object of a JSON Lines file with its line number (from 1); blank lines are skipped.

    Args:
        path: the file (UTF-8, a byte-order mark allowed).
        expected: what each line should hold, for messages, e.g. ``"a JSON object with {prompt, response}"``.

    Raises:
        UserError: the file cannot be read or decoded, a line is not JSON, or a line is not an object; the
            message names the file and the line.
    """
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}; pass a UTF-8 JSONL file") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = line_place(path, number)
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); fix the line") from None
        if not isinstance(record, dict):
            raise UserError(f"{where}: expected {expected}")
        yield number, record
