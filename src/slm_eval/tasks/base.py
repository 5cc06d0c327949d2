"""The task contract: a task yields examples, turns one into a prompt, and scores a model's output."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Example:
    """One item of a task.

    Attributes:
        id: unique within the task; records and resumed runs refer to it.
        question: the part of the input a user types or a device reads; robustness perturbs this.
        context: supporting text the answer comes from (a passage, a document), or ``None``.
        references: the accepted answers (any one counts as right).
        metadata: free-form labels (source, topic, difficulty) kept in records.
    """

    id: str
    question: str
    references: tuple[str, ...]
    context: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


class Task(Protocol):
    """A scored task."""

    @property
    def name(self) -> str:
        """The task's name in records and reports, e.g. ``border-qa``."""
        ...

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The scores :meth:`score` returns, the primary one first (each in 0..1)."""
        ...

    def examples(self) -> Sequence[Example]:
        """Every example, in a stable order."""
        ...

    def prompt(self, example: Example) -> str:
        """The text sent to the model for ``example`` (the backend adds any chat template)."""
        ...

    def score(self, example: Example, output: str) -> dict[str, float]:
        """Scores of ``output`` against the example's references, one per name in :attr:`metric_names`."""
        ...
