"""The benchmark report from a benchmark's files: Markdown, HTML with embedded plots, CSV, and the Pareto front."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from slm_eval.evaluation.benchmark import (
    BenchmarkRequest,
    plan_benchmark,
    run_cells,
    save_plan,
    summarize_benchmark,
    write_summary,
)
from slm_eval.evaluation.summary import HostPerformanceSource
from slm_eval.results import plots
from slm_eval.results.benchmark_report import CSV_COLUMNS, render_benchmark_report
from slm_eval.results.plots import pareto_front
from tests.fake_runs import MODEL, packaged_config

PNG = b"\x89PNG\r\n\x1a\n"
WEIGHTS = {"document-verification": 0.625, "customs-help": 0.375}
REQUIREMENTS = packaged_config().benchmark.model_dump(mode="json")


def _cell_summary(size_mib: float | None, ttft: float) -> dict[str, Any]:
    return {
        "metrics": {
            "latency": {
                "end_to_end": {"p50": 800.0, "p90": 950.0},
                "time_to_first_token": {"p50": ttft},
                "decode_tokens_per_s": {"p50": 25.0},
            },
            "memory": {"peak_rss_kernel": {"value": 300.0, "unit": "MiB", "label": "measured"}},
            "model_size": {"on_disk": {"value": size_mib, "unit": "MiB", "label": "measured"}},
            "power": {"energy_per_request": {"value": 1.5, "unit": "J", "label": "estimated"}},
        },
        "task": {"parse_errors": 1},
    }


def _entry(
    model: str, overall: float | None, latencies: Sequence[float], reasons: Sequence[str] = ()
) -> dict[str, Any]:
    return {
        "model": model,
        "device": "docker-sim",
        "overall": None
        if overall is None
        else {"mean": overall, "low": overall - 0.1, "high": overall + 0.1, "confidence": 0.95, "weights": WEIGHTS},
        "verdict": {"verdict": "FAIL" if reasons else "PASS", "reasons": list(reasons), "checks": []},
        "use_cases": [
            {
                "use_case": use_case,
                "primary_score": primary,
                "mean": overall,
                "n": 4,
                "corpus": {"false_accept_rate": 0.0} if use_case == "document-verification" else {},
                "fits": overall is not None,
                "latency_p90_ms": latency,
                "latency_label": "projected",
                "valid": True,
                "run": f"{model}/docker-sim/{use_case}",
            }
            for (use_case, primary), latency in zip(
                [("document-verification", "decision"), ("customs-help", "score")], latencies, strict=True
            )
        ],
    }


def _write_benchmark(root: Path, sizes: dict[str, float | None]) -> dict[str, Any]:
    """Three models on docker-sim (small and fast, big and good, one dominated) and one that did not fit."""
    entries = [
        _entry("small", 0.6, [1000.0, 3000.0], ["customs-help: score at least 0.6, got 0.5"]),
        _entry("big", 0.8, [4000.0, 6000.0]),
        _entry("mid", 0.5, [2000.0, 4000.0], ["overall: overall score 0.7, got 0.5"]),
        _entry("huge", None, [None, None], ["document-verification: does not fit (out of memory)"]),  # type: ignore[list-item]
    ]
    summary = {
        "benchmark_id": "20260101-000000-benchmark-abcdef",
        "models": [e["model"] for e in entries],
        "devices": ["docker-sim"],
        "use_cases": list(WEIGHTS),
        "limit": 4,
        "seed": 0,
        "prefix_cache": True,
        "requirements": REQUIREMENTS,
        "results": entries,
    }
    for entry in entries:
        for use_case in entry["use_cases"]:
            folder = root / use_case["run"]
            folder.mkdir(parents=True)
            ttft = 100.0 if use_case["use_case"] == "document-verification" else 200.0
            (folder / "summary.json").write_text(json.dumps(_cell_summary(sizes[entry["model"]], ttft)))
    (root / "benchmark.json").write_text(json.dumps(summary), encoding="utf-8")
    return summary


SIZES: dict[str, float | None] = {"small": 100.0, "big": 2000.0, "mid": 500.0, "huge": None}


def test_every_report_file_is_written(tmp_path: Path) -> None:
    _write_benchmark(tmp_path, SIZES)
    markdown, page, table = render_benchmark_report(tmp_path)
    assert (markdown, page, table) == (tmp_path / "report.md", tmp_path / "report.html", tmp_path / "results.csv")
    for name in ("accuracy_latency.png", "accuracy_size.png"):
        assert (tmp_path / "plots" / name).read_bytes().startswith(PNG)

    text = markdown.read_text(encoding="utf-8")
    assert "## Verdicts" in text
    assert "limit 4 per use case, seed 0, prompt-prefix KV cache reused" in text
    assert "| small | docker-sim | 0.6 (0.5 - 0.7) | FAIL | customs-help: score at least 0.6, got 0.5 |" in text
    assert "| big | docker-sim | 0.8 (0.7 - 0.9) | PASS | all checks met |" in text
    assert "| huge | docker-sim | n/a | FAIL | document-verification: does not fit (out of memory) |" in text
    assert "### small on docker-sim" in text
    (row,) = [line for line in text.splitlines() if line.startswith("| document-verification | decision 0.6 (n=4) |")]
    assert "| 0.9 |" in row and "| 1000 (projected) |" in row and "| 2000 |" in row  # score, p90, its budget
    assert "| 800 |" in row  # the measured p50
    assert "false_accept_rate 0" in text
    assert "![accuracy_latency](plots/accuracy_latency.png)" in text
    assert "![accuracy_size](plots/accuracy_size.png)" in text

    html = page.read_text(encoding="utf-8")
    assert html.count("src='data:image/png;base64,") == 2  # embedded, not linked
    assert "plots/accuracy_latency.png" not in html
    assert "all checks met" in html


def test_results_csv_has_one_row_per_model_device_and_use_case(tmp_path: Path) -> None:
    _write_benchmark(tmp_path, SIZES)
    render_benchmark_report(tmp_path)
    with (tmp_path / "results.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
    assert [(r["model"], r["device"], r["use_case"]) for r in rows] == [
        (model, "docker-sim", use_case) for model in ("small", "big", "mid", "huge") for use_case in WEIGHTS
    ]
    first = rows[0]
    assert first["primary_score"] == "decision" and float(first["mean"]) == 0.6 and first["n"] == "4"
    assert float(first["latency_p90_ms"]) == 1000.0 and first["latency_label"] == "projected"
    assert float(first["ttft_p50_ms"]) == 100.0 and float(rows[1]["ttft_p50_ms"]) == 200.0
    assert float(first["decode_tokens_per_s_p50"]) == 25.0
    assert float(first["peak_rss_mib"]) == 300.0 and float(first["model_size_mib"]) == 100.0
    assert float(first["energy_per_request_j"]) == 1.5 and first["energy_label"] == "estimated"
    assert first["parse_errors"] == "1" and first["valid"] == "True" and first["verdict"] == "FAIL"
    assert rows[2]["verdict"] == "PASS"
    assert rows[-1]["latency_p90_ms"] == "" and rows[-1]["fits"] == "False"


def test_the_plots_get_the_weighted_latency_the_size_and_the_overall_score(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[list[str], list[float], list[float], str, str]] = []
    original = plots.tradeoff_plot

    def spy(labels: Sequence[str], x: Sequence[float], y: Sequence[float], x_label: str, title: str, path: Path) -> Any:
        calls.append((list(labels), list(x), list(y), x_label, path.name))
        return original(labels, x, y, x_label, title, path)

    monkeypatch.setattr(plots, "tradeoff_plot", spy)
    _write_benchmark(tmp_path, SIZES)
    render_benchmark_report(tmp_path)
    (latency_labels, latency, latency_score, latency_axis, latency_file) = calls[0]
    (size_labels, size, size_score, size_axis, size_file) = calls[1]
    # "huge" did not fit: no overall score, so no point
    assert latency_labels == size_labels == ["small@docker-sim", "big@docker-sim", "mid@docker-sim"]
    # weighted p90: 0.625 x document check + 0.375 x customs answer, in the unit the axis names
    weighted_ms = [0.625 * 1000 + 0.375 * 3000, 0.625 * 4000 + 0.375 * 6000, 0.625 * 2000 + 0.375 * 4000]
    assert latency_axis.endswith(("(ms)", "(s)"))
    scale = 1000 if latency_axis.endswith("(s)") else 1
    assert latency == pytest.approx([value / scale for value in weighted_ms])
    assert size_axis == "model size on disk (MiB)"
    assert size == [100.0, 2000.0, 500.0]
    assert latency_score == size_score == [0.6, 0.8, 0.5]
    assert (latency_file, size_file) == ("accuracy_latency.png", "accuracy_size.png")
    assert pareto_front(list(zip(latency, latency_score, strict=True))) == [0, 1]  # "mid" is dominated


def test_accuracy_against_latency_is_drawn_without_a_model_size(tmp_path: Path) -> None:
    _write_benchmark(tmp_path, {"small": None, "big": None, "mid": None, "huge": None})
    render_benchmark_report(tmp_path)
    assert (tmp_path / "plots" / "accuracy_latency.png").is_file()
    assert not (tmp_path / "plots" / "accuracy_size.png").exists()


def test_a_fake_benchmark_renders_md_html_and_csv(tmp_path: Path) -> None:
    config = packaged_config()
    request = BenchmarkRequest(
        models=(MODEL,),
        devices=("docker-sim", "host"),
        use_cases=("document-verification", "customs-help"),
        limit=2,
        seed=0,
        robustness=False,
        threads=None,
        context_length=2048,
        backend="fake",
    )
    benchmark_id, cells = plan_benchmark(request, config)
    root = tmp_path / benchmark_id
    root.mkdir()
    save_plan(root, cells, config)
    run_cells(root, cells, tmp_path / "cache", host=HostPerformanceSource(20.0, 100.0))
    write_summary(root, summarize_benchmark(benchmark_id, root, cells, config.benchmark))
    markdown, page, table = render_benchmark_report(root)
    text = markdown.read_text(encoding="utf-8")
    for part in (benchmark_id, f"{MODEL} on docker-sim", f"{MODEL} on host", "scripted, not projected", "FAIL"):
        assert part in text
    assert "<table>" in page.read_text(encoding="utf-8")
    with table.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["device"], r["use_case"]) for r in rows] == [
        ("docker-sim", "document-verification"),
        ("docker-sim", "customs-help"),
        ("host", "document-verification"),
        ("host", "customs-help"),
    ]
    assert [r["parse_errors"] for r in rows] == ["2", "0", "2", "0"]
    assert {r["latency_label"] for r in rows} == {"scripted", "scripted, not projected"}


# --- the Pareto front ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("points", "front"),
    [
        ([], []),
        ([(5.0, 0.5)], [0]),
        ([(1.0, 0.5), (2.0, 0.7), (3.0, 0.6), (0.5, 0.2), (2.0, 0.4)], [3, 0, 1]),
        ([(3.0, 0.9), (1.0, 0.9)], [1]),  # same score, lower cost wins
        ([(1.0, 0.4), (1.0, 0.8)], [1]),  # same cost, higher score wins
        ([(1.0, 0.5), (1.0, 0.5)], [0]),  # a tie keeps one point
        ([(4.0, 0.9), (3.0, 0.8), (2.0, 0.7), (1.0, 0.6)], [3, 2, 1, 0]),  # every point a trade-off
        ([(1.0, 0.9), (2.0, 0.8), (3.0, 0.1)], [0]),  # one point beats all
    ],
)
def test_pareto_front(points: list[tuple[float, float]], front: list[int]) -> None:
    assert pareto_front(points) == front
