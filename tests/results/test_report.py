"""Reports rendered from a run's files only: Markdown, HTML with plots, and a comparison of runs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from slm_eval.evaluation.evaluate import EvaluateOutcome
from slm_eval.results.document import Document, Heading, Image, Paragraph
from slm_eval.results.records import RunPaths, read_json
from slm_eval.results.report import comparison_rows, fmt, render_comparison, render_run_report
from tests.fake_runs import config_with_profile, run_fake


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="module")
def docker_run(results: Path) -> EvaluateOutcome:
    return run_fake(results, limit=4)


@pytest.fixture(scope="module")
def host_run(results: Path) -> EvaluateOutcome:
    return run_fake(results, device="host", limit=3, metrics=["accuracy", "latency", "power"])


def test_a_run_report_in_markdown_and_html_with_plots(docker_run: EvaluateOutcome) -> None:
    markdown, page = render_run_report(docker_run.paths)
    assert (markdown, page) == (docker_run.paths.root / "report.md", docker_run.paths.root / "report.html")
    plots = docker_run.paths.plots
    assert sorted(p.name for p in plots.iterdir()) == ["accuracy.png", "latency.png", "memory.png"]
    for plot in plots.iterdir():
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = markdown.read_text(encoding="utf-8")
    assert text.startswith("# smollm2-135m-instruct on docker-sim\n")
    for heading in ("## Verdict", "## Accuracy", "## Latency", "## Robustness", "## Memory, size, time and power",
                    "## Plots", "## How it was measured"):  # fmt: skip
        assert heading in text
    for name in ("latency", "accuracy", "memory"):
        assert f"![{name}](plots/{name}.png)" in text
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>")
    assert html.count("src='data:image/png;base64,") == 3  # self-contained: the plots are embedded
    assert "<h2>Verdict</h2>" in html


def test_the_report_shows_the_summary_figures_with_their_labels(docker_run: EvaluateOutcome) -> None:
    markdown, _ = render_run_report(docker_run.paths)
    text = markdown.read_text(encoding="utf-8")
    summary = docker_run.summary
    f1 = summary["metrics"]["accuracy"]["f1"]
    assert f"| f1 | {fmt(f1['mean'])} | {fmt(f1['low'])} - {fmt(f1['high'])} | {f1['n']} | measured |" in text
    power = summary["metrics"]["power"]["energy_per_request"]
    assert f"| energy per request | {fmt(power['value'])} | J | estimated |" in text
    assert "| fits the device | true |" in text
    e2e = summary["metrics"]["latency"]["end_to_end"]
    assert f"| end to end | {fmt(e2e['p50'])} | {fmt(e2e['p90'])} |" in text
    assert f"{summary['metrics']['latency']['requests']} timed requests (warm-up excluded)." in text
    for name in summary["metrics"]["robustness"]["perturbations"]:
        assert f"| {name} |" in text


def test_rendering_again_gives_the_same_report(docker_run: EvaluateOutcome) -> None:
    markdown, _ = render_run_report(docker_run.paths)
    first = markdown.read_text(encoding="utf-8")
    summary_before = docker_run.paths.summary.read_bytes()
    markdown, _ = render_run_report(docker_run.paths)
    assert markdown.read_text(encoding="utf-8") == first
    assert docker_run.paths.summary.read_bytes() == summary_before  # a report never rewrites the summary


def test_a_run_that_does_not_fit_still_gets_a_report(tmp_path: Path) -> None:
    config = config_with_profile("tiny-box", cores=1, memory_mib=64)
    outcome = run_fake(
        tmp_path, config=config, device="tiny-box", backend="llamacpp", metrics=["accuracy", "model_size"]
    )
    markdown, page = render_run_report(outcome.paths)
    text = markdown.read_text(encoding="utf-8")
    assert "| fits the device | false | the weights alone take" in text
    assert "## Plots" not in text
    assert "| model size on disk |" in text
    assert page.is_file()


def test_a_comparison_of_two_runs(docker_run: EvaluateOutcome, host_run: EvaluateOutcome, tmp_path: Path) -> None:
    out = tmp_path / "compare"
    markdown, page, table = render_comparison([docker_run.paths, host_run.paths], out)
    assert (markdown.name, page.name, table.name) == ("comparison.md", "comparison.html", "comparison.csv")
    assert (out / "comparison.png").is_file()
    with table.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["run_id"] for row in rows] == [docker_run.summary["run_id"], host_run.summary["run_id"]]
    assert [row["device"] for row in rows] == ["docker-sim", "host"]
    assert rows[0]["energy_label"] == "estimated"
    assert rows[0]["fits"] == "True"
    assert float(rows[0]["score_mean"]) == pytest.approx(docker_run.summary["metrics"]["accuracy"]["f1"]["mean"])
    assert rows[1]["peak_rss_mib"] == ""  # the host run did not ask for memory: no figure, not a zero
    text = markdown.read_text(encoding="utf-8")
    assert text.startswith("# Comparison of 2 runs")
    assert docker_run.summary["run_id"] in text and host_run.summary["run_id"] in text
    assert "![comparison](comparison.png)" in text
    assert "data:image/png;base64," in page.read_text(encoding="utf-8")


def test_comparison_rows_come_from_summaries_only(docker_run: EvaluateOutcome) -> None:
    (row,) = comparison_rows([read_json(docker_run.paths.summary)])
    metrics = docker_run.summary["metrics"]
    assert row["model"] == "smollm2-135m-instruct" and row["device"] == "docker-sim"
    assert row["score"] == "f1"
    assert row["ttft_p50_ms"] == metrics["latency"]["time_to_first_token"]["p50"]
    assert row["energy_per_request_j"] == metrics["power"]["energy_per_request"]["value"]
    assert row["valid"] == docker_run.summary["validity"]["valid"]


def test_an_api_run_beside_device_runs_is_marked_not_comparable(docker_run: EvaluateOutcome, tmp_path: Path) -> None:
    """A remote API's latency includes the network: the comparison says so in the table, the CSV and a note."""
    import json
    import shutil

    remote = tmp_path / "remote-run"
    shutil.copytree(docker_run.paths.root, remote)
    summary = read_json(RunPaths(remote).summary)
    summary["run_id"] = "remote-run"
    summary["model"]["kind"] = "api"
    (remote / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    markdown, _, table = render_comparison([docker_run.paths, RunPaths(remote)], tmp_path / "compare")
    with table.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["measured_where"] for row in rows] == ["on this host", "over the network"]
    text = markdown.read_text(encoding="utf-8")
    assert "Not comparable: the latency of remote-run was measured over the network" in text


def test_a_run_without_summary_cannot_be_reported(tmp_path: Path) -> None:
    from slm_eval.errors import UserError

    (tmp_path / "run.json").write_text("{}", encoding="utf-8")
    with pytest.raises(UserError, match="cannot read"):
        render_run_report(RunPaths(tmp_path))


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "n/a"), (True, "true"), (False, "false"), (0.123456, "0.123"), (12345.67, "12346"), (7, "7"), ("x", "x")],
)
def test_fmt(value: object, text: str) -> None:
    assert fmt(value) == text


def test_documents_escape_their_text(tmp_path: Path) -> None:
    doc = Document("a <b> & c")
    doc.add(Heading("one | two"), Paragraph("<script>"))
    doc.table(["k", "v"], [["a|b", None]])
    markdown = doc.to_markdown(tmp_path)
    assert "| a\\|b | n/a |" in markdown
    html = doc.to_html()
    assert "<title>a &lt;b&gt; &amp; c</title>" in html
    assert "<p>&lt;script&gt;</p>" in html and "<script>" not in html
    image = tmp_path / "plots" / "x.png"
    image.parent.mkdir()
    image.write_bytes(b"\x89PNG")
    doc.add(Image(image, "x"))
    assert "![x](plots/x.png)" in doc.to_markdown(tmp_path)
