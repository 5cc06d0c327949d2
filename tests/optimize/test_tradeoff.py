"""The trade-off report: rows read from the variants' manifests, the parent first, and the files written."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from slm_eval.models.store import ModelStore, update_manifest, write_manifest
from slm_eval.optimize.tradeoff import COLUMNS, render_tradeoff, rows_for
from tests.conftest import RunCli

MODEL = "all-minilm-l6-v2"


def _gate(score: float, parent: float, folder: str, *, status: str) -> dict[str, Any]:
    def side(value: float, memory: float) -> dict[str, Any]:
        return {
            "score": {"value": value, "unit": "score (0-1)", "label": "measured"},
            "decode_tokens_per_s": {"value": None},
            "latency_p50": {"value": 10.0, "unit": "ms", "label": "measured"},
            "peak_memory": {"value": memory, "unit": "MiB", "label": "measured"},
        }

    return {
        "status": status,
        "relative": {"value": score / parent, "unit": "ratio", "label": "measured"},
        "parent": side(parent, 500.0),
        "variant": side(score, 300.0),
        "folder": folder,
    }


def _variant(store: ModelStore, name: str, size: int, gate: dict[str, Any]) -> None:
    with store.writing(MODEL, name) as folder:
        (folder / "model.onnx").write_bytes(b"w" * size)
        write_manifest(
            folder,
            {
                "model": MODEL,
                "variant": name,
                "format": "onnx",
                "method": "onnx-matmulnbits",
                "bits": 4 if "int4" in name else 8,
                "compression_ratio": {"value": size / 2_000_000, "label": "measured"},
                "source": {"format": "transformers", "bytes": 2_000_000},
            },
        )
    update_manifest(store.get(MODEL, name), {"gate": gate})


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    store = ModelStore(tmp_path / "data" / "models")
    _variant(store, "onnx-qa-int8", 600_000, _gate(0.5, 0.5, "gates/border-qa-limit12-seed0", status="passed"))
    _variant(store, "onnx-qa-int4", 400_000, _gate(0.3, 0.5, "gates/border-qa-limit12-seed0", status="failed"))
    _variant(store, "onnx-qa-int8-other", 500_000, _gate(0.4, 0.5, "gates/border-qa-limit5-seed0", status="failed"))
    return store


def test_rows_put_the_parent_first_then_variants_by_size_and_keep_one_gates_examples(store: ModelStore) -> None:
    rows = rows_for(MODEL, store.variants(MODEL), "border-qa-limit12-seed0")
    assert [row.variant for row in rows] == [MODEL, f"{MODEL}@onnx-qa-int4", f"{MODEL}@onnx-qa-int8"]
    parent, int4, int8 = rows
    assert parent.score == 0.5 and parent.relative_score == 1.0 and parent.size_mib == pytest.approx(2_000_000 / 2**20)
    assert int4.relative_score == pytest.approx(0.6) and int4.gate == "failed" and int4.bits == 4
    assert int8.peak_memory_mib == 300.0 and int8.size_vs_parent == pytest.approx(0.3)
    assert len(rows_for(MODEL, store.variants(MODEL), None)) == 4


def test_the_report_writes_markdown_html_csv_and_the_plot(store: ModelStore, tmp_path: Path) -> None:
    rows = rows_for(MODEL, store.variants(MODEL), "border-qa-limit12-seed0")
    written = render_tradeoff(MODEL, rows, tmp_path / "report")
    assert set(written) == {"csv", "plot", "markdown", "html"}
    with written["csv"].open(encoding="utf-8") as handle:
        table = list(csv.reader(handle))
    assert table[0] == list(COLUMNS) and len(table) == 4
    markdown = written["markdown"].read_text(encoding="utf-8")
    assert "accuracy against size" in markdown.lower() and "onnx-qa-int4" in markdown
    assert written["plot"].stat().st_size > 1000


@pytest.mark.slow
def test_a_sweep_of_minilms_onnx_variants_on_the_command_line(run_cli: RunCli, tmp_path: Path) -> None:
    result = run_cli("quantize", "--model", MODEL, "--sweep", "--format", "onnx", "--gate-limit", "3", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    names = [row["variant"] for row in report["rows"]]
    assert names[0] == MODEL
    assert {f"{MODEL}@onnx-qa-int4", f"{MODEL}@onnx-qa-int8", f"{MODEL}@onnx-qa-int8-dynamic"} <= set(names)
    assert all(row["gate"] in {"passed", "failed", "not applicable"} for row in report["rows"][1:])
    assert Path(report["report"]).is_file()
    again = run_cli("quantize", "--model", MODEL, "--sweep", "--format", "onnx", "--gate-limit", "3", "--json")
    assert again.code == 0 and "reused" in again.err
