"""Gold responses: each use case's own scorer gives them full marks, so fine-tuning aims at a perfect answer."""

from __future__ import annotations

import functools
import json

import pytest

from slm_eval.tasks.base import Example
from slm_eval.tasks.border import build_triage_data
from slm_eval.tasks.squad import SquadTask, load_builtin_border_qa
from slm_eval.training.sft_responses import RESPONSES, entity_response, gold_response, triage_response
from slm_eval.training.training_splits import USE_CASE_SOURCES, generate_use_case_split
from slm_eval.training.validation_tasks import use_case_task


@functools.cache
def _training_examples(name: str) -> tuple[Example, ...]:
    split = generate_use_case_split(name)
    return split.train + split.validation


def test_every_use_case_has_a_response_builder() -> None:
    assert set(RESPONSES) == set(USE_CASE_SOURCES)


@pytest.mark.parametrize("name", [name for name in USE_CASE_SOURCES if name != "multilingual-triage"])
def test_gold_response_scores_perfect_on_every_training_example(name: str) -> None:
    examples = _training_examples(name)
    assert len(examples) == 240
    task = use_case_task(name, examples)
    for example in examples:
        response = gold_response(name, example)
        scores = task.score(example, response)
        assert task.parse_error(example, response) is None
        # Every score, not only the primary one, is at its maximum of 1.0.
        assert scores == dict.fromkeys(task.metric_names, 1.0), (example.id, response, scores)


def test_triage_gold_response_scores_perfect_on_generated_examples() -> None:
    # Triage has no training split (its phrase bank is all in evaluation), so its builder is checked on freshly
    # generated examples: chrF++ of an exact copy is 1.0 and the intent label is read back.
    examples = build_triage_data.build_examples(build_triage_data.SEED + 1000)
    task = use_case_task("multilingual-triage", examples)
    for example in examples:
        response = triage_response(example)
        assert response.splitlines()[1] == f"Intent: {example.target['intent']}"
        assert task.score(example, response) == {"chrf": 1.0, "intent": 1.0}, example.id


def test_border_qa_response_is_the_first_reference_and_scores_perfect() -> None:
    examples = load_builtin_border_qa()
    task = SquadTask("border-qa", examples)
    for example in examples:
        response = gold_response("border-qa", example)
        assert response == example.references[0]
        assert task.score(example, response)["f1"] == 1.0


def test_entity_response_lists_each_entity_once_in_order_of_appearance() -> None:
    note = "Driver Jan Novak, Czech, and Jan Novak's van AB-123 searched."
    entities = [
        {"text": "Czech", "type": "NATIONALITY", "start": 18},
        {"text": "Jan Novak", "type": "PERSON", "start": 7},
        {"text": "Jan Novak", "type": "PERSON", "start": 29},
    ]
    example = Example("x", note, (), target={"entities": entities, "threat": "none"})
    assert json.loads(entity_response(example)) == {
        "entities": [{"text": "Jan Novak", "type": "PERSON"}, {"text": "Czech", "type": "NATIONALITY"}],
        "threat": "none",
    }
