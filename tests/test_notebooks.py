"""The notebooks in notebooks/ run top to bottom, headless, on a small fixture of real results.

Each test starts a Jupyter kernel (about 1-3 s) through nbclient; the kernel is the Python running the tests.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

from nbclient.exceptions import CellExecutionError  # noqa: E402

from slm_eval.results.notebook_data import PRODUCE_TRADEOFFS, RESULTS_ENV  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
FIXTURE = Path(__file__).parent / "fixtures" / "results"
EXPECTED = {"model_comparison", "edge_devices", "quantization_tradeoffs", "results_report"}


def execute(path: Path, results: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run a notebook with ``SLM_EVAL_RESULTS`` pointing at ``results``; return it with its outputs."""
    monkeypatch.setenv(RESULTS_ENV, str(results))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    return notebook


def outputs(notebook: Any, kind: str) -> list[Any]:
    """Every output of ``kind`` (a MIME type, ``error`` or ``stream``) in the notebook."""
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output["output_type"] == kind or kind in output.get("data", {}):
                found.append(output)
    return found


def test_the_four_notebooks_are_there() -> None:
    assert {path.stem for path in NOTEBOOKS} == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_is_stored_without_outputs(path: Path) -> None:
    stored = json.loads(path.read_text(encoding="utf-8"))
    code = [cell for cell in stored["cells"] if cell["cell_type"] == "code"]
    assert code
    for cell in code:
        assert cell["outputs"] == []
        assert cell["execution_count"] is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_imports_only_the_library_to_read_results(path: Path) -> None:
    source = "\n".join("".join(cell["source"]) for cell in json.loads(path.read_text(encoding="utf-8"))["cells"])
    for forbidden in ("import json", "import csv", "pandas", "open("):
        assert forbidden not in source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_runs_on_the_fixture_results(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = execute(path, FIXTURE, monkeypatch)
    assert not outputs(notebook, "error")
    assert outputs(notebook, "text/markdown")
    if path.stem != "results_report":
        assert outputs(notebook, "image/png"), "every notebook but the report draws a plot on the fixture"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_on_an_empty_folder_says_how_to_produce_results(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(CellExecutionError) as failure:
        execute(path, tmp_path, monkeypatch)
    assert failure.value.ename == "UserError"
    for hint in ("make demo", "slm-eval benchmark", "slm-eval quantize"):
        assert hint in failure.value.evalue
    assert "load_results()" in str(failure.value), "it stops in the loading cell, not deep inside a plot"


def test_the_quantization_notebook_without_tradeoffs_says_how_to_produce_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results, ignore=shutil.ignore_patterns("quantize-tradeoffs"))
    notebook = execute(ROOT / "notebooks" / "quantization_tradeoffs.ipynb", results, monkeypatch)
    assert not outputs(notebook, "error")
    shown = " ".join(output["data"]["text/markdown"] for output in outputs(notebook, "text/markdown"))
    assert PRODUCE_TRADEOFFS.split(":")[-1].strip() in shown
