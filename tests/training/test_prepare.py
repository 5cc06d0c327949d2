"""Dataset preparation: folder layout, shapes, determinism, limits, sources, bad input and mismatches."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from slm_eval.errors import UserError
from slm_eval.tasks.base import Example
from slm_eval.tasks.border.entities import THREAT_LABELS
from slm_eval.tasks.catalogue import load_use_case
from slm_eval.training.prepare import DatasetRequest, PreparedDataset, prepare_dataset


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _train(prepared: PreparedDataset) -> list[dict[str, Any]]:
    return _lines(prepared.folder / "train" / "train.jsonl")


def _validation(prepared: PreparedDataset) -> list[dict[str, Any]]:
    return _lines(prepared.folder / "validation" / "validation.jsonl")


def _squad_json(path: Path, paragraphs: int = 10, questions: int = 3) -> Path:
    data = {
        "version": "1.1",
        "data": [
            {
                "title": "Test",
                "paragraphs": [
                    {
                        "context": f"Paragraph {p} lists " + " ".join(f"word{p}x{q}" for q in range(questions)) + ".",
                        "qas": [
                            {
                                "id": f"q{p}-{q}",
                                "question": f"What is answer {q} of paragraph {p}?",
                                "answers": [{"text": f"word{p}x{q}", "answer_start": 0}],
                            }
                            for q in range(questions)
                        ],
                    }
                    for p in range(paragraphs)
                ],
            }
        ],
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _jsonl(path: Path, records: Sequence[object]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


# ---- border-qa ------------------------------------------------------------------------------------------------


def test_border_qa_sft_folder_layout_shapes_and_card(tmp_path: Path) -> None:
    prepared = prepare_dataset(DatasetRequest("border-qa", "sft"), tmp_path)
    train, validation = _train(prepared), _validation(prepared)
    assert prepared.folder == tmp_path / f"border-qa-sft-{prepared.sha256[:12]}"
    assert (prepared.train_count, prepared.validation_count) == (len(train), len(validation)) == (123, 42)
    data = (prepared.folder / "train/train.jsonl").read_bytes() + (
        prepared.folder / "validation/validation.jsonl"
    ).read_bytes()
    assert prepared.sha256 == hashlib.sha256(data).hexdigest()
    assert all(set(record) == {"id", "prompt", "response", "source"} for record in train + validation)
    assert prepared.train_ids == {record["id"] for record in train}
    assert prepared.train_ids.isdisjoint(record["id"] for record in validation)
    card = json.loads((prepared.folder / "dataset.json").read_text(encoding="utf-8"))
    assert card == prepared.card
    assert card["task"] == "sft" and card["sha256"] == prepared.sha256 and card["seed"] == 0
    assert card["files"]["train"]["records"] == 123 and card["sources"][0]["name"] == "border-qa"
    assert "by paragraph" in card["sources"][0]["split"]
    (validation_set,) = prepared.validation_sets
    assert validation_set.metric == "f1" and validation_set.task.name == "border-qa"
    assert [e.id for e in validation_set.examples] == [record["id"] for record in validation]
    for example, record in zip(validation_set.examples, validation, strict=True):
        assert record["prompt"] == validation_set.task.prompt(example)
        assert validation_set.task.score(example, record["response"])["f1"] == 1.0
    assert not list(tmp_path.glob(".*"))  # no temporary folder left behind


def test_border_qa_qa_records_share_no_context(tmp_path: Path) -> None:
    prepared = prepare_dataset(DatasetRequest("border-qa", "qa"), tmp_path)
    train, validation = _train(prepared), _validation(prepared)
    assert {r["context"] for r in train}.isdisjoint({r["context"] for r in validation})
    for record in train + validation:
        assert set(record) == {"id", "question", "context", "answers"}
        for text, start in zip(record["answers"]["text"], record["answers"]["answer_start"], strict=True):
            assert record["context"][start : start + len(text)] == text


def test_same_request_gives_identical_bytes_and_reuses_the_folder(tmp_path: Path) -> None:
    request = DatasetRequest("border-qa", "sft", seed=3)
    first = prepare_dataset(request, tmp_path / "a")
    second = prepare_dataset(request, tmp_path / "b")
    assert first.sha256 == second.sha256 and first.folder.name == second.folder.name
    for name in ("train/train.jsonl", "validation/validation.jsonl", "dataset.json"):
        assert (first.folder / name).read_bytes() == (second.folder / name).read_bytes()
    inode = (first.folder / "train/train.jsonl").stat().st_ino
    again = prepare_dataset(request, tmp_path / "a")
    assert again.folder == first.folder and (again.folder / "train/train.jsonl").stat().st_ino == inode


def test_a_damaged_folder_is_replaced(tmp_path: Path) -> None:
    prepared = prepare_dataset(DatasetRequest("border-qa", "qa"), tmp_path)
    (prepared.folder / "train/train.jsonl").write_text("damaged\n", encoding="utf-8")
    again = prepare_dataset(DatasetRequest("border-qa", "qa"), tmp_path)
    assert len(_train(again)) == again.train_count
    assert sorted(path.name for path in tmp_path.iterdir()) == [prepared.folder.name]


def test_seed_shuffles_training_only(tmp_path: Path) -> None:
    one = prepare_dataset(DatasetRequest("border-qa", "sft", seed=1), tmp_path)
    two = prepare_dataset(DatasetRequest("border-qa", "sft", seed=2), tmp_path)
    assert one.sha256 != two.sha256
    assert [r["id"] for r in _train(one)] != [r["id"] for r in _train(two)]
    assert one.train_ids == two.train_ids
    assert (one.folder / "validation/validation.jsonl").read_bytes() == (
        two.folder / "validation/validation.jsonl"
    ).read_bytes()


def test_limits_cut_training_and_validation(tmp_path: Path) -> None:
    full = prepare_dataset(DatasetRequest("border-qa", "qa"), tmp_path)
    cut = prepare_dataset(DatasetRequest("border-qa", "qa", limit=10, validation_limit=5), tmp_path)
    assert (cut.train_count, cut.validation_count) == (10, 5)
    assert cut.train_ids <= full.train_ids
    assert [r["id"] for r in _validation(cut)] == [r["id"] for r in _validation(full)][:5]
    assert len(cut.validation_sets[0].examples) == 5
    with pytest.raises(UserError, match="--limit must be at least 1"):
        prepare_dataset(DatasetRequest("border-qa", "qa", limit=0), tmp_path)


# ---- use cases ------------------------------------------------------------------------------------------------


def test_use_case_sft_trains_on_generated_examples_off_evaluation(tmp_path: Path) -> None:
    prepared = prepare_dataset(DatasetRequest("report-generation", "sft", limit=12, validation_limit=6), tmp_path)
    assert (prepared.train_count, prepared.validation_count) == (12, 6)
    evaluation = load_use_case("report-generation").examples()
    assert prepared.train_ids.isdisjoint(e.id for e in evaluation)
    prompts = {record["prompt"] for record in _train(prepared) + _validation(prepared)}
    task = load_use_case("report-generation")
    assert prompts.isdisjoint(task.prompt(e) for e in evaluation)
    (validation_set,) = prepared.validation_sets
    assert validation_set.metric == "field_f1"
    for example, record in zip(validation_set.examples, _validation(prepared), strict=True):
        assert record["id"] == example.id and record["prompt"] == validation_set.task.prompt(example)
        assert validation_set.task.score(example, record["response"])["field_f1"] == 1.0
    assert prepared.card["sources"][0]["generator_seeds"][0] == 5105


def test_use_case_validation_does_not_depend_on_limit(tmp_path: Path) -> None:
    small = prepare_dataset(DatasetRequest("customs-help", "sft", limit=5), tmp_path)
    large = prepare_dataset(DatasetRequest("customs-help", "sft", limit=50), tmp_path)
    assert _validation(small) == _validation(large)
    assert small.validation_count == 40


def test_entity_ner_and_classify_records(tmp_path: Path) -> None:
    ner = prepare_dataset(DatasetRequest("entity-threat-detection", "ner", limit=20), tmp_path)
    for record in _train(ner) + _validation(ner):
        assert set(record) == {"id", "text", "entities"}
        for entity in record["entities"]:
            assert set(entity) == {"start", "end", "type"}
            assert record["text"][entity["start"] : entity["end"]].strip()
    assert sum(len(record["entities"]) for record in _train(ner)) > 40
    assert ner.validation_sets[0].metric == "entity_f1"
    classify = prepare_dataset(DatasetRequest("entity-threat-detection", "classify", limit=20), tmp_path)
    records = _train(classify) + _validation(classify)
    assert all(set(r) == {"id", "text", "label"} and r["label"] in THREAT_LABELS for r in records)
    validation_set = classify.validation_sets[0]
    assert validation_set.metric == "threat"
    example = validation_set.examples[0]
    label = str(example.target["threat"])
    assert validation_set.task.score(example, label)["threat"] == 1.0  # an encoder answers with the bare label
    wrong = next(other for other in THREAT_LABELS if other != label)
    assert validation_set.task.score(example, wrong)["threat"] == 0.0


def test_triage_alone_is_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="multilingual-triage has no training data disjoint") as raised:
        prepare_dataset(DatasetRequest("multilingual-triage", "sft"), tmp_path)
    assert "\n" not in str(raised.value)


def test_border_combines_sources_and_notes_the_skipped_one(tmp_path: Path) -> None:
    prepared = prepare_dataset(DatasetRequest("border", "sft", limit=60, validation_limit=50), tmp_path)
    assert prepared.train_count == 60 and prepared.validation_count == 50
    assert prepared.sources[0] == "border-qa" and "multilingual-triage" not in prepared.sources
    assert [note["source"] for note in prepared.card["skipped"]] == ["multilingual-triage"]
    sources = {record["source"] for record in _train(prepared)}
    assert len(sources) >= 3
    by_source: dict[str, list[str]] = {}
    for record in _validation(prepared):
        by_source.setdefault(record["source"], []).append(record["id"])
    assert {s.task.name: [e.id for e in s.examples] for s in prepared.validation_sets} == by_source


# ---- squad and files ------------------------------------------------------------------------------------------


def test_squad_offline_names_the_offline_choices(tmp_path: Path) -> None:
    with pytest.raises(UserError) as raised:
        prepare_dataset(DatasetRequest("squad", "qa"), tmp_path, environ={"HF_HUB_OFFLINE": "1"})
    message = str(raised.value)
    assert "needs a network" in message and "border-qa" in message and "PATH" in message and "\n" not in message


def test_squad_with_an_injected_loader(tmp_path: Path) -> None:
    def example(index: int) -> Example:
        context = f"The checkpoint number {index} is at gate {index}."
        return Example(f"s{index}", f"Where is checkpoint {index}?", (f"gate {index}",), context=context)

    def loader() -> tuple[list[Example], list[Example]]:
        return [example(i) for i in range(8)], [example(i) for i in range(8, 11)]

    prepared = prepare_dataset(DatasetRequest("squad", "qa"), tmp_path, load_hub_squad=loader, environ={})
    assert (prepared.train_count, prepared.validation_count) == (8, 3)
    assert prepared.folder.name.startswith("squad-qa-")
    assert prepared.validation_sets[0].task.name == "squad"
    sft = prepare_dataset(DatasetRequest("squad", "sft"), tmp_path, load_hub_squad=loader, environ={})
    assert {r["response"] for r in _validation(sft)} == {"gate 8", "gate 9", "gate 10"}


def test_squad_json_file_is_split_by_context(tmp_path: Path) -> None:
    path = _squad_json(tmp_path / "my_questions.json", paragraphs=20)
    prepared = prepare_dataset(DatasetRequest(str(path), "qa"), tmp_path / "out")
    train, validation = _train(prepared), _validation(prepared)
    assert prepared.folder.name.startswith("my-questions-qa-")
    assert len(validation) == 9 and len(train) == 51  # 3 whole paragraphs reach 15% of 60 questions
    assert {r["context"] for r in train}.isdisjoint({r["context"] for r in validation})
    assert prepared.card["dataset"] == "my_questions.json" and len(prepared.card["file_sha256"]) == 64


def test_squad_jsonl_record_missing_a_field_is_named(tmp_path: Path) -> None:
    good = {"id": "a", "question": "Q?", "context": "C has x.", "answers": {"text": ["x"], "answer_start": [6]}}
    path = _jsonl(tmp_path / "qa.jsonl", [good, {"id": "b", "question": "Q?", "context": "C."}])
    with pytest.raises(UserError, match=r"qa\.jsonl: line 2: missing 'answers'"):
        prepare_dataset(DatasetRequest(str(path), "sft"), tmp_path / "out")


def test_sft_record_file(tmp_path: Path) -> None:
    records = [{"prompt": f"Say {i}", "response": f"{i}"} for i in range(20)]
    prepared = prepare_dataset(DatasetRequest(str(_jsonl(tmp_path / "pairs.jsonl", records)), "sft"), tmp_path)
    assert prepared.train_count + prepared.validation_count == 20 and prepared.validation_count == 3
    assert {r["source"] for r in _train(prepared)} == {"pairs"}
    assert prepared.validation_sets == ()
    bad = _jsonl(tmp_path / "bad.jsonl", [*records[:2], {"prompt": "Say x"}])
    with pytest.raises(UserError, match=r"bad\.jsonl: line 3: field 'response': missing"):
        prepare_dataset(DatasetRequest(str(bad), "sft"), tmp_path)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"id": "r1", "text": "Jan", "entities": [{"start": 0, "end": 9, "type": "PERSON"}]}, r"'entities\[0\]'"),
        ({"id": "r1", "text": "Jan", "entities": [{"start": 0, "end": 3}]}, r"'entities\[0\]\.type'"),
        ({"id": "r1", "text": "Jan"}, r"'entities': missing"),
        ({"id": "r1", "entities": []}, r"'text': missing"),
    ],
)
def test_ner_record_file_errors_name_line_and_field(tmp_path: Path, record: dict[str, Any], message: str) -> None:
    good = {"id": "r0", "text": "Anna Berg", "entities": [{"start": 0, "end": 9, "type": "PERSON"}]}
    path = _jsonl(tmp_path / "notes.jsonl", [good, record])
    with pytest.raises(UserError, match=rf"notes\.jsonl: line 2: field {message}"):
        prepare_dataset(DatasetRequest(str(path), "ner"), tmp_path)


def test_classify_record_file_and_duplicate_ids(tmp_path: Path) -> None:
    records = [{"id": f"n{i}", "text": f"note {i}", "label": "none" if i % 2 else "weapon"} for i in range(12)]
    prepared = prepare_dataset(DatasetRequest(str(_jsonl(tmp_path / "labels.jsonl", records)), "classify"), tmp_path)
    assert prepared.train_count + prepared.validation_count == 12
    duplicate = _jsonl(tmp_path / "dup.jsonl", [records[0], records[0]])
    with pytest.raises(UserError, match=r"dup\.jsonl: line 2: field 'id': duplicate id 'n0'"):
        prepare_dataset(DatasetRequest(str(duplicate), "classify"), tmp_path)


# ---- refusals -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "task", "says"),
    [
        ("report-generation", "qa", "report-generation trains decoders (sft)"),
        ("border-qa", "ner", "border-qa trains decoders (sft) and encoders (qa)"),
        ("border", "classify", "trains decoders (sft) only"),
        ("entity-threat-detection", "qa", "entity-threat-detection trains decoders (sft) and encoders (ner, classify)"),
    ],
)
def test_task_and_dataset_mismatch_says_what_is_supported(tmp_path: Path, dataset: str, task: str, says: str) -> None:
    with pytest.raises(UserError) as raised:
        prepare_dataset(DatasetRequest(dataset, task), tmp_path)  # type: ignore[arg-type]
    message = str(raised.value)
    assert says in message
    assert "encoders train qa on border-qa, squad or a SQuAD file, and ner or classify on entity-threat-detection" in (
        message.replace("Encoders", "encoders")
    )


def test_unknown_dataset_and_task(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="did you mean border-qa"):
        prepare_dataset(DatasetRequest("border_qa", "sft"), tmp_path)
    with pytest.raises(UserError, match="unknown training task 'chat'"):
        prepare_dataset(DatasetRequest("border-qa", "chat"), tmp_path)  # type: ignore[arg-type]
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"expected a \.json \(SQuAD v1\.1\) or \.jsonl file"):
        prepare_dataset(DatasetRequest(str(text_file), "sft"), tmp_path)
