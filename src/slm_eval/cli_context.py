"""What every command receives from the global options, and the console tables print to."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import typer
from rich.console import Console

from slm_eval.settings import Settings


@dataclass(frozen=True)
class AppState:
    """What every command receives from the global options."""

    settings: Settings
    debug: bool


def app_state(ctx: typer.Context) -> AppState:
    state = ctx.obj
    if not isinstance(state, AppState):
        raise RuntimeError("the CLI callback did not run")
    return state


def table_console() -> Console:
    """A console for tables: the terminal's width, or a wide page when output is redirected."""
    return Console() if sys.stdout.isatty() else Console(width=160)
