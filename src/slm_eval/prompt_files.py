"""Reading prompts from a text file (one per line) or a JSONL file (one per record)."""

from __future__ import annotations

import json
from pathlib import Path

from slm_eval.errors import UserError

PROMPT_KEYS = ("prompt", "input", "question", "text")


def read_prompts(path: Path) -> list[str]:
    """Prompts from ``path``.

    A ``.jsonl`` file holds one JSON string, or one object with a ``prompt``, ``input``, ``question`` or
    ``text`` key, per line. Any other file holds one prompt per line; blank lines and lines starting with
    ``#`` are skipped.

    Raises:
        UserError: the file cannot be read, a line is malformed (named by number), or it holds no prompt.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read prompts from {path}: {exc}") from exc
    if path.suffix.lower() == ".jsonl":
        prompts = [_prompt_from_json(line, path, number) for number, line in _numbered(text)]
    else:
        prompts = [line.strip() for _, line in _numbered(text) if not line.lstrip().startswith("#")]
    if not prompts:
        raise UserError(f"{path} holds no prompts")
    return prompts


def _numbered(text: str) -> list[tuple[int, str]]:
    return [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _prompt_from_json(line: str, path: Path, number: int) -> str:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} line {number} is not valid JSON: {exc.msg}") from exc
    if isinstance(record, dict):
        for key in PROMPT_KEYS:
            if isinstance(record.get(key), str):
                record = record[key]
                break
    if not isinstance(record, str):
        raise UserError(f"{path} line {number} needs a string or an object with one of: {', '.join(PROMPT_KEYS)}")
    if not record.strip():
        raise UserError(f"{path} line {number} is an empty prompt")
    return record
