"""Hyperparameters, their SageMaker rendering and parsing, the job's folders, and reading prepared splits."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import pytest

from slm_eval.errors import UserError
from slm_eval.training.job import (
    Hyperparameters,
    latest_checkpoint,
    parse_job_arguments,
    paths_from_environment,
    read_split,
    resume_mode,
)


def as_arguments(rendered: dict[str, str]) -> list[str]:
    """The ``--key value`` list SageMaker's container passes for a HyperParameters map."""
    arguments: list[str] = []
    for key, value in rendered.items():
        arguments += [f"--{key}", value]
    return arguments


def namespace(**values: object) -> argparse.Namespace:
    defaults = dict.fromkeys(("model", "train_dir", "validation_dir", "model_dir", "output_data_dir", "checkpoint_dir"))
    return argparse.Namespace(**{**defaults, **values})


def test_hyperparameters_render_as_strings_with_dashed_keys_and_skip_unset_fields() -> None:
    hp = Hyperparameters(task="ner", method="full", learning_rate=3e-5, merge=True, labels=("O", "B-X", "I-X"))
    rendered = hp.to_hyperparameters()
    assert rendered["learning-rate"] == "3e-05"
    assert rendered["merge"] == "true"
    assert rendered["labels"] == "O,B-X,I-X"
    assert rendered["lora-targets"] == "all-linear"
    assert "chat" not in rendered and "threads" not in rendered  # None: the script's default
    assert "labels" not in Hyperparameters(task="sft").to_hyperparameters()  # empty: the defaults
    assert all(isinstance(value, str) for value in rendered.values())


@pytest.mark.parametrize(
    "hp",
    [
        Hyperparameters(task="sft"),
        Hyperparameters(
            task="sft", method="full", epochs=0.5, chat=False, threads=2, lora_targets=("q_proj", "v_proj"), seed=9
        ),
        Hyperparameters(task="classify", method="full", labels=("benign", "threat"), max_steps=7, warmup_ratio=0.0),
    ],
)
def test_rendered_hyperparameters_parse_back_to_the_same_value(hp: Hyperparameters) -> None:
    assert Hyperparameters.from_hyperparameters(hp.to_hyperparameters()) == hp
    parsed, _ = parse_job_arguments(as_arguments(hp.to_hyperparameters()))
    assert parsed == hp


def test_lists_become_tuples_so_replace_with_a_list_still_compares_equal() -> None:
    hp = replace(Hyperparameters(task="sft"), lora_targets=["q_proj"])  # type: ignore[arg-type]
    assert hp.lora_targets == ("q_proj",)
    assert hp.to_dict()["lora_targets"] == ["q_proj"]


def test_learning_rate_defaults_by_method_and_model_kind() -> None:
    assert Hyperparameters(task="sft").effective_learning_rate() == 5e-4
    assert Hyperparameters(task="sft", method="full").effective_learning_rate() == 2e-5
    assert Hyperparameters(task="qa", method="full").effective_learning_rate() == 3e-4
    assert Hyperparameters(task="qa", method="full", learning_rate=1e-3).effective_learning_rate() == 1e-3


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"task": "translate"}, "unknown training task"),
        ({"method": "qlora"}, "lora or full"),
        ({"batch_size": 0}, "--batch-size must be at least 1"),
        ({"epochs": 0}, "--epochs"),
        ({"max_steps": 0}, "--max-steps"),
        ({"lora_dropout": 1.0}, "--lora-dropout"),
        ({"labels": ("O",)}, "--labels is for the ner and classify"),
        ({"lora_targets": ()}, "--lora-targets is empty"),
    ],
)
def test_out_of_range_hyperparameters_are_refused_with_the_key(changes: dict[str, object], words: str) -> None:
    with pytest.raises(UserError, match=words):
        Hyperparameters(**{"task": "sft", **changes})  # type: ignore[arg-type]


def test_the_entry_script_arguments_pick_the_task_default_method_and_ignore_sagemaker_keys() -> None:
    hp, args = parse_job_arguments(["--task", "qa", "--model", "m", "--sagemaker_program", "train.py"])
    assert hp.method == "full"
    assert args.model == "m"
    assert args.resume == "false"
    hp, args = parse_job_arguments(["--task", "sft", "--resume"])
    assert hp.method == "lora"
    assert resume_mode(args.resume) == "true"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--task", "sft", "--learnig-rate", "1"], "unknown argument --learnig-rate"),
        (["--epochs", "1"], "no --task"),
        (["--task", "sft", "--batch-size", "two"], "--batch-size takes a whole number"),
        (["--task", "sft", "--merge", "maybe"], "--merge takes true or false"),
        (["--task", "sft", "--epochs"], "expected one argument"),
    ],
)
def test_bad_entry_script_arguments_are_user_errors(argv: list[str], words: str) -> None:
    with pytest.raises(UserError, match=words):
        parse_job_arguments(argv)


def test_resume_takes_true_false_or_auto() -> None:
    assert resume_mode("AUTO") == "auto"
    assert resume_mode("0") == "false"
    with pytest.raises(UserError, match="--resume takes true or false"):
        resume_mode("later")


def test_paths_come_from_arguments_first_then_the_container_variables(tmp_path: Path) -> None:
    environ = {
        "SM_CHANNEL_MODEL": "/opt/ml/input/data/model",
        "SM_CHANNEL_TRAIN": "/opt/ml/input/data/train",
        "SM_CHANNEL_VALIDATION": "/opt/ml/input/data/validation",
        "SM_MODEL_DIR": "/opt/ml/model",
        "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data",
        "SM_NUM_GPUS": "1",
    }
    paths = paths_from_environment(namespace(), environ)
    assert paths.model == "/opt/ml/input/data/model"
    assert paths.train_dir == Path("/opt/ml/input/data/train")
    assert paths.validation_dir == Path("/opt/ml/input/data/validation")
    assert paths.model_dir == Path("/opt/ml/model")
    assert paths.output_data_dir == Path("/opt/ml/output/data")
    assert paths.checkpoint_dir == Path("/opt/ml/checkpoints")
    assert paths.num_gpus == 1
    given = paths_from_environment(namespace(model="base.gguf", model_dir=str(tmp_path / "m")), environ)
    assert given.model == "base.gguf"
    assert given.model_dir == tmp_path / "m"
    assert given.checkpoint_dir == tmp_path / "checkpoints"


def test_local_defaults_find_the_validation_split_beside_the_training_split(tmp_path: Path) -> None:
    (tmp_path / "validation").mkdir()
    (tmp_path / "validation" / "validation.jsonl").write_text("{}\n", encoding="utf-8")
    paths = paths_from_environment(namespace(model="m", train_dir=str(tmp_path / "train")), {})
    assert paths.validation_dir == tmp_path / "validation"
    assert paths.model_dir == Path("model")
    assert paths.output_data_dir == Path("output")
    assert paths.num_gpus == 0
    alone = paths_from_environment(namespace(model="m", train_dir=str(tmp_path / "elsewhere" / "train")), {})
    assert alone.validation_dir is None


def test_missing_model_or_data_and_checkpoints_inside_the_model_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no base model"):
        paths_from_environment(namespace(train_dir="t"), {})
    with pytest.raises(UserError, match="no training data"):
        paths_from_environment(namespace(model="m"), {})
    inside = namespace(model="m", train_dir="t", model_dir=str(tmp_path), checkpoint_dir=str(tmp_path / "c"))
    with pytest.raises(UserError, match="inside the model folder"):
        paths_from_environment(inside, {})


def test_read_split_names_the_record_and_line_that_lacks_a_field(tmp_path: Path) -> None:
    lines = [json.dumps({"id": "a", "prompt": "p", "response": "r"}), "", json.dumps({"id": "b", "prompt": "p"})]
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"record b \(.*line 3\) lacks the field 'response'"):
        read_split(tmp_path, "train.jsonl", ("id", "prompt", "response"))
    assert read_split(tmp_path, "train.jsonl", ("id",))[0]["id"] == "a"


def test_read_split_refuses_a_missing_file_and_lines_that_are_not_objects(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"no train\.jsonl"):
        read_split(tmp_path, "train.jsonl", ())
    (tmp_path / "train.jsonl").write_text("[1]\n", encoding="utf-8")
    with pytest.raises(UserError, match="line 1: expected a JSON object"):
        read_split(tmp_path, "train.jsonl", ())
    (tmp_path / "train.jsonl").write_text("{oops\n", encoding="utf-8")
    with pytest.raises(UserError, match="line 1: not valid JSON"):
        read_split(tmp_path, "train.jsonl", ())


def test_latest_checkpoint_is_the_highest_step(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path / "none") is None
    for name in ("checkpoint-9", "checkpoint-12", "checkpoint-x"):
        (tmp_path / name).mkdir()
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-12"
