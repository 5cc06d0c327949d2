"""Logging: rich console output on stderr and a size-rotated file under ``logs/``."""

from __future__ import annotations

import logging
from logging.handlers import RotatingFileHandler
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

from slm_eval.settings import LoggingSettings

LOGGER_NAME = "slm_eval"
_FILE_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


# Libraries that log notices at import which say nothing about a run: with torchao installed, transformers
# imports it on every from_pretrained, torchao then says its CUDA-only kernels cannot load on a CPU build, and
# torch's pytree that torchao registers types the old way.
NOISY_LOGGERS = ("torchao", "torch.utils._pytree")


def quiet_library_notices() -> None:
    """Raise the noisy libraries' loggers to ERROR (idempotent; imports nothing)."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def configure_logging(settings: LoggingSettings, log_dir: Path, *, console_level: str | None = None) -> Path:
    """Attach a console and a rotating file handler to the ``slm_eval`` logger.

    Calling it again replaces the handlers, so tests and repeated CLI calls in one process
    do not stack them.

    Args:
        settings: level, file name, rotation size and backup count.
        log_dir: the folder for the log file; created when missing.
        console_level: overrides ``settings.level`` for the console only (``--debug``).

    Returns:
        The path of the log file.
    """
    quiet_library_notices()
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.DEBUG)
    logger.propagate = False

    console = RichHandler(
        console=Console(stderr=True),
        show_time=False,
        show_path=False,
        rich_tracebacks=False,
    )
    console.setLevel(console_level or settings.level)
    logger.addHandler(console)

    log_path = log_dir / settings.file_name
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        file_handler = RotatingFileHandler(
            log_path, maxBytes=settings.max_bytes, backupCount=settings.backup_count, encoding="utf-8"
        )
    except OSError as exc:
        logger.warning("log file %s cannot be written (%s); logging to the console only", log_path, exc)
        return log_path
    file_handler.setLevel(logging.DEBUG if console_level == "DEBUG" else settings.level)
    file_handler.setFormatter(logging.Formatter(_FILE_FORMAT))
    logger.addHandler(file_handler)
    return log_path


def get_logger(name: str) -> logging.Logger:
    """A child of the ``slm_eval`` logger, e.g. ``get_logger(__name__)``."""
    return logging.getLogger(name if name.startswith(LOGGER_NAME) else f"{LOGGER_NAME}.{name}")
