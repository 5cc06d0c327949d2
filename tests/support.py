"""Helpers shared by the tests: running the CLI in-process and checking its one-line errors."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SLM_EVAL_SCRIPT = Path(sys.executable).parent / "slm-eval"


@dataclass(frozen=True)
class CliResult:
    """Exit code and captured output of one CLI run."""

    code: int
    out: str
    err: str

    def error_line(self) -> str:
        """The single stderr line of a failed run, after checking there is exactly one and no traceback."""
        assert self.code != 0, f"expected a failure, got exit 0; stdout: {self.out!r}"
        assert "Traceback" not in self.err
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, f"expected one stderr line, got: {self.err!r}"
        assert lines[0].startswith("error: ")
        return lines[0]


def exit_code(exc: SystemExit) -> int:
    """The integer status of a ``SystemExit``."""
    if exc.code is None:
        return 0
    return exc.code if isinstance(exc.code, int) else 1


def clean_environ() -> dict[str, str]:
    """The current environment without any ``SLM_EVAL_`` variable."""
    return {key: value for key, value in os.environ.items() if not key.startswith("SLM_EVAL_")}


def without_measured_values(data: object) -> object:
    """A copy of a JSON document with the values of ``measured`` figures removed (they vary run to run)."""
    if isinstance(data, dict):
        if data.get("label") == "measured" and "value" in data:
            return {key: value for key, value in data.items() if key != "value"}
        return {key: without_measured_values(value) for key, value in data.items()}
    if isinstance(data, list):
        return [without_measured_values(item) for item in data]
    return data
