#!/usr/bin/env python3
"""Wall time of ``slm-eval models`` (median of 5 runs), and which heavy libraries it imported.

Each run is a fresh process. ``python -c pass`` is timed the same way so the figure can be read against
the interpreter's own start-up on this machine.

Target: median wall time <= 0.5 s, with none of torch, transformers, llama_cpp or onnxruntime imported.

Example:
    .venv/bin/python benchmarks/startup.py
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_SECONDS = 0.5
RUNS = 5
HEAVY = ("torch", "transformers", "llama_cpp", "onnxruntime", "onnxruntime_genai", "sagemaker", "boto3")
CHECK_IMPORTS = (
    "import sys\n"
    "from slm_eval.cli import main\n"
    "try:\n"
    "    main(['models'])\n"
    "except SystemExit:\n"
    "    pass\n"
    f"print(sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
)


def wall_times(command: list[str], cwd: str) -> list[float]:
    """Wall seconds of ``RUNS`` fresh runs of ``command`` (after one unmeasured warm-up)."""
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run(command, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        models = wall_times([sys.executable, "-m", "slm_eval", "models"], workdir)
        interpreter = wall_times([sys.executable, "-c", "pass"], workdir)
        probe = subprocess.run(
            [sys.executable, "-c", CHECK_IMPORTS], cwd=workdir, check=True, capture_output=True, text=True
        )
    imported = probe.stderr.strip().splitlines()[-1]
    median = statistics.median(models)
    print(
        json.dumps(
            {
                "benchmark": "startup",
                "command": "slm-eval models",
                "label": "measured",
                "unit": "s",
                "median": round(median, 4),
                "runs": [round(t, 4) for t in models],
                "python_startup_median": round(statistics.median(interpreter), 4),
                "heavy_modules_imported": json.loads(imported.replace("'", '"')),
                "target": {"median_max": TARGET_SECONDS, "heavy_modules_imported": []},
                "pass": median <= TARGET_SECONDS and imported == "[]",
            }
        )
    )


if __name__ == "__main__":
    main()
