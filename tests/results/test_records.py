"""Run folders: append-only JSONL records, torn lines after a kill, atomic JSON, run ids and look-up."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from slm_eval.errors import UserError
from slm_eval.results.records import RecordWriter, RunPaths, find_run, new_run_id, read_json, read_records, write_json


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


# --- records.jsonl -----------------------------------------------------------------------------------


def test_each_append_is_a_flushed_line_readable_while_the_writer_is_open(tmp_path: Path) -> None:
    path = tmp_path / "run" / "records.jsonl"
    with RecordWriter(path) as writer:
        writer.append({"key": "a", "n": 1})
        # A second, independent reader sees the line at once: it was flushed, not buffered.
        assert list(read_records(path)) == [{"key": "a", "n": 1}]
        writer.append({"key": "b", "text": "Ünïcode ✓"})
        assert [r["key"] for r in read_records(path)] == ["a", "b"]
        assert all(line.endswith("\n") for line in _lines(path))
    assert list(read_records(path))[1]["text"] == "Ünïcode ✓"


def test_a_missing_file_has_no_records(tmp_path: Path) -> None:
    assert list(read_records(tmp_path / "absent.jsonl")) == []


def test_a_torn_last_line_is_skipped_by_readers(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text('{"key": "a"}\n{"key": "b"}\n{"key": "c", "outp', encoding="utf-8")
    assert [r["key"] for r in read_records(path)] == ["a", "b"]


def test_a_complete_last_line_without_newline_still_counts_as_torn(tmp_path: Path) -> None:
    # A writer always ends a record with a newline; a line without one may be cut anywhere.
    path = tmp_path / "records.jsonl"
    path.write_text('{"key": "a"}\n{"key": "b"}', encoding="utf-8")
    assert [r["key"] for r in read_records(path)] == ["a"]


def test_a_new_writer_cuts_off_the_torn_line_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text('{"key": "a"}\n{"key": "b", "outp', encoding="utf-8")
    with RecordWriter(path) as writer:
        assert path.read_text(encoding="utf-8") == '{"key": "a"}\n'
        writer.append({"key": "c"})
    assert _lines(path) == ['{"key": "a"}\n', '{"key":"c"}\n']
    assert [json.loads(line)["key"] for line in _lines(path)] == ["a", "c"]


def test_a_file_that_is_only_a_torn_line_is_emptied(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text('{"key": "a", "te', encoding="utf-8")
    with RecordWriter(path) as writer:
        writer.append({"key": "b"})
    assert [r["key"] for r in read_records(path)] == ["b"]
    assert len(_lines(path)) == 1


def test_a_writer_leaves_a_complete_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text('{"key": "a"}\n', encoding="utf-8")
    RecordWriter(path).close()
    assert path.read_text(encoding="utf-8") == '{"key": "a"}\n'
    RecordWriter(tmp_path / "empty.jsonl").close()
    assert (tmp_path / "empty.jsonl").read_bytes() == b""


def test_a_corrupt_middle_line_is_skipped_and_non_objects_ignored(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text('{"key": "a"}\nnot json\n[1, 2]\n{"key": "b"}\n', encoding="utf-8")
    assert [r["key"] for r in read_records(path)] == ["a", "b"]


# --- JSON files --------------------------------------------------------------------------------------


def test_write_json_round_trips_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "summary.json"
    write_json(path, {"a": 1, "when": datetime(2026, 1, 2, tzinfo=timezone.utc), "path": Path("x")})
    assert read_json(path) == {"a": 1, "when": "2026-01-02 00:00:00+00:00", "path": "x"}
    assert sorted(p.name for p in path.parent.iterdir()) == ["summary.json"]


def test_write_json_replaces_the_file_in_one_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "summary.json"
    write_json(path, {"version": 1})
    seen: dict[str, object] = {}
    real_replace = os.replace

    def watching_replace(source: str | Path, target: str | Path) -> None:
        # At the moment of the rename the old file is intact and the new one is complete.
        seen["target_before"] = json.loads(Path(target).read_text(encoding="utf-8"))
        seen["source"] = json.loads(Path(source).read_text(encoding="utf-8"))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", watching_replace)
    write_json(path, {"version": 2, "big": list(range(1000))})
    assert seen["target_before"] == {"version": 1}
    assert seen["source"] == {"version": 2, "big": list(range(1000))}
    assert read_json(path)["version"] == 2


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "summary.json"
    write_json(path, {"version": 1})

    def failing_replace(source: str | Path, target: str | Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        write_json(path, {"version": 2})
    assert read_json(path) == {"version": 1}

    circular: dict[str, object] = {}
    circular["self"] = circular
    monkeypatch.undo()
    with pytest.raises(ValueError):
        write_json(path, circular)
    assert read_json(path) == {"version": 1}


@pytest.mark.parametrize(
    ("content", "expected"), [(None, "cannot read"), ("{broken", "is not valid JSON"), ("[1]", "JSON object")]
)
def test_read_json_errors_are_user_errors(tmp_path: Path, content: str | None, expected: str) -> None:
    path = tmp_path / "run.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=expected):
        read_json(path)


# --- run ids and folders -----------------------------------------------------------------------------


def test_run_ids_sort_by_time_and_name_the_model() -> None:
    start = datetime(2026, 11, 29, 10, 15, 0, tzinfo=timezone.utc)
    times = [start + timedelta(seconds=s) for s in (0, 1, 59, 3600, 86400 * 40)]
    ids = [new_run_id("smollm2-135m-instruct", when) for when in reversed(times)]
    assert sorted(ids) == list(reversed(ids))
    assert ids[-1].startswith("20261129-101500-smollm2-135m-instruct-")
    assert len(ids[-1].rsplit("-", 1)[1]) == 6


def test_run_ids_in_the_same_second_differ() -> None:
    now = datetime(2026, 11, 29, 10, 15, 0, tzinfo=timezone.utc)
    assert new_run_id("m", now) != new_run_id("m", now)


def test_run_ids_are_safe_folder_names_for_paths_and_odd_names() -> None:
    run_id = new_run_id("/models/My Model (v2)/Phi_3.Q4.gguf")
    assert "/" not in run_id and " " not in run_id and "(" not in run_id
    assert "-phi-3.q4.gguf-" in run_id


def test_find_run_by_id_or_by_path(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_json(results / "r1" / "run.json", {"run_id": "r1"})
    assert find_run(results, "r1") == RunPaths(results / "r1")
    assert find_run(tmp_path / "elsewhere", str(results / "r1")).root == results / "r1"


def test_an_unknown_run_lists_the_most_recent_runs(tmp_path: Path) -> None:
    results = tmp_path / "results"
    names = [f"2026010{day}-000000-m-abcd" for day in range(1, 6)]
    for name in names:
        (results / name).mkdir(parents=True)
    with pytest.raises(UserError) as caught:
        find_run(results, "20260109-nope")
    message = str(caught.value)
    assert "'20260109-nope'" in message
    assert "recent runs: " + ", ".join(names[-3:]) in message
    assert names[0] not in message


def test_an_unknown_run_in_an_empty_results_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="holds no runs"):
        find_run(tmp_path / "results", "r1")


def test_a_folder_without_run_json_is_not_a_run(tmp_path: Path) -> None:
    (tmp_path / "results" / "r1").mkdir(parents=True)
    with pytest.raises(UserError, match=r"not a run folder: it has no run\.json"):
        find_run(tmp_path / "results", "r1")


def test_run_paths_name_every_file(tmp_path: Path) -> None:
    paths = RunPaths(tmp_path)
    assert [p.name for p in (paths.run_file, paths.records, paths.memory, paths.summary, paths.plots)] == [
        "run.json",
        "records.jsonl",
        "memory.jsonl",
        "summary.json",
        "plots",
    ]
