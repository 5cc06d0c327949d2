"""The notebooks' reader: the results folder, its runs, benchmarks and trade-off reports as rows."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from slm_eval.errors import UserError
from slm_eval.optimize.tradeoff import COLUMNS, TradeoffRow, render_tradeoff
from slm_eval.results import notebook_data as nd

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "results"
HINTS = ("make demo", "slm-eval benchmark --model smollm2-135m-instruct", "slm-eval quantize --model all-minilm-l6-v2")


def test_the_folder_comes_from_the_environment_variable(tmp_path: Path) -> None:
    assert nd.results_dir({nd.RESULTS_ENV: str(tmp_path)}) == tmp_path
    assert nd.results_dir({nd.RESULTS_ENV: "~/somewhere"}) == Path.home() / "somewhere"


def test_a_relative_folder_in_the_variable_is_found_from_the_working_directory_or_the_root(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\n", encoding="utf-8")
    notebooks = tmp_path / "notebooks"
    (notebooks / "here").mkdir(parents=True)
    root = tmp_path.resolve()
    assert nd.results_dir({nd.RESULTS_ENV: "here"}, start=notebooks) == root / "notebooks" / "here"
    fixture = "tests/fixtures/results"
    assert nd.results_dir({nd.RESULTS_ENV: fixture}, start=notebooks) == root / fixture


def test_without_the_variable_the_folder_is_results_at_the_repository_root(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\n", encoding="utf-8")
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    assert nd.results_dir({}, start=notebooks) == tmp_path.resolve() / "results"


@pytest.mark.parametrize("make", [False, True], ids=["missing", "empty"])
def test_no_results_says_how_to_produce_them(tmp_path: Path, make: bool) -> None:
    folder = tmp_path / "results"
    if make:
        folder.mkdir()
        (folder / "unfinished-run").mkdir()  # no summary.json: not a finished run
    with pytest.raises(UserError) as error:
        nd.load_results(folder)
    message = str(error.value)
    assert str(folder) in message and "\n" not in message
    for hint in HINTS:
        assert hint in message


def test_the_fixture_holds_a_benchmark_runs_and_a_tradeoff_report() -> None:
    results = nd.load_results(FIXTURE)
    assert results.benchmarks and results.runs and results.tradeoffs
    assert not results.empty


def test_unfinished_runs_and_benchmarks_are_left_out(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE, tmp_path / "results")
    (tmp_path / "results" / "20261129-000000-benchmark-aaaaaa").mkdir()
    (tmp_path / "results" / "20261129-000000-benchmark-aaaaaa" / "benchmark-plan.json").write_text("{}")
    (tmp_path / "results" / "20261129-000000-run-bbbbbb").mkdir()
    (tmp_path / "results" / "20261129-000000-run-bbbbbb" / "run.json").write_text("{}")
    copied, original = nd.scan_results(tmp_path / "results"), nd.scan_results(FIXTURE)
    assert [p.name for p in copied.benchmarks] == [p.name for p in original.benchmarks]
    assert [run.root.name for run in copied.runs] == [run.root.name for run in original.runs]


def test_accuracy_rows_carry_the_confidence_interval_of_each_use_case_and_run() -> None:
    results = nd.load_results(FIXTURE)
    rows = nd.accuracy_rows(results)
    from_benchmarks = [row for row in rows if row["source"].startswith("benchmark")]
    from_runs = [row for row in rows if row["source"].startswith("run")]
    assert {row["use_case"] for row in from_benchmarks} >= {"document-verification", "customs-help"}
    assert len(from_runs) == len(results.runs)
    for row in rows:
        assert row["low"] <= row["mean"] <= row["high"]
        assert row["label"] == "measured"
        assert row["n"] >= 1


def test_overall_rows_hold_the_benchmark_verdicts() -> None:
    rows = nd.overall_rows(nd.load_results(FIXTURE))
    assert {row["device"] for row in rows} == {"docker-sim", "raspberry-pi-5"}
    for row in rows:
        assert row["verdict"] in ("PASS", "FAIL")
        assert row["low"] <= row["mean"] <= row["high"]


def test_device_rows_keep_measured_and_projected_latency_apart() -> None:
    rows = nd.device_rows(nd.load_results(FIXTURE))
    assert {row["device"] for row in rows} >= {"docker-sim", "raspberry-pi-5"}
    for row in rows:
        assert row["latency_p50_ms"] > 0 and row["peak_rss_mib"] > 0
        assert row["fits"] in (True, False)
        assert row["device_memory_mib"] is None if row["device"] == "host" else row["device_memory_mib"] > 0
    benchmarked = [row for row in rows if row["source"].startswith("benchmark")]
    assert all(row["projected_latency_ms"] > 0 and row["latency_budget_ms"] for row in benchmarked)
    assert {row["latency_p90_label"] for row in benchmarked} <= {"measured", "projected"}


def test_a_tradeoff_report_reads_back_as_written(tmp_path: Path) -> None:
    rows = [
        TradeoffRow("m", "gguf", "(parent)", None, 100.0, 1.0, 0.5, 1.0, "-", 20.0, None, 300.0),
        TradeoffRow("m@q4", "gguf", "llama-quantize", 4, 30.5, 0.305, 0.45, 0.9, "passed", 40.0, 12.5, None),
    ]
    written = render_tradeoff("m", rows, tmp_path / "quantize-tradeoffs" / "m")
    assert nd.read_tradeoff(written["csv"]) == rows
    assert nd.tradeoff_rows(nd.scan_results(tmp_path)) == {"m": rows}


def test_a_file_that_is_not_a_tradeoff_report_is_named(tmp_path: Path) -> None:
    path = tmp_path / "tradeoff.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(UserError, match="not a trade-off report"):
        nd.read_tradeoff(path)
    path.write_text(",".join(COLUMNS) + "\nm,gguf,x,4,big,,,,-,,,\n", encoding="utf-8")
    with pytest.raises(UserError, match="not a number"):
        nd.read_tradeoff(path)


def test_the_fixture_tradeoff_report_has_a_parent_and_variants() -> None:
    reports = nd.tradeoff_rows(nd.load_results(FIXTURE))
    assert reports
    for rows in reports.values():
        assert rows[0].method == "(parent)"
        assert all(row.size_mib and row.size_mib > 0 for row in rows)


def test_a_markdown_table_escapes_pipes_and_line_breaks() -> None:
    table = nd.markdown_table(["a", "b"], [["x|y", "one\ntwo"]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | one two |"]


def test_the_decision_memo_holds_every_section() -> None:
    memo = nd.decision_memo(nd.load_results(FIXTURE))
    for heading in ("### Verdicts", "### Best score per use case", "### Latency on each device", "### Smallest"):
        assert heading in memo
    assert "projected" in memo and "measured" in memo


def test_brief_errors_do_nothing_outside_ipython() -> None:
    nd.show_user_errors_briefly()
