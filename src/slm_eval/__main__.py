"""Run the CLI as ``python -m slm_eval``."""

from slm_eval.cli import main

if __name__ == "__main__":
    main()
