"""User input in Windows' path form is read as a path: model paths, dataset files and run folder names."""

from __future__ import annotations

from pathlib import Path, PureWindowsPath

import pytest

from slm_eval.errors import UserError
from slm_eval.models.catalogue import default_registry
from slm_eval.training.job import TrainTask
from slm_eval.training.prepare import DatasetRequest, prepare_dataset
from slm_eval.training.run_folder import run_folder

WINDOWS_MODELS = [
    PureWindowsPath("C:/Users/officer/models/smollm2.gguf"),
    PureWindowsPath("C:/Users/me@agency/models/phi-3-mini"),  # an "@" in a folder name is not model@variant
    PureWindowsPath("D:model.onnx"),
    PureWindowsPath("models/tiny-llama"),
    PureWindowsPath("//server/share/models/x.gguf"),
]


@pytest.mark.parametrize("path", WINDOWS_MODELS, ids=str)
def test_a_windows_model_path_that_is_missing_is_named_as_a_path(path: PureWindowsPath) -> None:
    text = str(path)
    assert "\\" in text or ":" in text
    with pytest.raises(UserError, match=r"model path .* does not exist"):
        default_registry().resolve(text, Path("unused-store"))


def test_names_and_variants_are_not_taken_for_paths() -> None:
    with pytest.raises(UserError, match="unknown model 'smollm3'"):
        default_registry().resolve("smollm3")
    with pytest.raises(UserError, match="no variant 'onnx-int9' of smollm2-135m-instruct"):
        default_registry().resolve("smollm2@onnx-int9", Path("no-store"))


@pytest.mark.parametrize("task", ["sft", "qa"])
def test_a_windows_dataset_path_is_read_as_a_file(tmp_path: Path, task: TrainTask) -> None:
    text = str(PureWindowsPath("C:/Users/officer/data/my_questions.jsonl"))
    with pytest.raises(UserError, match=r"my_questions\.jsonl"):
        prepare_dataset(DatasetRequest(dataset=text, task=task), tmp_path)


def test_a_model_named_by_a_windows_path_gets_one_run_folder(tmp_path: Path) -> None:
    for path in WINDOWS_MODELS:
        run = run_folder(tmp_path, str(path), "cd" * 32)
        assert run.root.parent.parent == tmp_path / "runs"
        assert "\\" not in run.root.parent.name
        assert ":" not in run.root.parent.name
