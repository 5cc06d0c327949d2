"""``slm-eval evaluate`` and ``slm-eval report``: bad input is one line, the seed command parses, a real run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from slm_eval.cli import expand_multi_value_options
from slm_eval.evaluation.summary import HostPerformanceSource
from tests.conftest import RunCli
from tests.fake_runs import MIB, write_qa_jsonl

FAKE = ("--model", "smollm2-135m-instruct", "--backend", "fake")


@pytest.fixture(autouse=True)
def _fixed_host_capacity(monkeypatch: pytest.MonkeyPatch) -> None:
    """The projection's host figures, fixed: measuring them takes seconds and half a GiB."""
    monkeypatch.setattr(HostPerformanceSource, "measure", classmethod(lambda cls: cls(20.0, 100.0)))


def _runs(tmp_path: Path) -> list[Path]:
    results = tmp_path / "results"
    return sorted(p for p in results.iterdir() if p.is_dir()) if results.is_dir() else []


def _json(out: str) -> Any:
    return json.loads(out)


# --- bad input: one line, a non-zero exit, no traceback, nothing half-written ------------------------


def _write(tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return name


BAD_SQUAD_JSON = json.dumps(
    {"data": [{"title": "t", "paragraphs": [{"context": "c", "qas": [{"id": "1", "answers": []}]}]}]}
)
NOT_SQUAD_CSV = "id,question,answer\n1,What is a visa?,a permit\n"
JSONL_MISSING_QUESTION = (
    '{"id": "a", "question": "Q?", "context": "c", "answers": {"text": ["c"], "answer_start": [0]}}\n'
    '{"id": "b", "context": "c", "answers": {"text": ["c"], "answer_start": [0]}}\n'
)


@pytest.mark.parametrize(
    ("args", "files", "expected"),
    [
        (["--metrics", "accuracy", "speed"], {}, ["unknown metric 'speed'", "model_size"]),
        (["--metrics", "accuracy,sped"], {}, ["unknown metric 'sped'"]),
        (["--device", "docker-sm"], {}, ["unknown device profile 'docker-sm'", "did you mean 'docker-sim'"]),
        (["--dataset", "bad.jsonl"], {"bad.jsonl": JSONL_MISSING_QUESTION}, ["bad.jsonl: line 2: missing 'question'"]),
        (["--dataset", "bad.json"], {"bad.json": BAD_SQUAD_JSON}, ["data[0].paragraphs[0].qas[0]", "'question'"]),
        (["--dataset", "qa.csv"], {"qa.csv": NOT_SQUAD_CSV}, ["qa.csv: not a SQuAD dataset"]),
        (["--dataset", "empty.jsonl"], {"empty.jsonl": ""}, ["empty.jsonl", "holds no questions"]),
        (["--dataset", "none.json"], {"none.json": '{"data": []}'}, ["none.json", "holds no questions"]),
        (["--dataset", "sqad"], {}, ["dataset 'sqad'", "did you mean --dataset squad"]),
        (["--limit", "0"], {}, ["--limit must be at least 1 (got 0)"]),
        (["--limit", "-2"], {}, ["--limit must be at least 1 (got -2)"]),
        (
            ["--eval-config", "edge.json", "--device", "edge"],
            {"edge.json": '{"profiles": {"edge": {"cores": 0, "memory_mib": 512}}}'},
            ["device profile 'edge': cores must be at least 1 (got 0)", "edge.json"],
        ),
        (
            ["--eval-config", "edge.json", "--device", "edge"],
            {"edge.json": '{"profiles": {"edge": {"cores": 2, "memory_mib": 16}}}'},
            ["device profile 'edge': memory_mib must be at least 64 (got 16)"],
        ),
        (["--model", "phi-4"], {}, ["unknown model 'phi-4'", "phi-3-mini"]),
        (["--model", "grok-3-mini-fast", "--metrics", "accuracy", "power"], {}, ["power is not applicable"]),
        (["--resume", "20260101-000000-nope"], {}, ["no run '20260101-000000-nope'"]),
    ],
    ids=[
        "unknown-metric",
        "unknown-metric-comma",
        "unknown-device",
        "jsonl-missing-key",
        "squad-json-missing-key",
        "not-squad",
        "empty-file",
        "empty-data",
        "unknown-dataset-name",
        "limit-0",
        "limit-negative",
        "impossible-cores",
        "impossible-memory",
        "unknown-model",
        "api-model-power",
        "unknown-resume",
    ],
)
def test_bad_input_is_one_line(
    run_cli: RunCli, tmp_path: Path, args: list[str], files: dict[str, str], expected: list[str]
) -> None:
    for name, text in files.items():
        _write(tmp_path, name, text)
    argv = [*FAKE, "--limit", "2", *args] if "--model" not in args else ["--backend", "fake", *args]
    line = run_cli("evaluate", *argv).error_line()
    for part in expected:
        assert part in line
    assert _runs(tmp_path) == []  # planning failed before any run folder was made


def test_a_model_bigger_than_the_device_is_recorded_not_crashed(run_cli: RunCli, tmp_path: Path) -> None:
    _write(tmp_path, "tiny.json", '{"profiles": {"tiny": {"cores": 1, "memory_mib": 64}}}')
    result = run_cli(
        "evaluate", "--model", "smollm2-135m-instruct", "--eval-config", "tiny.json", "--device", "tiny", "--json"
    )
    assert result.code == 0, result.err
    summary = _json(result.out)
    assert summary["fits"]["fits"] is False
    assert "more than the 64 MiB of tiny" in summary["fits"]["reason"]
    (run,) = _runs(tmp_path)
    assert (run / "summary.json").is_file() and (run / "report.md").is_file()


# --- the seed command and --metrics ------------------------------------------------------------------


def test_the_seed_command_with_space_separated_metrics(run_cli: RunCli, tmp_path: Path) -> None:
    # python run.py evaluate --model phi-3-mini --device docker-sim --metrics accuracy latency model_size
    result = run_cli(
        "evaluate", "--model", "phi-3-mini", "--device", "docker-sim", "--metrics", "accuracy", "latency", "model_size",
        "--backend", "fake", "--limit", "2", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    summary = _json(result.out)
    assert list(summary["metrics"]) == ["model_size", "accuracy", "latency"]
    assert summary["config"]["metrics"] == ["accuracy", "latency", "model_size"]
    assert summary["model"]["name"] == "phi-3-mini"
    assert summary["device"]["profile"]["name"] == "docker-sim"
    assert summary["metrics"]["model_size"]["parameters"] == 3_821_079_552
    (run,) = _runs(tmp_path)
    assert run.name == summary["run_id"]
    assert result.err.startswith(f"run {run.name} -> ")


def test_the_end_of_run_table(run_cli: RunCli, tmp_path: Path) -> None:
    result = run_cli("evaluate", *FAKE, "--device", "docker-sim", "--limit", "2", "--metrics", "accuracy,power")
    assert result.code == 0, result.err
    for part in ("smollm2-135m-instruct on docker-sim", "fits", "valid", "sandbox", "f1", "energy per request",
                 "(estimated)"):  # fmt: skip
        assert part in result.out
    (run,) = _runs(tmp_path)
    assert f"report: {Path('results') / run.name / 'report.md'}" in result.err


@pytest.mark.parametrize(
    ("args", "expanded"),
    [
        (["evaluate", "--metrics", "a", "b", "c"], ["evaluate", "--metrics", "a", "--metrics", "b", "--metrics", "c"]),
        (
            ["evaluate", "--metrics", "a", "b", "--limit", "3", "--json"],
            ["evaluate", "--metrics", "a", "--metrics", "b", "--limit", "3", "--json"],
        ),
        (["evaluate", "--metrics", "a,b", "--device", "x"], ["evaluate", "--metrics", "a,b", "--device", "x"]),
        (["evaluate", "--metrics"], ["evaluate", "--metrics"]),
        (["report", "r1", "r2"], ["report", "r1", "r2"]),
    ],
)
def test_expand_multi_value_options(args: list[str], expanded: list[str]) -> None:
    assert expand_multi_value_options(args) == expanded


# --- resume and report -------------------------------------------------------------------------------


def test_resume_a_finished_run_and_report_it_again(run_cli: RunCli, tmp_path: Path) -> None:
    write_qa_jsonl(tmp_path / "qa.jsonl", 3)
    first = run_cli(
        "evaluate", *FAKE, "--dataset", str(tmp_path / "qa.jsonl"), "--metrics", "accuracy", "latency", "--json"
    )
    assert first.code == 0, first.err
    run_id = _json(first.out)["run_id"]
    again = run_cli("evaluate", "--resume", run_id, "--json")
    assert again.code == 0, again.err
    summary = _json(again.out)
    assert summary["sessions"] == 2
    assert summary["metrics"]["accuracy"]["f1"]["n"] == 3
    report = run_cli("report", run_id)
    assert report.code == 0, report.err
    markdown, page = report.out.split()
    assert Path(markdown).name == "report.md" and Path(page).name == "report.html"
    assert Path(markdown).is_file() and Path(page).is_file()


def test_report_compares_several_runs(run_cli: RunCli, tmp_path: Path) -> None:
    ids = []
    for device in ("docker-sim", "raspberry-pi-5"):
        result = run_cli("evaluate", *FAKE, "--device", device, "--limit", "2", "--metrics", "accuracy", "--json")
        assert result.code == 0, result.err
        ids.append(_json(result.out)["run_id"])
    result = run_cli("report", *ids, "--out", "cmp")
    assert result.code == 0, result.err
    assert [Path(line).name for line in result.out.split()] == ["comparison.md", "comparison.html", "comparison.csv"]
    assert (tmp_path / "cmp" / "comparison.csv").read_text(encoding="utf-8").count("\n") == 3


def test_report_of_an_unknown_run(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "results" / "20260101-000000-m-abcd").mkdir(parents=True)
    line = run_cli("report", "20260101-nope").error_line()
    assert "no run '20260101-nope'" in line
    assert "recent runs: 20260101-000000-m-abcd" in line


def test_report_of_a_run_without_summary(run_cli: RunCli, tmp_path: Path) -> None:
    run = tmp_path / "results" / "20260101-000000-m-abcd"
    run.mkdir(parents=True)
    (run / "run.json").write_text("{}", encoding="utf-8")
    line = run_cli("report", run.name).error_line()
    assert "has no summary yet" in line
    assert f"--resume {run.name}" in line


def test_report_of_a_folder_that_is_not_a_run(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "results" / "notes").mkdir(parents=True)
    line = run_cli("report", "notes").error_line()
    assert "is not a run folder" in line


# --- one real run ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_evaluate_smollm2_end_to_end(run_cli: RunCli, tmp_path: Path) -> None:
    result = run_cli(
        "evaluate", "--model", "smollm2-135m-instruct", "--device", "docker-sim", "--limit", "3",
        "--max-new-tokens", "16", "--metrics", "accuracy", "latency", "memory", "model_size", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    summary = _json(result.out)
    assert summary["model"]["backend"] == "llamacpp"
    assert summary["fits"] == {"fits": True, "reason": None}
    device = summary["device"]
    assert device["sandbox"] in ("process", "docker")
    if device["sandbox"] == "process":
        assert device["memory_enforcement"] in ("cgroup-v1", "rlimit-as")
        key = "cgroup_memory_limit" if device["memory_enforcement"] == "cgroup-v1" else "rlimit_as"
        assert device["read_back_in_worker"][key] == 2048 * MIB
        assert device["read_back_in_worker"]["affinity"] == device["limits"]["cpus"]
    assert device["limits"]["memory_bytes"] == 2048 * MIB
    assert device["limits"]["threads"] == len(device["limits"]["cpus"]) <= 2
    assert device["sandbox_note"]
    assert device["memory_limit_hit"] is False

    metrics = summary["metrics"]
    assert metrics["accuracy"]["f1"]["n"] == 3
    assert 0.0 <= metrics["accuracy"]["f1"]["mean"] <= 1.0
    latency = metrics["latency"]
    assert latency["requests"] == 5  # three answers and two timing top-ups; the warm-up is not counted
    assert latency["end_to_end"]["label"] == "measured" and latency["end_to_end"]["min"] > 0
    assert latency["decode_tokens_per_s"]["p50"] > 0
    assert {latency["projection"][name]["label"] for name in ("decode_tokens_per_s", "request_latency")} == {
        "projected"
    }
    size = metrics["model_size"]
    assert 80 < size["on_disk"]["value"] < 110 and size["on_disk"]["label"] == "measured"
    assert size["parameters"] == 134_515_008
    memory = metrics["memory"]
    assert memory["peak_rss_kernel"]["value"] > size["on_disk"]["value"] / 2
    assert memory["peak_rss_kernel"]["value"] < 2048
    assert memory["load_memory"]["label"] == "measured"

    (run,) = _runs(tmp_path)
    for name in ("run.json", "records.jsonl", "memory.jsonl", "summary.json", "report.md", "report.html"):
        assert (run / name).is_file(), name
    assert sorted(p.name for p in (run / "plots").iterdir()) == ["accuracy.png", "latency.png", "memory.png"]
    records = [json.loads(line) for line in (run / "records.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["kind"] for r in records] == ["warmup", "eval", "eval", "eval", "timing", "timing"]
    assert all(0 < r["output_tokens"] <= 16 for r in records)


def test_a_model_whose_weights_are_not_here_fails_before_any_run_folder(run_cli: RunCli, tmp_path: Path) -> None:
    """The seed's own command, offline: phi-3-mini's weights are on the hub, so one line and no half-made run."""
    result = run_cli("evaluate", "--model", "phi-3-mini", "--device", "docker-sim", "--metrics", "accuracy", "latency")
    line = result.error_line()
    assert "microsoft/Phi-3-mini-128k-instruct" in line
    assert "not available offline" in line
    assert _runs(tmp_path) == []
