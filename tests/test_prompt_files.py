"""Reading prompts from text and JSONL files."""

from __future__ import annotations

from pathlib import Path

import pytest

from slm_eval.errors import UserError
from slm_eval.prompt_files import read_prompts


def _file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _error(path: Path) -> str:
    with pytest.raises(UserError) as info:
        read_prompts(path)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_text_file_one_prompt_per_line(tmp_path: Path) -> None:
    path = _file(tmp_path, "p.txt", "# a comment\n  What is a visa?  \n\n   \nDeclare cash over 10 000 EUR?\n")
    assert read_prompts(path) == ["What is a visa?", "Declare cash over 10 000 EUR?"]


def test_jsonl_strings_and_objects(tmp_path: Path) -> None:
    lines = ['"plain string"', '{"prompt": "p"}', '{"input": "i"}', '{"question": "q", "id": 3}', '{"text": "t"}']
    path = _file(tmp_path, "p.JSONL", "\n".join(lines) + "\n\n")
    assert read_prompts(path) == ["plain string", "p", "i", "q", "t"]


def test_jsonl_prefers_prompt_over_other_keys(tmp_path: Path) -> None:
    path = _file(tmp_path, "p.jsonl", '{"text": "second", "prompt": "first"}\n')
    assert read_prompts(path) == ["first"]


def test_jsonl_malformed_line_is_named_by_number(tmp_path: Path) -> None:
    path = _file(tmp_path, "p.jsonl", '"one"\n\n{"prompt": "three"\n')
    message = _error(path)
    assert "line 3" in message
    assert "not valid JSON" in message


def test_jsonl_object_without_a_prompt_key(tmp_path: Path) -> None:
    message = _error(_file(tmp_path, "p.jsonl", '{"answer": "x"}\n'))
    assert "line 1" in message
    assert "prompt" in message


def test_jsonl_empty_prompt(tmp_path: Path) -> None:
    message = _error(_file(tmp_path, "p.jsonl", '"ok"\n{"prompt": "  "}\n'))
    assert "line 2 is an empty prompt" in message


@pytest.mark.parametrize("name", ["p.txt", "p.jsonl"])
def test_file_without_prompts(tmp_path: Path, name: str) -> None:
    assert "holds no prompts" in _error(_file(tmp_path, name, "\n# only a comment\n" if name == "p.txt" else "\n"))


def test_missing_file(tmp_path: Path) -> None:
    assert "cannot read prompts" in _error(tmp_path / "absent.txt")


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_bytes(b"\xff\xfe\x00bad")
    assert "cannot read prompts" in _error(path)
