"""The benchmark report: verdicts, the overall score, each use case's quality and cost, and trade-off plots.

Rendered from ``benchmark.json`` and the cells' own ``summary.json`` files; it computes nothing new.
Writes ``report.md``, ``report.html`` (plots embedded) and ``results.csv`` into the benchmark folder.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from slm_eval.results.document import Document, Heading, Image, Paragraph
from slm_eval.results.records import read_json
from slm_eval.results.report import fmt

CSV_COLUMNS = (
    "model", "device", "use_case", "primary_score", "mean", "n", "fits", "latency_p50_ms", "latency_p90_ms",
    "latency_label", "ttft_p50_ms", "decode_tokens_per_s_p50", "peak_rss_mib", "model_size_mib", "energy_per_request_j",
    "energy_label", "parse_errors", "valid", "verdict",
)  # fmt: skip


def cell_figures(root: Path, entry: Mapping[str, Any], use_case: Mapping[str, Any]) -> dict[str, Any]:
    """One row: the use case's scores from ``benchmark.json`` and its costs from the cell's summary."""
    summary = read_json(root / use_case["run"] / "summary.json")
    metrics = summary.get("metrics", {})
    latency = metrics.get("latency", {})
    power = metrics.get("power", {})
    energy = power.get("energy_per_request") or {}
    return {
        "model": entry["model"],
        "device": entry["device"],
        "use_case": use_case["use_case"],
        "primary_score": use_case["primary_score"],
        "mean": use_case["mean"],
        "n": use_case["n"],
        "fits": use_case["fits"],
        "latency_p90_ms": use_case["latency_p90_ms"],
        "latency_label": use_case["latency_label"],
        "latency_p50_ms": (latency.get("end_to_end") or {}).get("p50"),
        "ttft_p50_ms": (latency.get("time_to_first_token") or {}).get("p50"),
        "decode_tokens_per_s_p50": (latency.get("decode_tokens_per_s") or {}).get("p50"),
        "peak_rss_mib": (metrics.get("memory", {}).get("peak_rss_kernel") or {}).get("value"),
        "model_size_mib": (metrics.get("model_size", {}).get("on_disk") or {}).get("value"),
        "energy_per_request_j": energy.get("value"),
        "energy_label": energy.get("label"),
        "parse_errors": summary.get("task", {}).get("parse_errors"),
        "corpus": use_case.get("corpus", {}),
        "robustness": metrics.get("robustness", {}),
        "valid": use_case["valid"],
        "verdict": entry["verdict"]["verdict"],
    }


def render_benchmark_report(root: Path) -> tuple[Path, Path, Path]:
    """Write the report files of the benchmark in ``root``; returns (markdown, html, csv)."""

    summary = read_json(root / "benchmark.json")
    rows = [cell_figures(root, entry, uc) for entry in summary["results"] for uc in entry["use_cases"]]
    requirements = summary.get("requirements", {}).get("use_cases", {})
    doc = Document("Border-control benchmark")
    doc.add(
        Paragraph(
            f"Benchmark {summary['benchmark_id']}: models {', '.join(summary['models'])}; devices "
            f"{', '.join(summary['devices'])}; use cases {', '.join(summary['use_cases'])}; "
            f"limit {summary['limit'] or 'none'} per use case, seed {summary['seed']}, prompt-prefix KV cache "
            f"{'reused' if summary.get('prefix_cache') else 'not reused'}."
        )
    )
    doc.add(Heading("Verdicts"))
    doc.table(
        ["model", "device", "overall score (95% CI)", "verdict", "reasons"],
        [
            [
                entry["model"],
                entry["device"],
                _overall_text(entry.get("overall")),
                entry["verdict"]["verdict"],
                "; ".join(entry["verdict"]["reasons"]) or "all checks met",
            ]
            for entry in summary["results"]
        ],
    )
    for entry in summary["results"]:
        doc.add(Heading(f"{entry['model']} on {entry['device']}", 3))
        doc.table(
            [
                "use case",
                "score",
                "required",
                "p50 latency ms (measured)",
                "p90 latency ms",
                "budget ms",
                "decode tok/s",
                "peak MiB",
                "size MiB",
                "energy/request J",
                "parse errors",
                "corpus figures",
            ],
            [
                [
                    row["use_case"],
                    f"{row['primary_score']} {fmt(row['mean'])} (n={row['n']})",
                    fmt(requirements.get(row["use_case"], {}).get("min_score")),
                    fmt(row["latency_p50_ms"]),
                    f"{fmt(row['latency_p90_ms'])} ({row['latency_label']})",
                    fmt(requirements.get(row["use_case"], {}).get("latency_p90_ms")),
                    fmt(row["decode_tokens_per_s_p50"]),
                    fmt(row["peak_rss_mib"]),
                    fmt(row["model_size_mib"]),
                    f"{fmt(row['energy_per_request_j'])} ({row['energy_label'] or 'n/a'})",
                    fmt(row["parse_errors"]),
                    ", ".join(f"{k} {fmt(v)}" for k, v in row["corpus"].items()) or "-",
                ]
                for row in rows
                if row["model"] == entry["model"] and row["device"] == entry["device"]
            ],
        )
    _robustness(doc, rows)
    images = _tradeoff_plots(summary, rows, root)
    if images:
        doc.add(Heading("Trade-offs"))
        doc.add(*(Image(image, image.stem) for image in images))
    doc.add(
        Paragraph(
            "Latency is measured on the host profile and projected to other profiles with the roofline model "
            "(docs/projection.md); energy is measured where a RAPL or NVML counter is readable and estimated from "
            "the profile's power model otherwise. Each use case's own run, with every record, is in its folder."
        )
    )
    markdown, page, table = root / "report.md", root / "report.html", root / "results.csv"
    markdown.write_text(doc.to_markdown(root), encoding="utf-8")
    page.write_text(doc.to_html(), encoding="utf-8")
    with table.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return markdown, page, table


def _robustness(doc: Document, rows: list[dict[str, Any]]) -> None:
    """The perturbed re-run (``--robustness``): each use case's primary score under each perturbation."""
    table = []
    for row in rows:
        perturbations = row["robustness"].get("perturbations", {})
        for name, drop in perturbations.items():
            table.append([row["model"], row["device"], row["use_case"], name, fmt(drop["clean_score"]),
                          fmt(drop["perturbed_score"]), fmt(drop["drop"])])  # fmt: skip
    if table:
        rate = next(row["robustness"].get("rate") for row in rows if row["robustness"].get("perturbations"))
        doc.add(Heading("Robustness"), Paragraph(f"Primary score on inputs perturbed at rate {rate}."))
        doc.table(["model", "device", "use case", "perturbation", "clean", "perturbed", "drop"], table)


def _overall_text(overall: Mapping[str, Any] | None) -> str:
    if not overall:
        return "n/a"
    return f"{fmt(overall['mean'])} ({fmt(overall['low'])} - {fmt(overall['high'])})"


def _tradeoff_plots(summary: Mapping[str, Any], rows: list[dict[str, Any]], root: Path) -> list[Path]:
    """Overall score against weighted p90 latency, and against model size, for every model and device."""
    from slm_eval.results import plots

    by_latency: tuple[list[str], list[float], list[float]] = ([], [], [])
    by_size: tuple[list[str], list[float], list[float]] = ([], [], [])
    for entry in summary["results"]:
        overall = entry.get("overall")
        if not overall:
            continue
        label = f"{entry['model']}@{entry['device']}"
        mine = [r for r in rows if r["model"] == entry["model"] and r["device"] == entry["device"]]
        weights = overall.get("weights", {})
        p90 = [(weights.get(r["use_case"], 0.0), r["latency_p90_ms"]) for r in mine if r["latency_p90_ms"] is not None]
        if p90:
            total_weight = sum(w for w, _ in p90) or 1.0
            _add(by_latency, label, sum(w * v for w, v in p90) / total_weight / 1000, float(overall["mean"]))
        sizes = [r["model_size_mib"] for r in mine if r["model_size_mib"] is not None]
        if sizes:
            _add(by_size, label, float(sizes[0]), float(overall["mean"]))
    images = [
        plots.tradeoff_plot(*by_latency, "weighted p90 latency per example (s)", "accuracy against latency",
                            root / "plots" / "accuracy_latency.png"),
        plots.tradeoff_plot(*by_size, "model size on disk (MiB)", "accuracy against size",
                            root / "plots" / "accuracy_size.png"),
    ]  # fmt: skip
    return [image for image in images if image is not None]


def _add(series: tuple[list[str], list[float], list[float]], label: str, x: float, y: float) -> None:
    series[0].append(label)
    series[1].append(x)
    series[2].append(y)
