"""Ctrl-C as a request to stop training at the end of the current step, with a checkpoint.

Container-safe: imports only the standard library.

Ctrl-C does not kill a training run mid-step. :func:`stop_on_sigint` installs a SIGINT handler that sets a
:class:`StopFlag`; the engine's ``StopAtFlag`` callback sees the flag at the end of the current optimizer
step, has the Trainer save a checkpoint there and stop, and the engine then raises ``TrainingInterrupted``.
A second Ctrl-C raises ``KeyboardInterrupt`` at once (no checkpoint).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("slm_eval.training.engine")


class StopFlag:
    """Set once to ask the running training to stop at the end of its current step."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        """Ask for a stop."""
        self._event.set()

    def is_set(self) -> bool:
        """Whether a stop was asked for."""
        return self._event.is_set()


@contextmanager
def stop_on_sigint(flag: StopFlag) -> Iterator[None]:
    """While inside, Ctrl-C sets ``flag`` (a second one raises ``KeyboardInterrupt``); the old handler is restored.

    Outside the main thread (where Python cannot install signal handlers) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def handle(signum: int, frame: Any) -> None:
        if flag.is_set():
            raise KeyboardInterrupt
        flag.set()
        log.warning("Ctrl-C: stopping after this step with a checkpoint (press Ctrl-C again to stop at once)")

    signal.signal(signal.SIGINT, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
