"""The seed's entry points, ``python run.py`` and ``python quick_test.py``, behave exactly as ``slm-eval``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO_ROOT, SLM_EVAL_SCRIPT, clean_environ, without_measured_values

pytestmark = pytest.mark.integration


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=clean_environ(), capture_output=True, text=True, timeout=120, check=False)


def _python(script: str, *args: str) -> list[str]:
    return [sys.executable, str(REPO_ROOT / script), *args]


def test_console_script_is_installed() -> None:
    assert SLM_EVAL_SCRIPT.is_file()


def test_run_py_models_json_matches_slm_eval(tmp_path: Path) -> None:
    seed = _run(_python("run.py", "models", "--json"), tmp_path)
    console = _run([str(SLM_EVAL_SCRIPT), "models", "--json"], tmp_path)
    assert seed.returncode == console.returncode == 0, seed.stderr + console.stderr
    assert json.loads(seed.stdout) == json.loads(console.stdout)
    assert len(json.loads(seed.stdout)) == 10


def test_quick_test_py_matches_slm_eval_quick_test(tmp_path: Path) -> None:
    args = ["--model", "smollm2", "--input", "What is a visa?", "--dry-run", "--json"]
    seed = _run(_python("quick_test.py", *args), tmp_path)
    console = _run([str(SLM_EVAL_SCRIPT), "quick-test", *args], tmp_path)
    via_run_py = _run(_python("run.py", "quick-test", *args), tmp_path)
    assert seed.returncode == console.returncode == via_run_py.returncode == 0, seed.stderr + console.stderr
    documents = [without_measured_values(json.loads(done.stdout)) for done in (seed, console, via_run_py)]
    assert documents[0] == documents[1] == documents[2]
    assert documents[0]["results"][0]["output"].startswith("(dry run) smollm2-135m-instruct")  # type: ignore[index]


def test_errors_are_the_same_one_line(tmp_path: Path) -> None:
    seed = _run(_python("run.py", "info", "phi-4"), tmp_path)
    console = _run([str(SLM_EVAL_SCRIPT), "info", "phi-4"], tmp_path)
    assert seed.returncode == console.returncode == 2
    assert seed.stderr == console.stderr
    assert seed.stderr.startswith("error: unknown model 'phi-4'")
    assert len(seed.stderr.strip().splitlines()) == 1


def test_python_dash_m(tmp_path: Path) -> None:
    done = _run([sys.executable, "-m", "slm_eval", "--version"], tmp_path)
    assert done.returncode == 0
    assert done.stdout.startswith("slm-eval ")
