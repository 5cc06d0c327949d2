"""Trainer callbacks that watch and steer a run: a stop at a checkpoint, one log line per step, a quiet bar.

Container-safe: imports only the standard library, transformers and :mod:`slm_eval.training.engine_stop`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from transformers import ProgressCallback, TrainerCallback

from slm_eval.training.engine_stop import StopFlag

log = logging.getLogger("slm_eval.training.engine")


class StopAtFlag(TrainerCallback):
    """Saves a checkpoint at the end of the step during which the flag was set, then stops training.

    Attributes:
        stopped_at: the global step the checkpoint was saved at, or ``None`` while training went on.
    """

    def __init__(self, flag: StopFlag) -> None:
        self.flag = flag
        self.stopped_at: int | None = None

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.stopped_at is None and self.flag.is_set():
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = int(state.global_step)
        return control

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.stopped_at is not None:  # saved at the step already; no evaluation while the user waits
            control.should_save = False
            control.should_evaluate = False
        return control


class LossLogger(TrainerCallback):
    """One log line per logging step (loss, learning rate) and per evaluation (validation loss)."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        logs = logs or {}
        epoch = float(logs.get("epoch", state.epoch or 0.0))
        if "loss" in logs:
            log.info(
                "step %d/%d  epoch %.2f  loss %.4f  learning rate %.3g",
                state.global_step,
                state.max_steps,
                epoch,
                float(logs["loss"]),
                float(logs.get("learning_rate", 0.0)),
            )
        if "eval_loss" in logs:
            log.info("epoch %.2f  validation loss %.4f", epoch, float(logs["eval_loss"]))
        return control


class QuietProgress(ProgressCallback):
    """transformers' progress bar without its printed log dicts (:class:`LossLogger` logs them)."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return control


class TrainingClock(TrainerCallback):
    """Seconds spent training in this session, without the evaluations."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.total = 0.0
        self.evaluating = 0.0
        self._eval_started: float | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self.started = time.perf_counter()
        return control

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self._eval_started = time.perf_counter()
        return control

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self._eval_started is not None:
            self.evaluating += time.perf_counter() - self._eval_started
            self._eval_started = None
        return control

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self._eval_started = None
        return control

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.started is not None:
            self.total = time.perf_counter() - self.started
        return control

    @property
    def training_seconds(self) -> float:
        """Seconds from the start of training to its end, less the evaluations."""
        return max(self.total - self.evaluating, 1e-9)
