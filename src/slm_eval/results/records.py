"""Append-only JSONL records of a run, the run folder's layout, and reading them back for resume.

A run lives in ``results/<run-id>/``:

- ``run.json``: the plan (model, task, device, metrics, options), written before any work;
- ``records.jsonl``: one line per request, appended and flushed as each finishes;
- ``memory.jsonl``: resident-memory samples of the worker over time;
- ``summary.json``, ``report.md``, ``report.html`` and ``plots/``: written at the end.

A record is never rewritten. A process killed mid-write can leave a torn last line; readers skip it and
:class:`RecordWriter` cuts it off before appending, so a resumed run never holds a broken line.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from slm_eval.errors import UserError
from slm_eval.json_files import read_json_object

SCHEMA_VERSION = 1
RUN_FILE = "run.json"
RECORDS_FILE = "records.jsonl"
MEMORY_FILE = "memory.jsonl"
SUMMARY_FILE = "summary.json"


def new_run_id(model: str, now: datetime | None = None) -> str:
    """A sortable run id, unique in practice: ``20261129-101500-smollm2-135m-instruct-3fa2c1``."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{safe_name(model)[:40]}-{secrets.token_hex(3)}"


def safe_name(name: str, keep: str = "-.") -> str:
    """A folder-safe lower-case form of a model name or path's last part: other characters become ``-``."""
    safe = "".join(ch if ch.isalnum() or ch in keep else "-" for ch in Path(name).name.lower()).strip("-")
    return safe or "model"


@dataclass(frozen=True)
class RunPaths:
    """The files of one run folder."""

    root: Path

    @property
    def run_file(self) -> Path:
        return self.root / RUN_FILE

    @property
    def records(self) -> Path:
        return self.root / RECORDS_FILE

    @property
    def memory(self) -> Path:
        return self.root / MEMORY_FILE

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY_FILE

    @property
    def plots(self) -> Path:
        return self.root / "plots"


def find_run(results_dir: Path, run_id: str) -> RunPaths:
    """The folder of an existing run, by id or by path.

    Raises:
        UserError: no such run, or the folder holds no ``run.json``.
    """
    candidate = Path(run_id)
    root = candidate if candidate.is_dir() else results_dir / run_id
    if not root.is_dir():
        known = sorted(p.name for p in results_dir.iterdir() if p.is_dir()) if results_dir.is_dir() else []
        hint = f"; recent runs: {', '.join(known[-3:])}" if known else f"; {results_dir} holds no runs"
        raise UserError(f"no run '{run_id}' in {results_dir}{hint}")
    paths = RunPaths(root)
    if not paths.run_file.is_file():
        raise UserError(f"{root} is not a run folder: it has no {RUN_FILE}")
    return paths


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write a JSON file atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    temporary.replace(path)


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object written by :func:`write_json`.

    Raises:
        UserError: missing or unreadable.
    """
    return read_json_object(path, "run file")


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Every complete record of a JSONL file, skipping a torn last line. A missing file has none."""
    if not path.exists():
        return
    with path.open("r", encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                return  # torn by a killed writer
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                yield record


class RecordWriter:
    """Appends records to a JSONL file, one flushed line each.

    Opening cuts off a torn last line left by a killed process, so appends start on a line boundary.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        _drop_torn_tail(path)
        self._handle: TextIO = path.open("a", encoding="utf-8")
        self.path = path

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one record and flush it to the operating system."""
        self._handle.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._handle.flush()

    def close(self) -> None:
        """Close the file."""
        self._handle.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _drop_torn_tail(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 1))
        if handle.read(1) == b"\n":
            return
        data = path.read_bytes()
        handle.truncate(data.rfind(b"\n") + 1)
