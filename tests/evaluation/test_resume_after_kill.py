"""SIGKILL an evaluation mid-run, resume it, and check the run is complete with nothing twice or missing.

The fake backend answers instantly, so the run is given enough work (1,000 questions x 6 variants) for the
records file to be growing while the test watches it; the process is killed once a few lines are there.
"""

from __future__ import annotations

import collections
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from slm_eval.devices.cgroup import MEMORY_ROOT, own_memory_cgroup
from slm_eval.devices.profiles import KNOWN_PERTURBATIONS
from slm_eval.tasks.squad import load_squad_file, select_examples
from tests.fake_runs import write_qa_jsonl
from tests.support import clean_environ

QUESTIONS = 1200
LIMIT = 1000
SEED = 7
POLL_LIMIT_S = 60.0


def _evaluate(*args: str) -> list[str]:
    return [sys.executable, "-m", "slm_eval", "evaluate", *args]


def _lines_at_start(path: Path, size: int = 65536) -> int:
    try:
        with path.open("rb") as handle:
            return handle.read(size).count(b"\n")
    except FileNotFoundError:
        return 0


def _kill_once_records_appear(process: subprocess.Popen[bytes], results: Path, lines: int = 5) -> Path:
    """Poll (bounded) until some run's records.jsonl has ``lines`` lines, then SIGKILL the process."""
    deadline = time.monotonic() + POLL_LIMIT_S
    while time.monotonic() < deadline:
        found = sorted(results.glob("*/records.jsonl"))
        if found and _lines_at_start(found[0]) >= lines:
            workers = psutil.Process(process.pid).children(recursive=True)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
            # The worker asked the kernel to kill it with its parent: nothing is left running.
            _, alive = psutil.wait_procs(workers, timeout=15)
            assert not alive, f"workers outlived the killed evaluation: {alive}"
            return found[0].parent
        if process.poll() is not None:
            pytest.fail(f"the evaluation ended (exit {process.returncode}) before it could be killed")
        time.sleep(0.005)
    process.kill()
    pytest.fail(f"no records appeared within {POLL_LIMIT_S:.0f} s")


@dataclass(frozen=True)
class KilledAndResumed:
    """A run killed with SIGKILL, then resumed: its folder, what was there at the kill, and the dataset."""

    run: Path
    dataset: Path
    killed_pid: int
    killed_records: list[dict[str, Any]]
    summary_after_kill: bool
    resumed: subprocess.CompletedProcess[str]


def _stale_cgroups(pid: int) -> list[Path]:
    own = own_memory_cgroup()
    if own is None:
        return []
    return sorted((MEMORY_ROOT / own.lstrip("/")).glob(f"slm-eval-{pid}-*"))


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KilledAndResumed]:
    root = tmp_path_factory.mktemp("kill")
    dataset = write_qa_jsonl(root / "qa.jsonl", QUESTIONS)
    command = _evaluate(
        "--model", "smollm2-135m-instruct", "--backend", "fake", "--device", "docker-sim",
        "--dataset", str(dataset), "--limit", str(LIMIT), "--seed", str(SEED),
        "--metrics", "accuracy", "latency", "robustness",
    )  # fmt: skip
    with (root / "first.err").open("wb") as err:
        process = subprocess.Popen(command, cwd=root, env=clean_environ(), stdout=subprocess.DEVNULL, stderr=err)
        run = _kill_once_records_appear(process, root / "results")
    assert process.returncode == -signal.SIGKILL
    summary_after_kill = (run / "summary.json").exists()

    # Make sure the resume meets a torn last line, as a kill in the middle of a write leaves one.
    records_file = run / "records.jsonl"
    if records_file.read_bytes().endswith(b"\n"):
        with records_file.open("ab") as handle:
            handle.write(b'{"schema_version":1,"session":0,"kind":"eval","key":"eval|q0')
    killed = [json.loads(line) for line in records_file.read_text(encoding="utf-8").splitlines()[:-1]]

    resumed = subprocess.run(
        _evaluate("--resume", run.name), cwd=root, env=clean_environ(), capture_output=True, text=True, timeout=300
    )
    yield KilledAndResumed(run, dataset, process.pid, killed, summary_after_kill, resumed)
    for group in _stale_cgroups(process.pid):  # belt and braces: the resumed run sweeps them itself
        with contextlib.suppress(OSError):
            group.rmdir()


def test_a_killed_run_resumes_to_a_complete_run(killed_and_resumed: KilledAndResumed) -> None:
    run = killed_and_resumed.run
    killed = killed_and_resumed.killed_records
    assert not killed_and_resumed.summary_after_kill
    assert (run / "run.json").is_file()
    assert len(killed) >= 5
    resumed = killed_and_resumed.resumed
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr

    # Every line is whole: the torn line was cut off before the resumed session appended.
    records_file = run / "records.jsonl"
    records = [json.loads(line) for line in records_file.read_text(encoding="utf-8").splitlines()]
    assert records[: len(killed)] == killed
    assert {r["session"] for r in records[: len(killed)]} == {0}
    assert {r["session"] for r in records[len(killed) :]} == {1}

    # Exactly one scored answer per (question, variant) across both sessions: none twice, none missing.
    expected_ids = {ex.id for ex in select_examples(load_squad_file(killed_and_resumed.dataset), LIMIT, SEED)}
    scored = collections.Counter(
        (r["example_id"], r["perturbation"]) for r in records if r["kind"] == "eval" and r["scores"] is not None
    )
    assert set(scored) == {
        (example, variant) for example in expected_ids for variant in ("clean", *KNOWN_PERTURBATIONS)
    }
    duplicates = [key for key, count in scored.items() if count != 1]
    assert not duplicates

    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["sessions"] == 2
    assert summary["fits"]["fits"] is True
    assert summary["task"]["examples"] == LIMIT
    assert summary["metrics"]["accuracy"]["f1"]["n"] == LIMIT
    assert all(p["n"] == LIMIT for p in summary["metrics"]["robustness"]["perturbations"].values())

    # Latency comes from the resumed session alone: its clean answers and timing top-ups, after its warm-up.
    timed_now = [
        r for r in records if r["session"] == 1 and r["kind"] in ("eval", "timing") and r["perturbation"] == "clean"
    ]
    timed_before = [r for r in records if r["session"] == 0 and r["kind"] == "eval" and r["perturbation"] == "clean"]
    assert timed_before, "the killed session had timed some answers"
    latency = summary["metrics"]["latency"]
    assert latency["requests"] == len(timed_now) == latency["end_to_end"]["n"]
    assert latency["requests"] >= 5
    assert latency["end_to_end"]["mean"] == pytest.approx(sum(r["e2e_ms"] for r in timed_now) / len(timed_now))
    assert (run / "report.md").is_file() and (run / "report.html").is_file()


def test_a_killed_run_leaves_no_memory_cgroup_behind(killed_and_resumed: KilledAndResumed) -> None:
    if own_memory_cgroup() is None or not (MEMORY_ROOT / "memory.limit_in_bytes").exists():
        pytest.skip("no cgroup v1 memory controller")
    assert killed_and_resumed.resumed.returncode == 0
    assert _stale_cgroups(killed_and_resumed.killed_pid) == []
