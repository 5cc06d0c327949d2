"""The trade-off report over one model's variants: size, peak memory, speed and accuracy side by side.

Every figure comes from the variants' manifests: the size is measured on disk at quantization time, and
accuracy, decode speed (or latency) and peak memory come from the accuracy gate's runs, where the
variant and its parent answered the same examples. A plot of accuracy against size shows where the
curve bends: the point past which a smaller file costs more accuracy than it is worth.

Example:
    slm-eval quantize --model all-minilm-l6-v2 --sweep
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slm_eval.models.store import Variant
from slm_eval.results.document import Document, Heading, Image, Paragraph

MIB = 1024 * 1024
COLUMNS = (
    "variant",
    "format",
    "method",
    "bits",
    "size_mib",
    "size_vs_parent",
    "score",
    "relative_score",
    "gate",
    "decode_tokens_per_s",
    "latency_p50_ms",
    "peak_memory_mib",
)


@dataclass(frozen=True)
class TradeoffRow:
    """One model or variant in the report; every figure measured unless it says otherwise."""

    variant: str
    format: str
    method: str
    bits: int | None
    size_mib: float | None
    size_vs_parent: float | None
    score: float | None
    relative_score: float | None
    gate: str
    decode_tokens_per_s: float | None
    latency_p50_ms: float | None
    peak_memory_mib: float | None

    def cells(self) -> list[object]:
        """The row as table cells, numbers rounded for reading."""
        return [_shown(getattr(self, name)) for name in COLUMNS]


def _shown(value: object) -> object:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return value


def _value(figure: object) -> float | None:
    if isinstance(figure, Mapping) and figure.get("value") is not None:
        return float(figure["value"])
    return None


def rows_for(parent: str, variants: Sequence[Variant], gate_key: str | None = None) -> list[TradeoffRow]:
    """The parent (from its gate runs) and each variant, smallest first.

    ``gate_key`` keeps only variants gated on the same examples (the gate's folder name), so every score
    in the report is comparable; ``None`` keeps all and takes the parent from the first gated variant.
    """
    rows: list[TradeoffRow] = []
    parent_row: TradeoffRow | None = None
    for variant in variants:
        manifest = variant.manifest
        gate = manifest.get("gate") or {}
        if gate_key is not None and not str(gate.get("folder", "")).endswith(gate_key):
            continue
        side = gate.get("variant") or {}
        rows.append(
            TradeoffRow(
                variant=variant.reference,
                format=str(manifest.get("format")),
                method=str(manifest.get("method")),
                bits=manifest.get("bits"),
                size_mib=variant.size_bytes / MIB,
                size_vs_parent=_value(manifest.get("compression_ratio")),
                score=_value(side.get("score")),
                relative_score=_value(gate.get("relative")),
                gate=str(gate.get("status", "not run")),
                decode_tokens_per_s=_value(side.get("decode_tokens_per_s")),
                latency_p50_ms=_value(side.get("latency_p50")),
                peak_memory_mib=_value(side.get("peak_memory")),
            )
        )
        if parent_row is None and gate.get("parent"):
            theirs = gate["parent"]
            source = manifest.get("source") or {}
            parent_row = TradeoffRow(
                variant=parent,
                format=str(source.get("format")),
                method="(parent)",
                bits=None,
                size_mib=(int(source["bytes"]) / MIB) if source.get("bytes") else _value(theirs.get("size")),
                size_vs_parent=1.0,
                score=_value(theirs.get("score")),
                relative_score=1.0,
                gate="-",
                decode_tokens_per_s=_value(theirs.get("decode_tokens_per_s")),
                latency_p50_ms=_value(theirs.get("latency_p50")),
                peak_memory_mib=_value(theirs.get("peak_memory")),
            )
    ordered = sorted(rows, key=lambda row: row.size_mib or 0.0)
    return ([parent_row] if parent_row is not None else []) + ordered


def render_tradeoff(parent: str, rows: Sequence[TradeoffRow], folder: Path) -> dict[str, Path]:
    """Write ``tradeoff.md``, ``tradeoff.html``, ``tradeoff.csv`` and the accuracy-against-size plot."""
    from slm_eval.results.plots import tradeoff_plot

    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    csv_path = folder / "tradeoff.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([getattr(row, name) for name in COLUMNS])
    written["csv"] = csv_path
    plotted = [row for row in rows if row.size_mib is not None and row.score is not None]
    plot = tradeoff_plot(
        [row.variant.split("@")[-1] for row in plotted],
        [float(row.size_mib or 0.0) for row in plotted],
        [float(row.score or 0.0) for row in plotted],
        "size on disk (MiB, measured)",
        f"{parent}: accuracy against size",
        folder / "plots" / "accuracy_vs_size.png",
    )
    doc = Document(f"Quantization trade-offs: {parent}")
    doc.add(
        Paragraph(
            "Sizes are measured on disk. Scores, decode speed, latency and peak memory are measured by the "
            "accuracy gate's runs, where each variant and its parent answered the same examples on this "
            "machine (host profile). A gate passes when the variant keeps at least the threshold share of "
            "its parent's score."
        )
    )
    doc.add(Heading("Variants"))
    doc.table(COLUMNS, [row.cells() for row in rows])
    if plot is not None:
        doc.add(Heading("Accuracy against size"), Image(plot, "accuracy against size"))
        written["plot"] = plot
    markdown = folder / "tradeoff.md"
    page = folder / "tradeoff.html"
    markdown.write_text(doc.to_markdown(folder), encoding="utf-8")
    page.write_text(doc.to_html(), encoding="utf-8")
    written["markdown"] = markdown
    written["html"] = page
    return written


def tradeoff_to_dict(rows: Sequence[TradeoffRow]) -> list[dict[str, Any]]:
    """The rows as JSON-ready dictionaries."""
    return [{name: getattr(row, name) for name in COLUMNS} for row in rows]
