"""The task contract: a task yields examples, turns one into a prompt, and scores a model's output."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Example:
    """One item of a task.

    Attributes:
        id: unique within the task; records and resumed runs refer to it.
        question: the part of the input a user types or a device reads; robustness perturbs this.
        context: supporting text the answer comes from (a passage, a document), or ``None``.
        references: the accepted answers (any one counts as right).
        metadata: free-form labels (source, topic, difficulty) kept in records.
        target: structured gold data a scorer needs beyond reference strings (labels, entities, a JSON
            report); JSON-serialisable.
    """

    id: str
    question: str
    references: tuple[str, ...]
    context: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    target: Mapping[str, Any] = field(default_factory=dict)


class Task(Protocol):
    """A scored task.

    The first name of :attr:`metric_names` is the primary per-example score in 0..1 that summaries and
    the benchmark's overall score average; :meth:`corpus_scores` adds figures that exist only over the
    whole set.
    """

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

    @property
    def max_new_tokens(self) -> int:
        """Tokens an answer needs at most."""
        ...

    @property
    def corpus_metric_names(self) -> tuple[str, ...]:
        """The names :meth:`corpus_scores` returns (none for a task whose scores are all per example)."""
        ...

    def corpus_scores(self, scored: Sequence[tuple[Example, str]]) -> dict[str, float]:
        """Scores over every (example, output) pair, e.g. micro F1 or corpus chrF++."""
        ...

    def parse_error(self, example: Example, output: str) -> str | None:
        """Why ``output`` could not be parsed (it then scores zero), or ``None`` when it could."""
        ...


# The border-control use cases implement the whole protocol; the name says which part they rely on.
CorpusTask = Task
