"""The task that scores a training run's validation examples, and the score reported for each training task.

A use case's task is rebuilt over the validation examples (its prompt and scorer read only the example), so
``task.examples()`` are the validation examples. For threat classification an encoder answers with a bare label
(``contraband``), which :class:`ThreatLabelTask` scores like the use case's JSON answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from slm_eval.tasks.base import Example, Task
from slm_eval.tasks.border.entities import THREAT_LABELS, EntityThreatTask, normalize_threat
from slm_eval.tasks.squad import SquadTask

_SOURCE = "training validation split"


def _document_task(examples: Sequence[Example]) -> Task:
    from slm_eval.tasks.border.document_verification import DocumentVerificationTask

    return DocumentVerificationTask(examples)


def _triage_task(examples: Sequence[Example]) -> Task:
    from slm_eval.tasks.border.triage import TriageTask

    return TriageTask(examples)


def _entity_task(examples: Sequence[Example]) -> Task:
    return EntityThreatTask(examples, source=_SOURCE)


def _customs_task(examples: Sequence[Example]) -> Task:
    from slm_eval.tasks.border.customs import CustomsHelpTask

    return CustomsHelpTask(examples, source=_SOURCE)


def _report_task(examples: Sequence[Example]) -> Task:
    from slm_eval.tasks.border.reports import ReportTask, load_schema

    return ReportTask(examples, load_schema(), source=_SOURCE)


USE_CASE_TASKS: dict[str, Callable[[Sequence[Example]], Task]] = {
    "document-verification": _document_task,
    "multilingual-triage": _triage_task,
    "entity-threat-detection": _entity_task,
    "customs-help": _customs_task,
    "report-generation": _report_task,
}


class ThreatLabelTask(EntityThreatTask):
    """Entity and threat detection where a bare threat label (an encoder's class) also counts as an answer."""

    def _as_answer(self, output: str) -> str:
        label = normalize_threat(output.strip())
        if "{" not in output and label in THREAT_LABELS:
            return json.dumps({"threat": label})
        return output

    def score(self, example: Example, output: str) -> dict[str, float]:
        """The use case's scores, a bare label read as ``{"threat": label}``."""
        return super().score(example, self._as_answer(output))

    def parse_error(self, example: Example, output: str) -> str | None:
        """Why ``output`` is neither a threat label nor a parseable answer object, or ``None``."""
        return super().parse_error(example, self._as_answer(output))


def use_case_task(name: str, examples: Sequence[Example]) -> Task:
    """The use case ``name`` over ``examples``."""
    return USE_CASE_TASKS[name](examples)


def qa_task(name: str, examples: Sequence[Example]) -> Task:
    """SQuAD-format QA named ``name`` over ``examples``."""
    return SquadTask(name, examples)


def threat_label_task(examples: Sequence[Example]) -> Task:
    """Entity and threat detection over ``examples``, scoring a bare threat label too."""
    return ThreatLabelTask(examples, source=_SOURCE)


def primary_metric(task: Task) -> str:
    """The score a validation set reports: the task's primary per-example score."""
    return task.metric_names[0]
