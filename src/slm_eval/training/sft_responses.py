"""The gold answer text a decoder is fine-tuned to write: what each task's own parser and scorer take as perfect.

One function per task, built from the example's gold data (``target``, or the references where the target
holds no text), in the exact format the task's prompt asks for:

* ``border-qa`` / SQuAD: the first reference span (:func:`slm_eval.tasks.squad.extract_answer` reads it back).
* ``document-verification``: ``VALID`` or ``INVALID: <defect>``.
* ``multilingual-triage``: ``Translation: <reference>`` then ``Intent: <label>`` (chrF++ of a copy is 1).
* ``entity-threat-detection``: one JSON object, ``{"entities": [{"text", "type"}], "threat"}``, each distinct
  entity once in order of appearance.
* ``customs-help``: the hand-written reference answer, which states every key fact and, for HS classification,
  ends with ``HS: <code>`` (the key facts are regular expressions, so no text can be built from them).
* ``report-generation``: the gold report as one line of JSON (its summary is the ROUGE-L reference).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from slm_eval.errors import UserError
from slm_eval.tasks.base import Example
from slm_eval.tasks.border.document_verification import reference_answer as document_answer


def _first_reference(example: Example) -> str:
    if not example.references or not example.references[0].strip():
        raise UserError(f"example '{example.id}' has no reference answer to train on; give it one or drop it")
    return example.references[0]


def qa_response(example: Example) -> str:
    """The first reference answer of a SQuAD-format question."""
    return _first_reference(example)


def document_verification_response(example: Example) -> str:
    """``VALID`` or ``INVALID: <defect>`` from ``target.valid`` and ``target.defect``."""
    defect = example.target.get("defect")
    return document_answer(None if example.target.get("valid") else str(defect))


def triage_response(example: Example) -> str:
    """The two lines the triage prompt asks for: the reference translation, then the intent label."""
    reference = example.target.get("reference")
    translation = reference if isinstance(reference, str) and reference.strip() else _first_reference(example)
    return f"Translation: {translation}\nIntent: {example.target['intent']}"


def entity_response(example: Example) -> str:
    """The answer object: distinct (text, type) entities in order of appearance, then the threat label."""
    entities: list[Mapping[str, Any]] = sorted(example.target["entities"], key=lambda entity: int(entity["start"]))
    unique = dict.fromkeys((str(entity["text"]), str(entity["type"])) for entity in entities)
    body = {"entities": [{"text": text, "type": kind} for text, kind in unique], "threat": example.target["threat"]}
    return json.dumps(body, ensure_ascii=False)


def customs_response(example: Example) -> str:
    """The reference answer (it states every key fact; for a classification question it ends ``HS: <code>``)."""
    return _first_reference(example)


def report_response(example: Example) -> str:
    """The gold report, ``target.report``, as one line of JSON in the schema's key order."""
    return json.dumps(example.target["report"], ensure_ascii=False)


RESPONSES: dict[str, Callable[[Example], str]] = {
    "document-verification": document_verification_response,
    "multilingual-triage": triage_response,
    "entity-threat-detection": entity_response,
    "customs-help": customs_response,
    "report-generation": report_response,
}


def gold_response(source: str, example: Example) -> str:
    """The response to train on for ``example`` of ``source`` (a use case; anything else is SQuAD-format QA)."""
    return RESPONSES.get(source, qa_response)(example)
