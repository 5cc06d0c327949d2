#!/usr/bin/env python3
"""Quick test of a model with custom input: ``python quick_test.py ...`` is ``slm-eval quick-test ...``.

Example:
    python quick_test.py --model smollm2-135m-instruct --input "What must a traveller declare?"
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

try:
    from slm_eval.cli import main
except ModuleNotFoundError as exc:  # the package's own dependencies are missing from this Python
    sys.exit(f"error: {exc.name} is not installed in this Python; run 'make demo' or 'pip install -e .'")

if __name__ == "__main__":
    main(["quick-test", *sys.argv[1:]])
