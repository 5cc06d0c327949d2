"""Reports of one run or a comparison of runs — Markdown, HTML, CSV and plots — rendered from records only.

Nothing here computes a new figure: every number comes from ``summary.json``, ``records.jsonl`` and
``memory.jsonl`` as the run wrote them.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from slm_eval.results.document import Document, Heading, Image, Paragraph
from slm_eval.results.records import RunPaths, read_json, read_records

LATENCY_ROWS = (
    ("time to first token", "time_to_first_token"),
    ("time per output token", "time_per_output_token"),
    ("end to end", "end_to_end"),
    ("prompt tokens/s", "prompt_tokens_per_s"),
    ("decode tokens/s", "decode_tokens_per_s"),
)


def fmt(value: object, digits: int = 3) -> str:
    """A number shown with ``digits`` significant figures; anything else as text."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"
    return str(value)


def figure_text(figure: Mapping[str, Any] | None) -> tuple[str, str, str]:
    """(value, unit, label) of a figure dict."""
    if not figure:
        return ("n/a", "", "")
    return (fmt(figure.get("value")), str(figure.get("unit", "")), str(figure.get("label", "")))


def render_run_report(paths: RunPaths) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html`` and ``plots/`` for one run; return the two report paths."""
    from slm_eval.results import plots

    summary = read_json(paths.summary)
    records = list(read_records(paths.records))
    last = int(summary.get("sessions", 1)) - 1
    timed = [
        r
        for r in records
        if r.get("session") == last and r.get("kind") in ("eval", "timing") and r.get("perturbation") == "clean"
    ]
    metrics = summary.get("metrics", {})
    device = summary.get("device", {})
    doc = Document(f"{summary['model']['name']} on {device.get('profile', {}).get('name', '?')}")
    doc.add(Paragraph(f"Run {summary['run_id']}, {summary.get('created', '')}; task {summary['task']['name']}."))
    _verdict(doc, summary)
    if "accuracy" in metrics:
        doc.add(Heading("Accuracy"))
        doc.table(
            ["score", "mean", "95% CI", "n", "label"],
            [
                [name, fmt(a["mean"]), f"{fmt(a['low'])} - {fmt(a['high'])}", a["n"], a["label"]]
                for name, a in metrics["accuracy"].items()
            ],
        )
    if "latency" in metrics:
        _latency(doc, metrics["latency"])
    if metrics.get("robustness", {}).get("perturbations"):
        rob = metrics["robustness"]
        doc.add(Heading("Robustness"), Paragraph(f"{rob['score']} on inputs perturbed at rate {rob['rate']}."))
        doc.table(
            ["perturbation", "clean", "perturbed", "drop", "relative drop", "n"],
            [
                [
                    name,
                    fmt(p["clean_score"]),
                    fmt(p["perturbed_score"]),
                    fmt(p["drop"]),
                    fmt(p["relative_drop"]),
                    p["n"],
                ]
                for name, p in rob["perturbations"].items()
            ],
        )
    _resources(doc, metrics)
    images = [
        plots.latency_histogram(timed, paths.plots / "latency.png"),
        plots.accuracy_bars(metrics.get("accuracy", {}), metrics.get("robustness"), paths.plots / "accuracy.png"),
        plots.memory_timeline(
            [s for s in read_records(paths.memory) if s.get("session") == last],
            (device.get("limits") or {}).get("memory_bytes"),
            paths.plots / "memory.png",
        ),
    ]
    if any(images):
        doc.add(Heading("Plots"))
        doc.add(*(Image(image, image.stem) for image in images if image is not None))
    _how_measured(doc, summary)
    markdown = paths.root / "report.md"
    page = paths.root / "report.html"
    markdown.write_text(doc.to_markdown(paths.root), encoding="utf-8")
    page.write_text(doc.to_html(), encoding="utf-8")
    return markdown, page


def _verdict(doc: Document, summary: Mapping[str, Any]) -> None:
    fits = summary.get("fits", {})
    validity = summary.get("validity", {})
    doc.add(Heading("Verdict"))
    rows = [
        ["fits the device", fmt(fits.get("fits")), fits.get("reason") or ""],
        ["timing valid", fmt(validity.get("valid")), "; ".join(validity.get("reasons", []))],
    ]
    doc.table(["check", "result", "reason"], rows)
    for warning in summary.get("warnings", []):
        doc.add(Paragraph(f"Warning: {warning}."))


def _latency(doc: Document, latency: Mapping[str, Any]) -> None:
    where = f" Measured over a {latency['where']}." if latency.get("where") else ""
    doc.add(Heading("Latency"), Paragraph(f"{latency.get('requests', 0)} timed requests (warm-up excluded).{where}"))
    rows = []
    for title, key in LATENCY_ROWS:
        d = latency.get(key)
        if d:
            rows.append(
                [
                    title,
                    fmt(d["p50"]),
                    fmt(d["p90"]),
                    fmt(d["p99"]),
                    fmt(d["mean"]),
                    fmt(d["std"]),
                    d["unit"],
                    d["label"],
                ]
            )
    doc.table(["", "p50", "p90", "p99", "mean", "std", "unit", "label"], rows)
    network = latency.get("network")
    if network:
        doc.add(Heading("Network (remote API)", 3))
        round_trip = network.get("round_trip_p50") or {}
        label = round_trip.get("label", "")
        network_rows = [["round trip at load", fmt(round_trip.get("value")), "", "", "", "", "ms", label]]
        per = network.get("per_request")
        if per:
            quantiles = [fmt(per[key]) for key in ("p50", "p90", "p99", "mean", "std")]
            network_rows.append(["send to response headers", *quantiles, per["unit"], per["label"]])
        doc.table(["", "p50", "p90", "p99", "mean", "std", "unit", "label"], network_rows)
        doc.add(
            Paragraph(
                f"How: {network.get('method', '')}. Memory and energy are not applicable: the model runs on the server."
            )
        )
    projection = latency.get("projection")
    if projection:
        doc.add(Heading(f"Projected to {projection['device']}", 3))
        doc.table(
            ["figure", "value", "unit", "label"],
            [
                [name.replace("_", " "), *figure_text(projection[name])]
                for name in ("decode_tokens_per_s", "prompt_tokens_per_s", "time_per_output_token", "request_latency")
            ],
        )
        doc.add(Paragraph(f"Roofline: {projection['formula']}"))


def _resources(doc: Document, metrics: Mapping[str, Any]) -> None:
    rows: list[list[str]] = []
    memory = metrics.get("memory", {})
    for name in ("peak_rss_kernel", "peak_rss_sampled", "load_memory", "rss_after_load"):
        if name in memory:
            rows.append([f"memory: {name.replace('_', ' ')}", *figure_text(memory[name])])
    size = metrics.get("model_size")
    if size:
        rows.append(["model size on disk", *figure_text(size.get("on_disk"))])
        rows.append(["parameters", fmt(size.get("parameters")), "", "measured"])
    timing = metrics.get("inference_time")
    if timing:
        rows.append(["task wall time", *figure_text(timing.get("task_total"))])
        per = timing.get("per_example")
        if per:
            rows.append(["per example (p50)", fmt(per["p50"]), per["unit"], per["label"]])
    power = metrics.get("power")
    if power:
        rows.append(["energy per request", *figure_text(power.get("energy_per_request"))])
        rows.append(["average power", *figure_text(power.get("average_power"))])
    if rows:
        doc.add(Heading("Memory, size, time and power"))
        doc.table(["figure", "value", "unit", "label"], rows)
        if power:
            doc.add(Paragraph(f"Power: {power.get('method')}."))


def _how_measured(doc: Document, summary: Mapping[str, Any]) -> None:
    device = summary.get("device", {})
    host = summary.get("host", {})
    config = summary.get("config", {})
    doc.add(Heading("How it was measured"))
    rows = [
        ["sandbox", fmt(device.get("sandbox")), device.get("sandbox_note", "")],
        ["memory limit enforced by", fmt(device.get("memory_enforcement")), ""],
        ["limits", str(device.get("limits")), ""],
        ["read back inside the worker", str(device.get("read_back_in_worker")), ""],
        ["validity rules", str(config.get("validity")), ""],
        [
            "host",
            f"{host.get('cpu')} · {host.get('usable_cpus')} CPUs · {host.get('memory_mib')} MiB",
            host.get("platform", ""),
        ],
        ["software", f"python {host.get('python')}, slm-eval {host.get('slm_eval')}", str(host.get("packages"))],
    ]
    doc.table(["what", "value", "note"], rows)


def comparison_rows(summaries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per run, from its summary, for the comparison table, CSV and plot."""
    rows = []
    for s in summaries:
        metrics = s.get("metrics", {})
        accuracy = metrics.get("accuracy", {})
        primary: dict[str, Any] = next(iter(accuracy.values()), {}) if accuracy else {}
        latency = metrics.get("latency", {})
        power = metrics.get("power", {})
        rows.append(
            {
                "run_id": s["run_id"],
                "label": f"{s['model']['name']}\n{s['device']['profile']['name']}",
                "model": s["model"]["name"],
                "device": s["device"]["profile"]["name"],
                "fits": s.get("fits", {}).get("fits"),
                "valid": s.get("validity", {}).get("valid"),
                "score": next(iter(accuracy), None),
                "score_mean": primary.get("mean"),
                "score_low": primary.get("low"),
                "score_high": primary.get("high"),
                "ttft_p50_ms": (latency.get("time_to_first_token") or {}).get("p50"),
                "tpot_p50_ms": (latency.get("time_per_output_token") or {}).get("p50"),
                "decode_tps": (latency.get("decode_tokens_per_s") or {}).get("p50"),
                "peak_rss_mib": (metrics.get("memory", {}).get("peak_rss_kernel") or {}).get("value"),
                "energy_per_request_j": (power.get("energy_per_request") or {}).get("value"),
                "energy_label": (power.get("energy_per_request") or {}).get("label"),
                "size_mib": (metrics.get("model_size", {}).get("on_disk") or {}).get("value"),
                "measured_where": "over the network" if _remote(s) else "on this host",
            }
        )
    return rows


def _remote(summary: Mapping[str, Any]) -> bool:
    """Whether a run's latency was measured over a network (a remote API), not on a device."""
    latency = summary.get("metrics", {}).get("latency", {})
    marked = any(isinstance(figure, Mapping) and figure.get("over_network") for figure in latency.values())
    return summary.get("model", {}).get("kind") == "api" or marked or "network" in latency


def render_comparison(runs: Sequence[RunPaths], out_dir: Path) -> tuple[Path, Path, Path]:
    """Write ``comparison.md``, ``comparison.html`` and ``comparison.csv`` for several runs."""
    from slm_eval.results import plots

    summaries = [read_json(run.summary) for run in runs]
    rows = comparison_rows(summaries)
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = [
        "run_id",
        "model",
        "device",
        "fits",
        "valid",
        "score",
        "score_mean",
        "score_low",
        "score_high",
        "ttft_p50_ms",
        "tpot_p50_ms",
        "decode_tps",
        "peak_rss_mib",
        "energy_per_request_j",
        "energy_label",
        "size_mib",
        "measured_where",
    ]
    csv_path = out_dir / "comparison.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    doc = Document(f"Comparison of {len(rows)} runs")
    doc.add(Paragraph("Measured on this host unless a figure says otherwise; energy is labelled per run."))
    remote = [r["run_id"] for r in rows if r["measured_where"] == "over the network"]
    if remote and len(remote) < len(rows):
        doc.add(
            Paragraph(
                f"Not comparable: the latency of {', '.join(remote)} was measured over the network to a remote API "
                "(network and server queue included), the others on a device; memory and energy do not apply to a "
                "remote API."
            )
        )
    doc.table(
        [
            "run",
            "model",
            "device",
            "fits",
            "valid",
            "score (95% CI)",
            "TTFT p50 ms",
            "TPOT p50 ms",
            "decode tok/s",
            "peak RSS MiB",
            "energy/request J",
            "size MiB",
            "latency measured",
        ],
        [
            [
                r["run_id"],
                r["model"],
                r["device"],
                fmt(r["fits"]),
                fmt(r["valid"]),
                f"{r['score']} {fmt(r['score_mean'])} ({fmt(r['score_low'])}-{fmt(r['score_high'])})",
                fmt(r["ttft_p50_ms"]),
                fmt(r["tpot_p50_ms"]),
                fmt(r["decode_tps"]),
                fmt(r["peak_rss_mib"]),
                f"{fmt(r['energy_per_request_j'])} ({r['energy_label'] or 'n/a'})",
                fmt(r["size_mib"]),
                r["measured_where"],
            ]
            for r in rows
        ],
    )
    image = plots.comparison_bars(rows, out_dir / "comparison.png")
    if image is not None:
        doc.add(Image(image, "comparison"))
    markdown = out_dir / "comparison.md"
    page = out_dir / "comparison.html"
    markdown.write_text(doc.to_markdown(out_dir), encoding="utf-8")
    page.write_text(doc.to_html(), encoding="utf-8")
    return markdown, page, csv_path
