"""Tests for the SQuAD-format QA task: loading, bad input, sampling, prompts and scoring."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from slm_eval.errors import UserError
from slm_eval.tasks.base import Example, Task
from slm_eval.tasks.squad import (
    SquadTask,
    builtin_border_qa_path,
    extract_answer,
    load_builtin_border_qa,
    load_hf_squad,
    load_squad_file,
    resolve_task,
    select_examples,
)

CONTEXT = "The Schengen area has 29 member countries. It is named after Schengen in Luxembourg."


def _squad_doc(qas: list[Any], context: str = CONTEXT, title: str = "Schengen") -> dict[str, Any]:
    return {"version": "1.1", "data": [{"title": title, "paragraphs": [{"context": context, "qas": qas}]}]}


def _write_json(tmp_path: Path, document: object, name: str = "set.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def _write_jsonl(tmp_path: Path, records: list[object], name: str = "set.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def _qa(qid: str = "q1", question: str = "How many countries?", answer: str = "29") -> dict[str, Any]:
    return {"id": qid, "question": question, "answers": [{"text": answer, "answer_start": CONTEXT.find(answer)}]}


def _examples(count: int) -> list[Example]:
    return [Example(id=f"e{i}", question=f"q{i}", references=(f"a{i}",), context="c") for i in range(count)]


# --- the built-in set ---------------------------------------------------------------------------


def test_builtin_set_is_large_with_unique_ids_and_valid_spans() -> None:
    document = json.loads(builtin_border_qa_path().read_text(encoding="utf-8"))
    ids: list[str] = []
    contexts = 0
    for article in document["data"]:
        assert article["title"]
        for paragraph in article["paragraphs"]:
            contexts += 1
            context = paragraph["context"]
            for qa in paragraph["qas"]:
                ids.append(qa["id"])
                assert qa["question"].strip().endswith("?")
                assert qa["answers"]
                for answer in qa["answers"]:
                    start = answer["answer_start"]
                    assert context[start : start + len(answer["text"])] == answer["text"], qa["id"]
                    assert 1 <= len(answer["text"].split()) <= 6, qa["id"]
    assert len(ids) >= 100
    assert len(set(ids)) == len(ids)
    assert contexts >= 25


def test_builtin_set_loads_with_titles() -> None:
    examples = load_builtin_border_qa()
    assert len(examples) >= 100
    assert all(example.context and example.references for example in examples)
    assert all(example.metadata.get("title") for example in examples)
    task = resolve_task(None)
    assert task.name == "border-qa"
    assert list(task.examples()) == examples
    assert resolve_task("border-qa").name == "border-qa"


def test_squad_task_satisfies_the_task_protocol() -> None:
    task: Task = resolve_task(None)
    assert task.metric_names == ("f1", "exact_match")


# --- loading ------------------------------------------------------------------------------------


def test_loads_squad_json(tmp_path: Path) -> None:
    qas = [_qa("q1"), {**_qa("q2", "Where is Schengen?", "Luxembourg"), "id": 2}]
    path = _write_json(tmp_path, _squad_doc(qas))
    examples = load_squad_file(path)
    assert [example.id for example in examples] == ["q1", "2"]
    assert examples[1].references == ("Luxembourg",)
    assert examples[0].context == CONTEXT
    assert examples[0].metadata == {"title": "Schengen"}


def test_loads_jsonl_in_both_answer_styles(tmp_path: Path) -> None:
    records: list[object] = [
        {
            "id": "a",
            "question": "How many?",
            "context": CONTEXT,
            "answers": {"text": ["29", "29"], "answer_start": [22, 22]},
        },
        {
            "id": "b",
            "title": "Schengen",
            "question": "Where?",
            "context": CONTEXT,
            "answers": [{"text": "Luxembourg", "answer_start": 74}, {"text": "in Luxembourg", "answer_start": 71}],
        },
    ]
    path = _write_jsonl(tmp_path, records)
    path.write_text(path.read_text(encoding="utf-8") + "\n\n", encoding="utf-8")  # trailing blank lines are fine
    first, second = load_squad_file(path)
    assert first.references == ("29",)  # repeated annotator answers collapse
    assert first.metadata == {}
    assert second.references == ("Luxembourg", "in Luxembourg")
    assert second.metadata == {"title": "Schengen"}


def test_answers_outside_the_context_are_kept(tmp_path: Path) -> None:
    path = _write_json(tmp_path, _squad_doc([_qa("q1", "How many?", "twenty-nine")]))
    path.write_text(path.read_text(encoding="utf-8").replace('"answer_start": -1', '"answer_start": 0'))
    assert load_squad_file(path)[0].references == ("twenty-nine",)


def test_path_dataset_is_named_after_its_stem(tmp_path: Path) -> None:
    path = _write_json(tmp_path, _squad_doc([_qa()]), name="customs_faq.json")
    task = resolve_task(str(path))
    assert task.name == "customs_faq"
    assert len(task.examples()) == 1


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (_squad_doc([{"id": "q1", "answers": [{"text": "29"}]}]), "data[0].paragraphs[0].qas[0]: missing 'question'"),
        (_squad_doc([{"question": "Q?", "answers": [{"text": "29"}]}]), "data[0].paragraphs[0].qas[0]: missing 'id'"),
        (_squad_doc([_qa("q1"), {"id": "q2", "question": "Q?"}]), "data[0].paragraphs[0].qas[1]: missing 'answers'"),
        (_squad_doc([{**_qa(), "answers": []}]), "qas[0]: no answers"),
        (_squad_doc([{**_qa(), "answers": [{"text": ""}]}]), "qas[0].answers[0]: 'text' is empty"),
        (
            _squad_doc([{**_qa(), "answers": [{"text": "29", "answer_start": "x"}]}]),
            "qas[0].answers[0]: 'answer_start'",
        ),
        (_squad_doc([{**_qa(), "answers": "29"}]), "qas[0].answers: 'answers' must be"),
        ({"data": [{"title": "t", "paragraphs": [{"qas": []}]}]}, "data[0].paragraphs[0]: missing 'context'"),
        ({"data": [{"title": "t"}]}, "data[0]: missing 'paragraphs'"),
        ({"data": {"title": "t"}}, "'data' must be a list"),
        ({"data": ["oops"]}, "data[0]: an article must be an object"),
        (
            _squad_doc([_qa("q1"), _qa("q1", "Again?")]),
            "qas[1]: duplicate id 'q1' (first used at data[0].paragraphs[0].qas[0])",
        ),
    ],
)
def test_bad_squad_json_names_the_key_path(tmp_path: Path, document: object, expected: str) -> None:
    path = _write_json(tmp_path, document)
    with pytest.raises(UserError) as caught:
        load_squad_file(path)
    message = str(caught.value)
    assert expected in message
    assert str(path) in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (['{"id": "a", "question": "Q?", "context": "c", "answers": ["x"]}'], "line 1.answers[0]: an answer must be"),
        (
            [
                '{"id": "a", "question": "Q?", "context": "c", "answers": {"text": ["x"]}}',
                "",
                '{"id": "b", "context": "c"}',
            ],
            "line 3: missing 'question'",
        ),
        (
            ['{"id": "a", "question": "Q?", "context": "c", "answers": {"text": ["x"]}}', "{not json"],
            "line 2: invalid JSON",
        ),
        (['{"id": "a", "question": "Q?", "answers": {"text": ["x"]}}'], "line 1: missing 'context'"),
        (
            ['{"id": "a", "question": "Q?", "context": "c", "answers": {"text": ["x", "y"], "answer_start": [0]}}'],
            "line 1.answers: 'answer_start' must be a list as long as 'text'",
        ),
        (
            [
                '{"id": "a", "question": "Q?", "context": "c", "answers": {"text": ["x"]}}',
                '{"id": "a", "question": "R?", "context": "c", "answers": {"text": ["y"]}}',
            ],
            "line 2: duplicate id 'a' (first used at line 1)",
        ),
        (
            ['{"id": "a", "question": "Q?", "context": "c", "answers": {"text": ["x"]}}', "[1, 2]"],
            "line 2: a record must",
        ),
    ],
)
def test_bad_jsonl_names_the_line(tmp_path: Path, lines: list[str], expected: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UserError) as caught:
        load_squad_file(path)
    assert expected in str(caught.value)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    "content",
    ["id,question,answer\n1,Where?,Here\n", "[1, 2, 3]", '{"version": "1.1"}', '{\n  "version": "1.1"\n}\n', "hello"],
)
def test_a_file_that_is_not_squad_format_says_so(tmp_path: Path, content: str) -> None:
    path = tmp_path / "other.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(
        UserError, match=re.escape("expected a SQuAD v1.1 JSON object with a 'data' list or a JSONL file")
    ):
        load_squad_file(path)


@pytest.mark.parametrize("content", ["", "\n  \n", '{"version": "1.1", "data": []}', json.dumps(_squad_doc([]))])
def test_an_empty_dataset_is_rejected(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match="holds no questions"):
        load_squad_file(path)


def test_binary_and_missing_files_are_user_errors(tmp_path: Path) -> None:
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(UserError, match="not UTF-8"):
        load_squad_file(binary)
    with pytest.raises(UserError, match="not found"):
        load_squad_file(tmp_path / "missing.json")
    with pytest.raises(UserError, match="is a folder"):
        load_squad_file(tmp_path)


def test_resolve_task_with_a_missing_path_suggests_the_fix(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="nor an existing file"):
        resolve_task(str(tmp_path / "nope.jsonl"))
    with pytest.raises(UserError, match="did you mean --dataset border-qa"):
        resolve_task("border_qa")


def test_empty_task_is_rejected() -> None:
    with pytest.raises(UserError, match="holds no questions"):
        SquadTask("empty", [])


# --- HF SQuAD -----------------------------------------------------------------------------------


def test_hf_squad_without_datasets_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(UserError, match="pip install datasets") as caught:
        resolve_task("squad")
    assert "network" in str(caught.value)
    assert "--dataset PATH" in str(caught.value)


def test_hf_squad_offline_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def load_dataset(name: str, split: str) -> object:
        raise ConnectionError("Couldn't reach 'rajpurkar/squad' on the Hub\n(ConnectionError)")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(UserError, match="needs a network") as caught:
        load_hf_squad()
    assert "\n" not in str(caught.value)
    assert "--dataset PATH" in str(caught.value)


def test_hf_squad_rows_become_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [
        {
            "id": "5733be284776f41900661182",
            "title": "University_of_Notre_Dame",
            "context": "Architecturally, the school has a Catholic character.",
            "question": "What character does the school have?",
            "answers": {"text": ["Catholic", "a Catholic character"], "answer_start": [34, 32]},
        }
    ]
    calls: list[tuple[str, str]] = []

    def load_dataset(name: str, split: str) -> list[dict[str, Any]]:
        calls.append((name, split))
        return rows

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    task = resolve_task("squad")
    assert task.name == "squad"
    assert calls == [("rajpurkar/squad", "validation")]
    (example,) = task.examples()
    assert example.references == ("Catholic", "a Catholic character")
    assert example.metadata == {"title": "University_of_Notre_Dame"}


# --- --limit and --seed -------------------------------------------------------------------------


def test_limit_is_a_seeded_sample_in_original_order() -> None:
    examples = _examples(50)
    first = select_examples(examples, 10, seed=7)
    assert len(first) == 10
    assert first == select_examples(examples, 10, seed=7)
    positions = [examples.index(example) for example in first]
    assert positions == sorted(positions)
    samples = {tuple(e.id for e in select_examples(examples, 10, seed=seed)) for seed in range(5)}
    assert len(samples) > 1


def test_limit_none_or_larger_than_the_dataset_returns_all() -> None:
    examples = _examples(5)
    assert select_examples(examples, None, seed=0) == examples
    assert select_examples(examples, 5, seed=0) == examples
    assert select_examples(examples, 500, seed=3) == examples


@pytest.mark.parametrize("limit", [0, -1])
def test_limit_below_one_is_rejected(limit: int) -> None:
    with pytest.raises(UserError, match="--limit must be at least 1"):
        select_examples(_examples(5), limit, seed=0)


# --- prompt and scoring -------------------------------------------------------------------------


def test_prompt_holds_instruction_context_and_question() -> None:
    task = SquadTask("t", [Example(id="1", question="Which area?", references=("Schengen area",), context=CONTEXT)])
    prompt = task.prompt(task.examples()[0])
    assert CONTEXT in prompt
    assert "Question: Which area?" in prompt
    assert "copied exactly from the context" in prompt
    assert prompt.index(CONTEXT) < prompt.index("Which area?")
    assert prompt.endswith("Answer:")


def test_prompt_without_context() -> None:
    task = SquadTask("t", [Example(id="1", question="Which area?", references=("x",))])
    prompt = task.prompt(task.examples()[0])
    assert "Context" not in prompt
    assert prompt.endswith("Answer:")


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Answer: the Schengen area.", "the Schengen area."),
        ('  "Schengen area"  ', "Schengen area"),
        ("answer:\nSchengen area\nIt is in Europe.", "Schengen area"),
        ("**Answer:** \u201cSchengen area\u201d", "Schengen area"),
        ("Schengen area\nBecause the context says so.", "Schengen area"),
        ("", ""),
    ],
)
def test_extract_answer_is_tolerant(output: str, expected: str) -> None:
    assert extract_answer(output) == expected


def test_score_uses_tolerant_parsing_and_the_best_reference() -> None:
    example = Example(
        id="1", question="Which area?", references=("Schengen area", "the Schengen zone"), context=CONTEXT
    )
    task = SquadTask("t", [example])
    assert task.score(example, "Answer: the Schengen area.") == {"f1": 1.0, "exact_match": 1.0}
    assert task.score(example, "Schengen zone") == {"f1": 1.0, "exact_match": 1.0}
    partial = task.score(example, "the Schengen countries")
    assert partial["exact_match"] == 0.0
    assert partial["f1"] == pytest.approx(0.5)  # best reference: 1 of 2 tokens each way
    assert task.score(example, "I do not know") == {"f1": 0.0, "exact_match": 0.0}
    assert set(task.score(example, "")) == set(task.metric_names)
