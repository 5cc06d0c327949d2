"""Errors a user can fix, shown as one line on stderr instead of a traceback."""

from __future__ import annotations

import importlib
from typing import Any


class UserError(Exception):
    """A mistake in the user's input, environment or configuration.

    The message names the problem and the fix, in one line. The CLI prints it on stderr
    and exits with ``exit_code``; ``--debug`` shows the traceback as well.
    """

    exit_code = 2


class MissingDependencyError(UserError):
    """An optional package is not installed; the message names what installs it."""

    def __init__(self, package: str, purpose: str, install: str) -> None:
        super().__init__(f"{purpose} needs the package '{package}', which is not installed: {install}")
        self.package = package
        self.install = install


def extra_install_hint(extra: str) -> str:
    """The command that installs one of this project's extras, e.g. ``pip install 'slm-eval[llama]'``."""
    return f"pip install 'slm-eval[{extra}]'"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def require_module(module: str, purpose: str, install: str) -> Any:
    """Import an optional package, or say in one line what installs it.

    Raises:
        MissingDependencyError: the package is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module, purpose, install) from exc
