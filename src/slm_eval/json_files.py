"""Reading a JSON object from a file, with one-line errors that name the file and what it is."""

from __future__ import annotations

import json
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
