"""What the notebooks read: the runs, benchmarks and trade-off reports under ``results/``, as plain rows.

Every row comes from files the runs wrote (``summary.json``, ``benchmark.json``, ``tradeoff.csv``) through
the readers in :mod:`slm_eval.results.records`, :mod:`slm_eval.results.report` and
:mod:`slm_eval.results.benchmark_report`; nothing here measures or estimates a new figure, and each figure
keeps the label (``measured``, ``estimated``, ``projected``) its run gave it.

The folder comes from the environment variable ``SLM_EVAL_RESULTS`` when set, and otherwise is
``results/`` at the repository root (the nearest folder above the working directory that holds a
``pyproject.toml``), so a notebook finds it whether it runs from ``notebooks/`` or the root.

Example:
    SLM_EVAL_RESULTS=results jupyter nbconvert --execute --to notebook notebooks/model_comparison.ipynb
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slm_eval.errors import UserError
from slm_eval.optimize.tradeoff import COLUMNS, TradeoffRow
from slm_eval.results.benchmark_report import cell_figures
from slm_eval.results.records import RUN_FILE, SUMMARY_FILE, RunPaths, read_json
from slm_eval.results.report import comparison_rows

RESULTS_ENV = "SLM_EVAL_RESULTS"
BENCHMARK_FILE = "benchmark.json"
TRADEOFFS_DIR = "quantize-tradeoffs"
TRADEOFF_FILE = "tradeoff.csv"
PRODUCE_RESULTS = (
    "produce results with `make demo`, or `slm-eval benchmark --model smollm2-135m-instruct --device docker-sim "
    "--limit 5`, or `slm-eval quantize --model all-minilm-l6-v2 --sweep`"
)
PRODUCE_TRADEOFFS = (
    "no quantization trade-off reports (results/quantize-tradeoffs/<model>/tradeoff.csv) yet: produce one with "
    "`slm-eval quantize --model all-minilm-l6-v2 --sweep`"
)


@dataclass(frozen=True)
class ResultsFolder:
    """The finished runs, benchmarks and trade-off reports found in one results folder."""

    root: Path
    runs: tuple[RunPaths, ...]
    benchmarks: tuple[Path, ...]
    tradeoffs: tuple[Path, ...]

    @property
    def empty(self) -> bool:
        """Whether the folder holds nothing a notebook can show."""
        return not (self.runs or self.benchmarks or self.tradeoffs)


def results_dir(environ: Mapping[str, str] | None = None, start: Path | None = None) -> Path:
    """The results folder: ``$SLM_EVAL_RESULTS``, else ``results/`` at the repository root.

    A relative ``$SLM_EVAL_RESULTS`` is taken from the working directory when it exists there, and from the
    repository root otherwise (a notebook's kernel runs in ``notebooks/``, not where it was launched).

    Args:
        environ: the environment to read (default: ``os.environ``).
        start: where to start looking for the repository root (default: the working directory).
    """
    env = os.environ if environ is None else environ
    here = (start or Path.cwd()).resolve()
    root = next((folder for folder in (here, *here.parents) if (folder / "pyproject.toml").is_file()), here)
    given = env.get(RESULTS_ENV)
    if not given:
        return root / "results"
    path = Path(given).expanduser()
    if path.is_absolute() or (here / path).exists():
        return here / path
    return root / path


def scan_results(root: Path) -> ResultsFolder:
    """Every finished evaluation run, benchmark and trade-off report directly under ``root``.

    Unfinished runs (no ``summary.json``) and benchmarks (no ``benchmark.json``) are left out.
    """
    runs: list[RunPaths] = []
    benchmarks: list[Path] = []
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    for folder in folders:
        if (folder / BENCHMARK_FILE).is_file():
            benchmarks.append(folder)
        elif (folder / SUMMARY_FILE).is_file() and (folder / RUN_FILE).is_file():
            runs.append(RunPaths(folder))
    tradeoffs = sorted((root / TRADEOFFS_DIR).glob(f"*/{TRADEOFF_FILE}"))
    return ResultsFolder(root, tuple(runs), tuple(benchmarks), tuple(tradeoffs))


def load_results(root: Path | None = None) -> ResultsFolder:
    """The results a notebook shows, from ``root`` (default: :func:`results_dir`).

    Raises:
        UserError: the folder is missing or holds no finished results; the message says how to produce them.
    """
    folder = root if root is not None else results_dir()
    if not folder.is_dir():
        raise UserError(f"no results folder {folder}: {PRODUCE_RESULTS} (or set {RESULTS_ENV} to another folder)")
    found = scan_results(folder)
    if found.empty:
        raise UserError(f"{folder} holds no finished results: {PRODUCE_RESULTS} (or set {RESULTS_ENV})")
    return found


def _summaries(results: ResultsFolder) -> list[dict[str, Any]]:
    return [read_json(run.summary) for run in results.runs]


def _benchmark_cells(results: ResultsFolder) -> list[tuple[Path, dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(benchmark folder, benchmark.json, entry, use case) for every cell of every benchmark."""
    cells = []
    for root in results.benchmarks:
        summary = read_json(root / BENCHMARK_FILE)
        for entry in summary.get("results", []):
            for use_case in entry.get("use_cases", []):
                cells.append((root, summary, entry, use_case))
    return cells


def accuracy_rows(results: ResultsFolder) -> list[dict[str, Any]]:
    """Each use case's primary score with its confidence interval, per model and device.

    Benchmark cells give one row per use case; each evaluation run gives one row for its task, scored
    by its first accuracy score. Keys: model, device, use_case, score, mean, low, high, confidence, n,
    label, source.
    """
    rows: list[dict[str, Any]] = []
    for root, _, entry, use_case in _benchmark_cells(results):
        cell = read_json(root / use_case["run"] / SUMMARY_FILE)
        interval = cell.get("metrics", {}).get("accuracy", {}).get(use_case["primary_score"], {})
        rows.append(
            {
                "model": entry["model"],
                "device": entry["device"],
                "use_case": use_case["use_case"],
                "score": use_case["primary_score"],
                "mean": use_case["mean"],
                "low": interval.get("low"),
                "high": interval.get("high"),
                "confidence": interval.get("confidence"),
                "n": use_case["n"],
                "label": interval.get("label", "measured"),
                "source": f"benchmark {root.name}",
            }
        )
    summaries = _summaries(results)
    for summary, flat in zip(summaries, comparison_rows(summaries), strict=True):
        interval = summary.get("metrics", {}).get("accuracy", {}).get(flat["score"]) or {}
        rows.append(
            {
                "model": flat["model"],
                "device": flat["device"],
                "use_case": summary.get("task", {}).get("name"),
                "score": flat["score"],
                "mean": flat["score_mean"],
                "low": flat["score_low"],
                "high": flat["score_high"],
                "confidence": interval.get("confidence"),
                "n": interval.get("n"),
                "label": interval.get("label", "measured"),
                "source": f"run {flat['run_id']}",
            }
        )
    return rows


def overall_rows(results: ResultsFolder) -> list[dict[str, Any]]:
    """The overall (weighted) score, its confidence interval and the verdict of each benchmarked model and device.

    Keys: model, device, mean, low, high, confidence, verdict, reasons, benchmark.
    """
    rows = []
    for root in results.benchmarks:
        summary = read_json(root / BENCHMARK_FILE)
        for entry in summary.get("results", []):
            overall = entry.get("overall") or {}
            verdict = entry.get("verdict") or {}
            rows.append(
                {
                    "model": entry["model"],
                    "device": entry["device"],
                    "mean": overall.get("mean"),
                    "low": overall.get("low"),
                    "high": overall.get("high"),
                    "confidence": overall.get("confidence"),
                    "verdict": verdict.get("verdict", "n/a"),
                    "reasons": list(verdict.get("reasons", [])),
                    "benchmark": root.name,
                }
            )
    return rows


def device_rows(results: ResultsFolder) -> list[dict[str, Any]]:
    """Latency and memory of each model on each device profile, measured and projected, and whether it fits.

    ``latency_p50_ms`` and ``peak_rss_mib`` are measured on this host inside the profile's limits;
    ``projected_latency_ms`` and ``projected_decode_tps`` are the roofline projection to the profile;
    ``latency_p90_ms`` is labelled by ``latency_p90_label``. Keys also: model, device, use_case,
    device_memory_mib, latency_budget_ms, model_size_mib, decode_tps, fits, fit_reason, source.
    """
    rows = []
    for root, benchmark, entry, use_case in _benchmark_cells(results):
        figures = cell_figures(root, entry, use_case)
        cell = read_json(root / use_case["run"] / SUMMARY_FILE)
        budget = benchmark.get("requirements", {}).get("use_cases", {}).get(use_case["use_case"], {})
        rows.append(
            _device_row(cell, use_case["use_case"], f"benchmark {root.name}")
            | {
                "latency_p90_ms": figures["latency_p90_ms"],
                "latency_p90_label": figures["latency_label"],
                "latency_budget_ms": budget.get("latency_p90_ms"),
            }
        )
    for summary in _summaries(results):
        row = _device_row(summary, summary.get("task", {}).get("name"), f"run {summary.get('run_id')}")
        end_to_end = summary.get("metrics", {}).get("latency", {}).get("end_to_end") or {}
        rows.append(row | {"latency_p90_ms": end_to_end.get("p90"), "latency_p90_label": end_to_end.get("label")})
    return rows


def _device_row(summary: Mapping[str, Any], use_case: object, source: str) -> dict[str, Any]:
    metrics = summary.get("metrics", {})
    latency = metrics.get("latency", {})
    projection = latency.get("projection") or {}
    device = summary.get("device", {})
    fits = summary.get("fits", {})
    return {
        "model": summary.get("model", {}).get("name"),
        "device": device.get("profile", {}).get("name"),
        "use_case": use_case,
        "latency_p50_ms": (latency.get("end_to_end") or {}).get("p50"),
        "projected_latency_ms": (projection.get("request_latency") or {}).get("value"),
        "decode_tps": (latency.get("decode_tokens_per_s") or {}).get("p50"),
        "projected_decode_tps": (projection.get("decode_tokens_per_s") or {}).get("value"),
        "peak_rss_mib": (metrics.get("memory", {}).get("peak_rss_kernel") or {}).get("value"),
        "device_memory_mib": device.get("profile", {}).get("memory_mib"),
        "model_size_mib": (metrics.get("model_size", {}).get("on_disk") or {}).get("value"),
        "fits": fits.get("fits"),
        "fit_reason": fits.get("reason"),
        "latency_budget_ms": None,
        "source": source,
    }


def read_tradeoff(path: Path) -> list[TradeoffRow]:
    """The rows of one ``tradeoff.csv`` as written by :func:`slm_eval.optimize.tradeoff.render_tradeoff`.

    Raises:
        UserError: the file is unreadable or its header is not the trade-off report's.
    """
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) != COLUMNS:
                raise UserError(f"{path} is not a trade-off report: expected the columns {', '.join(COLUMNS)}")
            return [_tradeoff_row(line) for line in reader]
    except OSError as exc:
        raise UserError(f"cannot read trade-off report {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise UserError(f"{path} holds a figure that is not a number: {exc}") from exc


def _tradeoff_row(line: Mapping[str, str]) -> TradeoffRow:
    def number(name: str) -> float | None:
        text = line.get(name) or ""
        return float(text) if text.strip() else None

    bits = number("bits")
    return TradeoffRow(
        variant=line["variant"],
        format=line["format"],
        method=line["method"],
        bits=int(bits) if bits is not None else None,
        size_mib=number("size_mib"),
        size_vs_parent=number("size_vs_parent"),
        score=number("score"),
        relative_score=number("relative_score"),
        gate=line["gate"],
        decode_tokens_per_s=number("decode_tokens_per_s"),
        latency_p50_ms=number("latency_p50_ms"),
        peak_memory_mib=number("peak_memory_mib"),
    )


def tradeoff_rows(results: ResultsFolder) -> dict[str, list[TradeoffRow]]:
    """Each quantized model's trade-off rows (parent first, then variants smallest first), by model name."""
    return {path.parent.name: read_tradeoff(path) for path in results.tradeoffs}


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; ``|`` and line breaks inside cells are escaped so the table stays whole."""

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def show_user_errors_briefly() -> None:
    """In IPython, show a :class:`UserError` as its one-line message instead of a traceback.

    The cell still fails, so "run all" stops there rather than deep inside a plot. Outside IPython this
    does nothing.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return

    def brief(shell: Any, kind: type[BaseException], value: BaseException, tb: Any, tb_offset: Any = None) -> Any:
        message = [f"{kind.__name__}: {value}"]
        print(message[0])
        return message

    shell.set_custom_exc((UserError,), brief)


def decision_memo(results: ResultsFolder) -> str:
    """A one-page Markdown summary for a decision memo: verdicts, scores, fit on each device, quantization."""
    from slm_eval.results.report import fmt

    parts = [
        "## Small language models on edge devices: evaluation summary",
        f"From `{results.root}`: {len(results.benchmarks)} benchmark(s), {len(results.runs)} evaluation run(s), "
        f"{len(results.tradeoffs)} quantization trade-off report(s).",
    ]
    overall = overall_rows(results)
    devices = device_rows(results)
    if overall:
        table = []
        for row in overall:
            mine = [d for d in devices if d["model"] == row["model"] and d["device"] == row["device"]]
            fits = all(d["fits"] for d in mine) if mine else None
            peak = max((d["peak_rss_mib"] for d in mine if d["peak_rss_mib"] is not None), default=None)
            table.append(
                [
                    row["model"],
                    row["device"],
                    f"{fmt(row['mean'])} ({fmt(row['low'])}-{fmt(row['high'])})",
                    row["verdict"],
                    f"{fmt(fits)} ({fmt(peak)} of {fmt(mine[0]['device_memory_mib'] if mine else None)} MiB)",
                    len(row["reasons"]),
                ]
            )
        parts += ["### Verdicts", markdown_table(
            ["model", "device", "overall score (95% CI)", "verdict", "fits in memory (peak)", "unmet checks"], table
        )]  # fmt: skip
    accuracy = accuracy_rows(results)
    if accuracy:
        best: dict[str, dict[str, Any]] = {}
        for row in accuracy:
            known = best.get(str(row["use_case"]))
            if row["mean"] is not None and (known is None or row["mean"] > known["mean"]):
                best[str(row["use_case"])] = row
        parts += ["### Best score per use case", markdown_table(
            ["use case", "model", "device", "score (95% CI)", "n"],
            [[uc, r["model"], r["device"], f"{r['score']} {fmt(r['mean'])} ({fmt(r['low'])}-{fmt(r['high'])})",
              r["n"]] for uc, r in best.items()],
        )]  # fmt: skip
    if devices:
        parts += ["### Latency on each device", markdown_table(
            ["model", "device", "use case", "p50 ms (measured)", "projected ms", "p90 ms", "budget ms"],
            [[d["model"], d["device"], d["use_case"], fmt(d["latency_p50_ms"]), fmt(d["projected_latency_ms"]),
              f"{fmt(d['latency_p90_ms'])} ({d['latency_p90_label'] or 'n/a'})", fmt(d["latency_budget_ms"])]
             for d in devices],
        )]  # fmt: skip
    quantized = []
    for model, rows in tradeoff_rows(results).items():
        passed = [r for r in rows if r.gate == "passed" and r.size_mib is not None]
        smallest = min(passed, key=lambda r: r.size_mib or 0.0) if passed else None
        if smallest is None:
            quantized.append([model, "none passed the accuracy gate", "", "", ""])
            continue
        figures = (smallest.size_mib, smallest.size_vs_parent, smallest.relative_score)
        quantized.append([model, smallest.variant, *(fmt(value) for value in figures)])
    if quantized:
        parts += ["### Smallest quantized variant that keeps accuracy", markdown_table(
            ["model", "variant", "size MiB (measured)", "size vs parent", "score vs parent"], quantized
        )]  # fmt: skip
    parts.append(
        "Scores are measured on the evaluation examples, with bootstrap confidence intervals. Latency and memory "
        "are measured on this host inside each device profile's limits; latency on other profiles is projected "
        "with a roofline model, and each latency says which. Sizes are measured on disk."
    )
    return "\n\n".join(parts)
