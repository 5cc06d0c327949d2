"""``slm-eval benchmark``: several models and devices, the report, resume, one-line errors, and a real run."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from slm_eval.cli import expand_multi_value_options
from slm_eval.evaluation.summary import HostPerformanceSource
from slm_eval.tasks.catalogue import USE_CASES
from tests.conftest import RunCli

MODEL = "smollm2-135m-instruct"
FAKE = ("--model", MODEL, "--backend", "fake")
TWO_USE_CASES = ("--use-cases", "document-verification", "customs-help")
REPORT_FILES = ("benchmark-plan.json", "benchmark.json", "report.md", "report.html", "results.csv")


@pytest.fixture(autouse=True)
def _fixed_host_capacity(monkeypatch: pytest.MonkeyPatch) -> None:
    """The projection's host figures, fixed: measuring them takes seconds and half a GiB."""
    monkeypatch.setattr(HostPerformanceSource, "measure", classmethod(lambda cls: cls(20.0, 100.0)))


def _benchmarks(tmp_path: Path) -> list[Path]:
    results = tmp_path / "results"
    return sorted(p for p in results.iterdir() if p.is_dir()) if results.is_dir() else []


def _json(out: str) -> Any:
    return json.loads(out)


def _cell_summary(root: Path, device: str, use_case: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / MODEL / device / use_case / "summary.json").read_text(encoding="utf-8"))
    return data


# --- a fake benchmark ----------------------------------------------------------------------------------


def test_a_benchmark_on_two_devices_writes_every_file_and_prints_the_verdicts(run_cli: RunCli, tmp_path: Path) -> None:
    result = run_cli("benchmark", *FAKE, "--device", "docker-sim", "host", *TWO_USE_CASES, "--limit", "3")
    assert result.code == 0, result.err
    (root,) = _benchmarks(tmp_path)
    for name in REPORT_FILES:
        assert (root / name).is_file(), name
    for device in ("docker-sim", "host"):
        for use_case in ("document-verification", "customs-help"):
            assert _cell_summary(root, device, use_case)["task"]["examples"] == 3
    summary = json.loads((root / "benchmark.json").read_text(encoding="utf-8"))
    assert summary["benchmark_id"] == root.name
    assert summary["devices"] == ["docker-sim", "host"]
    assert summary["use_cases"] == ["document-verification", "customs-help"]
    assert [e["verdict"]["verdict"] for e in summary["results"]] == ["FAIL", "FAIL"]

    # the verdict table
    assert f"Benchmark {root.name}" in result.out
    for part in ("document-verification", "customs-help", "overall", "docker-sim", "host", "FAIL",
                 "(scripted, not projected)", "decision 0.000", "0.000 (0.000-0.000)"):  # fmt: skip
        assert part in result.out, part
    assert result.out.count("FAIL") == 2
    assert result.err.startswith(f"benchmark {root.name} -> ")
    assert f"report: {Path('results') / root.name / 'report.html'}" in result.err
    with (root / "results.csv").open(encoding="utf-8", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 4  # one model x two devices x two use cases


def test_json_prints_benchmark_json(run_cli: RunCli, tmp_path: Path) -> None:
    result = run_cli(
        "benchmark", "--model", MODEL, "gemma-3-270m", "--backend", "fake", "--device", "docker-sim",
        "--use-cases", "customs-help", "--limit", "2", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    summary = _json(result.out)
    (root,) = _benchmarks(tmp_path)
    assert summary == json.loads((root / "benchmark.json").read_text(encoding="utf-8"))
    assert summary["models"] == [MODEL, "gemma-3-270m"]
    assert [(e["model"], e["device"]) for e in summary["results"]] == [
        (MODEL, "docker-sim"),
        ("gemma-3-270m", "docker-sim"),
    ]
    assert summary["limit"] == 2
    for entry in summary["results"]:
        (use_case,) = entry["use_cases"]
        assert use_case["use_case"] == "customs-help" and use_case["n"] == 2
        assert entry["overall"]["weights"] == {"customs-help": 1.0}
    report = (root / "report.md").read_text(encoding="utf-8")
    assert f"{MODEL} on docker-sim" in report and "gemma-3-270m on docker-sim" in report


def test_resume_completes_an_interrupted_benchmark(run_cli: RunCli, tmp_path: Path) -> None:
    first = run_cli("benchmark", *FAKE, "--device", "docker-sim", *TWO_USE_CASES, "--limit", "2", "--json")
    assert first.code == 0, first.err
    benchmark_id = _json(first.out)["benchmark_id"]
    (root,) = _benchmarks(tmp_path)
    interrupted = root / MODEL / "docker-sim" / "customs-help"
    (interrupted / "summary.json").unlink()
    (root / "benchmark.json").unlink()
    finished_before = (root / MODEL / "docker-sim" / "document-verification" / "records.jsonl").read_bytes()

    again = run_cli("benchmark", "--resume", benchmark_id, "--json")
    assert again.code == 0, again.err
    summary = _json(again.out)
    assert summary["benchmark_id"] == benchmark_id
    assert summary["use_cases"] == ["document-verification", "customs-help"]
    assert [u["n"] for u in summary["results"][0]["use_cases"]] == [2, 2]
    assert _cell_summary(root, "docker-sim", "customs-help")["sessions"] == 2
    assert _cell_summary(root, "docker-sim", "document-verification")["sessions"] == 1
    assert (root / MODEL / "docker-sim" / "document-verification" / "records.jsonl").read_bytes() == finished_before
    assert _benchmarks(tmp_path) == [root]  # no second benchmark folder
    for name in REPORT_FILES:
        assert (root / name).is_file(), name


# --- bad input: one line, a non-zero exit, no traceback, no benchmark folder ----------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([*FAKE, "--use-cases", "passport-scan"], ["unknown use case 'passport-scan'", ", ".join(USE_CASES)]),
        (
            [*FAKE, "--use-cases", "document-verification", "custom-help"],
            ["unknown use case 'custom-help'", "did you mean customs-help?"],
        ),
        ([*FAKE, "--device", "docker-sim", "docker-sm"], ["unknown device profile 'docker-sm'", "'docker-sim'"]),
        ([*FAKE, "--limit", "0"], ["--limit must be at least 1 (got 0)"]),
        (["--model", "phi-4", "--backend", "fake"], ["unknown model 'phi-4'", "phi-3-mini"]),
        (
            ["--model", "phi-3-mini", "--device", "docker-sim"],
            ["microsoft/Phi-3-mini-128k-instruct", "not available offline"],
        ),
        (["--model", MODEL, "phi-3-mini", "--device", "docker-sim"], ["microsoft/Phi-3-mini-128k-instruct"]),
        (["--resume", "20260101-000000-benchmark-nope"], ["is not a benchmark folder"]),
    ],
    ids=[
        "unknown-use-case",
        "near-miss-use-case",
        "unknown-device",
        "limit-0",
        "unknown-model",
        "weights-not-here",
        "one-model-without-weights",
        "unknown-resume",
    ],
)
def test_bad_input_is_one_line(run_cli: RunCli, tmp_path: Path, argv: list[str], expected: list[str]) -> None:
    line = run_cli("benchmark", *argv).error_line()
    for part in expected:
        assert part in line
    assert _benchmarks(tmp_path) == []


@pytest.mark.parametrize(
    ("args", "expanded"),
    [
        (
            ["benchmark", "--model", "a", "b", "--device", "c", "d", "--limit", "2"],
            ["benchmark", "--model", "a", "--model", "b", "--device", "c", "--device", "d", "--limit", "2"],
        ),
        (
            ["benchmark", "-m", "a", "b", "--use-cases", "x", "y", "--json"],
            ["benchmark", "-m", "a", "-m", "b", "--use-cases", "x", "--use-cases", "y", "--json"],
        ),
        (["--debug", "benchmark", "-d", "c", "d"], ["--debug", "benchmark", "-d", "c", "-d", "d"]),
        (["evaluate", "--model", "a", "b"], ["evaluate", "--model", "a", "b"]),  # only benchmark takes several
    ],
)
def test_expand_multi_value_options_for_benchmark(args: list[str], expanded: list[str]) -> None:
    assert expand_multi_value_options(args) == expanded


def test_a_global_option_with_a_value_before_benchmark() -> None:
    args = ["--log-level", "INFO", "benchmark", "--model", "a", "b"]
    assert expand_multi_value_options(args) == ["--log-level", "INFO", "benchmark", "--model", "a", "--model", "b"]


# --- one real benchmark --------------------------------------------------------------------------------


@pytest.mark.slow
def test_benchmark_smollm2_end_to_end(run_cli: RunCli, tmp_path: Path) -> None:
    result = run_cli(
        "benchmark", "--model", MODEL, "--device", "docker-sim", "host", *TWO_USE_CASES, "--limit", "2",
        "--threads", "1", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    summary = _json(result.out)
    (root,) = _benchmarks(tmp_path)
    assert [(e["model"], e["device"]) for e in summary["results"]] == [(MODEL, "docker-sim"), (MODEL, "host")]
    for entry in summary["results"]:
        device = entry["device"]
        overall = entry["overall"]
        assert 0.0 <= overall["low"] <= overall["mean"] <= overall["high"] <= 1.0
        assert overall["weights"] == pytest.approx({"document-verification": 0.625, "customs-help": 0.375})
        verdict = entry["verdict"]
        assert verdict["verdict"] in ("PASS", "FAIL")
        assert (verdict["verdict"] == "PASS") == (verdict["reasons"] == [])
        assert len(verdict["reasons"]) == sum(1 for check in verdict["checks"] if not check["passed"])
        assert verdict["checks"][-1]["use_case"] == "overall"
        assert [c["passed"] for c in verdict["checks"] if c["check"] == "fits in memory"] == [True, True]
        label = "measured" if device == "host" else "projected"
        latency_checks = [c for c in verdict["checks"] if c["check"].startswith("p90 latency")]
        assert [c["check"] for c in latency_checks] == [f"p90 latency at most (ms, {label})"] * 2
        for use_case in entry["use_cases"]:
            assert use_case["n"] == 2 and 0.0 <= use_case["mean"] <= 1.0
            assert use_case["fits"] is True
            assert use_case["latency_label"] == label
            assert use_case["latency_p90_ms"] > 0
            cell = _cell_summary(root, device, use_case["use_case"])
            assert cell["model"]["backend"] == "llamacpp"
            assert cell["metrics"]["latency"]["end_to_end"]["label"] == "measured"
            if device == "host":
                assert use_case["latency_p90_ms"] == cell["metrics"]["latency"]["end_to_end"]["p90"]
            else:
                assert cell["metrics"]["latency"]["projection"]["request_latency"]["label"] == "projected"
    for name in REPORT_FILES:
        assert (root / name).is_file(), name
    assert sorted(p.name for p in (root / "plots").iterdir()) == ["accuracy_latency.png", "accuracy_size.png"]
    assert (root / "report.html").read_text(encoding="utf-8").count("data:image/png;base64,") == 2
