"""Plots of a run or of several runs, drawn with matplotlib (Agg, no display) from records only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

Record = Mapping[str, Any]


def _bins(values: Sequence[float]) -> int:
    """About two requests per bin, 5 to 30 bins; one bin when the values are equal but for rounding."""
    spread = max(values) - min(values)
    if spread <= 1e-9 * max(1.0, abs(max(values))):
        return 1
    return min(30, max(5, len(values) // 2))


def latency_histogram(timed: Sequence[Record], path: Path) -> Path | None:
    """Histograms of time to first token and time per output token of the timed requests.

    A model without output tokens (an encoder's task head) has neither; its end-to-end latency is shown.
    """
    ttft = [float(r["ttft_ms"]) for r in timed if r.get("ttft_ms") is not None]
    tpot = [float(r["tpot_ms"]) for r in timed if r.get("tpot_ms") is not None]
    panels = [(ttft, "time to first token"), (tpot, "time per output token")]
    if not ttft and not tpot:
        e2e = [float(r["e2e_ms"]) for r in timed if r.get("e2e_ms") is not None]
        if not e2e:
            return None
        panels = [(e2e, "latency per request")]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.2), squeeze=False)
    for axis, (values, title) in zip(axes[0], panels, strict=True):
        if values:
            axis.hist(values, bins=_bins(values), color="#4472c4")
        axis.set_title(f"{title} (measured)")
        axis.set_xlabel("ms")
        axis.set_ylabel("requests")
    return _save(figure, path)


def accuracy_bars(accuracy: Mapping[str, Any], robustness: Mapping[str, Any] | None, path: Path) -> Path | None:
    """Each score with its confidence interval, and the primary score under each perturbation."""
    if not accuracy:
        return None
    names = list(accuracy)
    means = [float(accuracy[n]["mean"]) for n in names]
    lows = [m - float(accuracy[n]["low"]) for m, n in zip(means, names, strict=False)]
    highs = [float(accuracy[n]["high"]) - m for m, n in zip(means, names, strict=False)]
    perturbations = (robustness or {}).get("perturbations", {})
    columns = 2 if perturbations else 1
    figure, axes = plt.subplots(1, columns, figsize=(4.5 * columns, 3.2), squeeze=False)
    axis = axes[0][0]
    axis.bar(names, means, yerr=[lows, highs], capsize=6, color="#70ad47")
    axis.set_ylim(0, 1)
    axis.set_title("accuracy with 95% CI (measured)")
    if perturbations:
        axis = axes[0][1]
        labels = ["clean", *perturbations]
        first = next(iter(perturbations.values()))
        values = [float(first["clean_score"])] + [float(p["perturbed_score"]) for p in perturbations.values()]
        axis.bar(labels, values, color=["#70ad47"] + ["#ed7d31"] * len(perturbations))
        axis.set_ylim(0, 1)
        axis.set_title(f"{robustness.get('score', 'score') if robustness else 'score'} under perturbation")
        axis.tick_params(axis="x", rotation=30)
    return _save(figure, path)


def memory_timeline(samples: Sequence[Record], limit_bytes: int | None, path: Path) -> Path | None:
    """Resident memory of the worker over time, with the profile's limit when there is one."""
    if not samples:
        return None
    figure, axis = plt.subplots(figsize=(9, 3))
    axis.plot([float(s["t_s"]) for s in samples], [int(s["rss_bytes"]) / 2**20 for s in samples], color="#4472c4")
    if limit_bytes:
        axis.axhline(limit_bytes / 2**20, color="#c00000", linestyle="--", label="memory limit")
        axis.legend()
    axis.set_title("worker resident memory (measured)")
    axis.set_xlabel("s since the worker started")
    axis.set_ylabel("MiB")
    return _save(figure, path)


def comparison_bars(rows: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """Primary accuracy with CI and median decode speed, one bar per run."""
    if not rows:
        return None
    labels = [str(row["label"]) for row in rows]
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    means = [row.get("score_mean") or 0.0 for row in rows]
    errors = [
        [m - (row.get("score_low") or m) for m, row in zip(means, rows, strict=False)],
        [(row.get("score_high") or m) - m for m, row in zip(means, rows, strict=False)],
    ]
    axes[0].bar(labels, means, yerr=errors, capsize=6, color="#70ad47")
    axes[0].set_ylim(0, 1)
    axes[0].set_title("accuracy (primary score, 95% CI)")
    axes[1].bar(labels, [row.get("decode_tps") or 0.0 for row in rows], color="#4472c4")
    axes[1].set_title("decode tokens/s, median (measured)")
    for axis in axes:
        axis.tick_params(axis="x", rotation=20)
    return _save(figure, path)


def _save(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower x, higher y), sorted by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best = float("-inf")
    for index in order:
        if points[index][1] > best:
            front.append(index)
            best = points[index][1]
    return front


def tradeoff_plot(
    labels: Sequence[str], x: Sequence[float], y: Sequence[float], x_label: str, title: str, path: Path
) -> Path | None:
    """Overall score against a cost (latency, size), with the Pareto front drawn through the best points."""
    points = [(a, b) for a, b in zip(x, y, strict=True)]
    if not points:
        return None
    figure, axis = plt.subplots(figsize=(6.5, 4))
    axis.scatter(x, y, color="#4472c4", zorder=3)
    for label, (a, b) in zip(labels, points, strict=True):
        axis.annotate(label, (a, b), textcoords="offset points", xytext=(5, 4), fontsize=8)
    front = pareto_front(points)
    if len(front) > 1:
        axis.plot(
            [points[i][0] for i in front],
            [points[i][1] for i in front],
            color="#ed7d31",
            linestyle="--",
            label="Pareto front",
            zorder=2,
        )
        axis.legend()
    axis.set_ylim(0, 1)
    axis.set_xlabel(x_label)
    axis.set_ylabel("overall score")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    return _save(figure, path)
