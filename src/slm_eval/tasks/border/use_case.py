"""What the five border-control use cases share: their name, score names, output budget and examples."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from slm_eval.tasks.base import Example


class UseCase:
    """The fixed parts of the Task protocol, from class attributes; each use case adds prompt and scoring."""

    task_name: ClassVar[str]
    per_example_metrics: ClassVar[tuple[str, ...]]
    corpus_metrics: ClassVar[tuple[str, ...]]
    answer_tokens: ClassVar[int]
    _examples: tuple[Example, ...]

    @property
    def name(self) -> str:
        """The use case's name in records and reports."""
        return self.task_name

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The per-example scores, the primary one first."""
        return self.per_example_metrics

    @property
    def max_new_tokens(self) -> int:
        """Tokens an answer needs at most."""
        return self.answer_tokens

    @property
    def corpus_metric_names(self) -> tuple[str, ...]:
        """The figures computed over the whole set."""
        return self.corpus_metrics

    def examples(self) -> Sequence[Example]:
        """Every example, in file order."""
        return self._examples
