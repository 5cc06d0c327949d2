"""Every task by name: the five border-control use cases and SQuAD-format QA, imported lazily."""

from __future__ import annotations

import difflib
import importlib
from typing import cast

from slm_eval.errors import UserError
from slm_eval.tasks.base import Task

# Use case name -> "module:function" returning the task with its shipped data.
USE_CASES: dict[str, str] = {
    "document-verification": "slm_eval.tasks.border.document_verification:load_task",
    "multilingual-triage": "slm_eval.tasks.border.triage:load_task",
    "entity-threat-detection": "slm_eval.tasks.border.entities:load_task",
    "customs-help": "slm_eval.tasks.border.customs:load_task",
    "report-generation": "slm_eval.tasks.border.reports:load_task",
}


def load_use_case(name: str) -> Task:
    """The use case called ``name``.

    Raises:
        UserError: an unknown name; the message lists the valid ones.
    """
    target = USE_CASES.get(name.strip().lower())
    if target is None:
        raise _unknown_use_case(name)
    module_name, _, function = target.partition(":")
    return cast(Task, getattr(importlib.import_module(module_name), function)())


def resolve_task(dataset: str | None) -> Task:
    """A use case by name, else SQuAD-format QA (``border-qa``, ``squad`` or a file path)."""
    if dataset is not None and dataset.strip().lower() in USE_CASES:
        return load_use_case(dataset)
    from slm_eval.tasks.squad import resolve_task as resolve_qa

    return resolve_qa(dataset)


def check_use_cases(names: list[str] | None) -> list[str]:
    """The selected use cases in canonical order (all when ``names`` is empty), or a one-line error."""
    if not names:
        return list(USE_CASES)
    chosen = [name.strip().lower() for item in names for name in item.split(",") if name.strip()]
    for name in chosen:
        if name not in USE_CASES:
            raise _unknown_use_case(name)
    return [name for name in USE_CASES if name in chosen]


def _unknown_use_case(name: str) -> UserError:
    close = difflib.get_close_matches(name.strip().lower(), list(USE_CASES), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]}? " if close else ""
    return UserError(f"unknown use case '{name}': {hint}choose from {', '.join(USE_CASES)}")
