"""The training entry script: the same job locally and in the SageMaker Hugging Face training container.

Hyperparameters come as ``--key value`` arguments (SageMaker passes each entry of the job's
``HyperParameters`` so; :meth:`~slm_eval.training.job.Hyperparameters.to_hyperparameters` renders them),
folders from ``--model``/``--train-dir``/... arguments, else from the container's ``SM_MODEL_DIR``,
``SM_CHANNEL_TRAIN``, ``SM_CHANNEL_VALIDATION``, ``SM_CHANNEL_MODEL``, ``SM_OUTPUT_DATA_DIR`` and
``SM_NUM_GPUS``, else local defaults. The script runs from a folder holding a copy of the ``slm_eval``
package beside it (the container's ``/opt/ml/code``) or from the installed package.

Examples:
    python train.py --task sft --model SmolLM2-135M-Instruct.Q4_1.gguf --train-dir data/train --epochs 1
    python -m slm_eval.training.scripts.train --task qa --method full --model minilm/ --train-dir data/train
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from slm_eval.errors import UserError, first_line
from slm_eval.training.job import latest_checkpoint, parse_job_arguments, paths_from_environment, resume_mode

if TYPE_CHECKING:
    from slm_eval.training.engine import TrainingOutcome

LOGGER = "slm_eval"


def run_job(argv: Sequence[str], environ: Mapping[str, str], *, progress: bool | None = None) -> TrainingOutcome:
    """Parse the arguments and environment, then train; the outcome.

    ``--resume auto`` resumes when the checkpoint folder holds a checkpoint (a restarted spot instance).
    The progress bar shows when ``progress`` says so, else when stderr is a terminal.

    Raises:
        UserError: bad arguments, data or model; ``TrainingInterrupted`` on Ctrl-C.
    """
    hp, namespace = parse_job_arguments(argv)
    paths = paths_from_environment(namespace, environ)
    mode = resume_mode(namespace.resume)
    resume = mode == "true" or (mode == "auto" and latest_checkpoint(paths.checkpoint_dir) is not None)
    from slm_eval.training.engine import run_training

    show = sys.stderr.isatty() if progress is None else progress
    return run_training(hp, paths, resume=resume, progress=show)


def _configure_logging() -> None:
    """Log lines to stdout (the container's log stream) unless the caller already set up logging."""
    logger = logging.getLogger(LOGGER)
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the entry script; 0 on success, else the error's exit code after a one-line message on stderr."""
    _configure_logging()
    try:
        outcome = run_job(sys.argv[1:] if argv is None else argv, os.environ if environ is None else environ)
    except UserError as exc:
        print(f"error: {first_line(exc)}", file=sys.stderr)
        return exc.exit_code
    print(f"saved the trained model ({outcome.layout}) in {outcome.model_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
