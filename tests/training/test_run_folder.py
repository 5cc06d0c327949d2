"""Run folders: the same model, weights, data and hyperparameters find the same folder, which --resume uses."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from slm_eval.training.run_folder import run_folder, run_key


def test_the_key_depends_on_everything_that_shapes_the_result() -> None:
    key = run_key("smollm2", "aa", "bb", {"epochs": "3"})
    assert key == run_key("smollm2", "aa", "bb", {"epochs": "3"})
    assert (
        len(
            {
                key,
                run_key("minilm", "aa", "bb", {"epochs": "3"}),
                run_key("smollm2", "ab", "bb", {"epochs": "3"}),
                run_key("smollm2", "aa", "bc", {"epochs": "3"}),
                run_key("smollm2", "aa", "bb", {"epochs": "2"}),
            }
        )
        == 5
    )


def test_folders_and_the_variant_name(tmp_path: Path) -> None:
    run = run_folder(tmp_path, "smollm2-135m-instruct@onnx-int4", "0123456789abcdef" * 4)
    assert run.root == tmp_path / "runs" / "smollm2-135m-instruct--onnx-int4" / "0123456789abcdef"
    assert run.checkpoints.parent == run.model.parent == run.root
    assert run.variant_name(datetime(2026, 11, 29, tzinfo=timezone.utc)) == "ft-20261129-0123456"


def test_a_model_given_as_a_path_gets_one_folder_inside_the_training_root(tmp_path: Path) -> None:
    for model in ("/abs/models/tiny-llama", r"C:\models\x.gguf", "../up/../model"):
        run = run_folder(tmp_path, model, "ab" * 32)
        assert run.root.parent.parent == tmp_path / "runs"
    assert run_folder(tmp_path, "/abs/models/tiny-llama", "ab" * 32).root.parent.name == "abs-models-tiny-llama"
