#!/usr/bin/env python3
"""Command-line entry point: ``python run.py <command> ...`` is exactly ``slm-eval <command> ...``.

Example:
    python run.py quick-test --model smollm2-135m-instruct --input "What is a visa?"
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

try:
    from slm_eval.cli import main
except ModuleNotFoundError as exc:  # the package's own dependencies are missing from this Python
    sys.exit(f"error: {exc.name} is not installed in this Python; run 'make demo' or 'pip install -e .'")

if __name__ == "__main__":
    main()
