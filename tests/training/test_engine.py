"""The training engine on tiny random models (and, marked slow, on the bundled SmolLM2 GGUF and MiniLM)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from slm_eval.errors import UserError
from slm_eval.training.engine import StopFlag, TrainingInterrupted, run_training
from slm_eval.training.engine_models import locate_base_model
from slm_eval.training.engine_stop import stop_on_sigint
from slm_eval.training.job import Hyperparameters, JobPaths
from tests.training.engine_fixtures import (
    NER_RECORDS,
    QA_RECORDS,
    SFT_RECORDS,
    tiny_bert,
    tiny_decoder,
    write_dataset,
)

pytest.importorskip("peft")

SFT = Hyperparameters(task="sft", epochs=3, batch_size=4, learning_rate=5e-3, threads=2, early_stopping_patience=0)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


class StopAfter(StopFlag):
    """A stop flag that reads as set from its ``steps``-th reading on (the engine reads it once per step)."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps
        self.readings = 0

    def is_set(self) -> bool:
        self.readings += 1
        return self.readings >= self.steps or super().is_set()


@pytest.fixture(scope="module")
def decoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_decoder(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("sft-data"), SFT_RECORDS * 4, SFT_RECORDS)


def job(root: Path, model: Path | str, data: Path, *, validation: bool = True) -> JobPaths:
    return JobPaths(
        model=str(model),
        train_dir=data / "train",
        validation_dir=data / "validation" if validation else None,
        model_dir=root / "model",
        output_data_dir=root / "output",
        checkpoint_dir=root / "checkpoints",
        num_gpus=0,
    )


def read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def test_lora_lowers_the_loss_and_saves_the_adapter_with_the_tokenizer(
    decoder: Path, sft_data: Path, tmp_path: Path
) -> None:
    outcome = run_training(SFT, job(tmp_path, decoder, sft_data), resume=False, progress=False)
    model_dir = tmp_path / "model"
    assert outcome.layout == "adapter"
    assert {"adapter_config.json", "adapter_model.safetensors", *TOKENIZER_FILES} <= {
        p.name for p in model_dir.iterdir()
    }
    assert not (model_dir / "config.json").exists()
    metrics = read(model_dir / "training_metrics.json")
    assert metrics == outcome.metrics == read(tmp_path / "output" / "training_metrics.json")
    losses = [entry["eval_loss"] for entry in metrics["eval_loss_per_epoch"]]
    assert len(losses) == 3
    assert losses[-1] < losses[0] * 0.8
    assert metrics["loss_history"][-1]["loss"] < metrics["loss_history"][0]["loss"]
    assert metrics["steps"] == 12 and metrics["best_epoch"] == 3.0 and not metrics["early_stopped"]
    assert metrics["train_tokens"] > 0 and metrics["tokens_per_s"] > 0
    assert metrics["resumed_from"] is None
    saved = read(model_dir / "hyperparameters.json")
    assert saved["lora_r"] == 16 and saved["base_model"] == str(decoder) and saved["layout"] == "adapter"
    assert saved["effective_learning_rate"] == 5e-3


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")  # peft on transformers 5
def test_merge_writes_a_whole_model_whose_logits_equal_the_adapted_ones(
    decoder: Path, sft_data: Path, tmp_path: Path
) -> None:
    import peft
    import torch
    import transformers

    hp = replace(SFT, epochs=1, merge=True)
    assert run_training(hp, job(tmp_path, decoder, sft_data), resume=False, progress=False).layout == "merged"
    model_dir = tmp_path / "model"
    assert (model_dir / "adapter" / "adapter_config.json").is_file()
    merged = transformers.AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    base = transformers.AutoModelForCausalLM.from_pretrained(str(decoder))
    adapted = peft.PeftModel.from_pretrained(base, str(model_dir / "adapter")).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    ids = tokenizer("what is a visa", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected, got = adapted(ids).logits, merged(ids).logits
    untrained = transformers.AutoModelForCausalLM.from_pretrained(str(decoder)).eval()
    with torch.no_grad():
        assert not torch.allclose(untrained(ids).logits, expected, atol=1e-3)  # the adapter learned something
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_ctrl_c_saves_a_checkpoint_and_resume_continues_the_step_count(
    decoder: Path, sft_data: Path, tmp_path: Path
) -> None:
    paths = job(tmp_path, decoder, sft_data)
    with pytest.raises(TrainingInterrupted, match=r"interrupted at step 2.*--resume") as caught:
        run_training(SFT, paths, resume=False, stop=StopAfter(2), progress=False)
    assert caught.value.checkpoint == tmp_path / "checkpoints" / "checkpoint-2"
    assert (caught.value.checkpoint / "trainer_state.json").is_file()
    assert not (tmp_path / "model").exists() or not any((tmp_path / "model").iterdir())  # no half-written model
    with pytest.raises(UserError, match="holds checkpoints of an earlier run"):
        run_training(SFT, paths, resume=False, progress=False)
    with pytest.raises(UserError, match="trained with lora-r 16, not 8"):
        run_training(replace(SFT, lora_r=8), paths, resume=True, progress=False)
    outcome = run_training(SFT, paths, resume=True, progress=False)
    assert outcome.metrics["steps"] == 12
    assert outcome.metrics["resumed_from"] == str(tmp_path / "checkpoints" / "checkpoint-2")
    assert [entry["step"] for entry in outcome.metrics["loss_history"]][:3] == [1, 2, 3]
    assert len(outcome.metrics["eval_loss_per_epoch"]) == 3


def test_the_ctrl_c_handler_sets_the_flag_then_interrupts_and_is_restored_after() -> None:
    import signal

    before = signal.getsignal(signal.SIGINT)
    flag = StopFlag()
    with stop_on_sigint(flag):
        handler = signal.getsignal(signal.SIGINT)
        assert callable(handler) and handler is not before
        handler(signal.SIGINT, None)  # what a first Ctrl-C calls
        assert flag.is_set()
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGINT, None)  # a second one stops at once
    assert signal.getsignal(signal.SIGINT) is before


def test_resume_without_a_checkpoint_and_a_full_model_folder_are_refused(
    decoder: Path, sft_data: Path, tmp_path: Path
) -> None:
    with pytest.raises(UserError, match="nothing to resume"):
        run_training(SFT, job(tmp_path, decoder, sft_data), resume=True, progress=False)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "old.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="is not empty"):
        run_training(SFT, job(tmp_path, decoder, sft_data), resume=False, progress=False)


def test_early_stopping_keeps_the_best_epoch(decoder: Path, tmp_path: Path) -> None:
    # The validation answers contradict the training ones, so learning the training set worsens the validation loss.
    contrary = [dict(record, response=record["response"][::-1]) for record in SFT_RECORDS]
    data = write_dataset(tmp_path / "data", SFT_RECORDS * 4, contrary)
    hp = replace(SFT, epochs=6, early_stopping_patience=1, learning_rate=2e-2)
    metrics = run_training(hp, job(tmp_path, decoder, data), resume=False, progress=False).metrics
    assert metrics["early_stopped"]
    assert metrics["steps"] < metrics["max_steps"]
    losses = [entry["eval_loss"] for entry in metrics["eval_loss_per_epoch"]]
    assert metrics["best_eval_loss"] == min(losses)
    assert losses[-1] > min(losses)


def test_without_a_validation_split_training_still_runs(decoder: Path, sft_data: Path, tmp_path: Path) -> None:
    hp = replace(SFT, epochs=1, method="full", learning_rate=1e-3)
    outcome = run_training(hp, job(tmp_path, decoder, sft_data, validation=False), resume=False, progress=False)
    assert outcome.layout == "full"
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert outcome.metrics["eval_loss_per_epoch"] == [] and outcome.metrics["best_epoch"] is None


def test_full_fine_tuning_of_a_tiny_encoder_saves_its_head(tmp_path: Path) -> None:
    folder = tiny_bert(tmp_path / "bert", head="BertModel")
    data = write_dataset(tmp_path / "data", QA_RECORDS * 4, QA_RECORDS)
    hp = Hyperparameters(task="qa", method="full", epochs=3, batch_size=4, learning_rate=5e-3, threads=2)
    outcome = run_training(hp, job(tmp_path, folder, data), resume=False, progress=False)
    assert outcome.layout == "full"
    config = read(tmp_path / "model" / "config.json")
    assert config["architectures"] == ["BertForQuestionAnswering"]
    losses = [entry["eval_loss"] for entry in outcome.metrics["eval_loss_per_epoch"]]
    assert losses[-1] < losses[0]


def test_ner_training_saves_the_bio_labels_in_the_config(tmp_path: Path) -> None:
    from slm_eval.backends.encoder_heads import default_labels

    folder = tiny_bert(tmp_path / "bert", head="BertModel")
    data = write_dataset(tmp_path / "data", NER_RECORDS * 2, NER_RECORDS)
    hp = Hyperparameters(task="ner", method="lora", epochs=1, batch_size=2, threads=2, merge=True)
    assert run_training(hp, job(tmp_path, folder, data), resume=False, progress=False).layout == "merged"
    config = read(tmp_path / "model" / "config.json")
    assert config["architectures"] == ["BertForTokenClassification"]
    assert [config["id2label"][str(i)] for i in range(len(config["id2label"]))] == list(default_labels("ner"))


@pytest.mark.parametrize(
    ("task", "words"),
    [("sft", "is an encoder \\(bert\\): it trains qa, ner or classify"), ("qa", "is a decoder \\(llama\\)")],
)
def test_a_model_of_the_wrong_kind_says_which_tasks_it_trains(
    task: str, words: str, decoder: Path, tmp_path: Path
) -> None:
    folder = tiny_bert(tmp_path / "bert", head="BertModel") if task == "sft" else decoder
    records = SFT_RECORDS if task == "sft" else QA_RECORDS
    data = write_dataset(tmp_path / "data", records, records)
    hp = Hyperparameters(task=task, method="full")  # type: ignore[arg-type]
    with pytest.raises(UserError, match=words):
        run_training(hp, job(tmp_path, folder, data), resume=False, progress=False)


def test_the_base_model_is_found_in_a_channel_folder_or_named_as_a_hub_id(tmp_path: Path) -> None:
    (tmp_path / "channel").mkdir()
    (tmp_path / "channel" / "weights.gguf").write_bytes(b"GGUF")
    assert locate_base_model(str(tmp_path / "channel")).kind == "gguf"
    assert locate_base_model("HuggingFaceTB/SmolLM2-135M-Instruct").kind == "hub"
    with pytest.raises(UserError, match="does not exist"):
        locate_base_model(str(tmp_path / "missing" / "model.gguf"))
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(UserError, match="holds a LoRA adapter"):
        locate_base_model(str(tmp_path / "adapter"))


@pytest.mark.slow
def test_lora_steps_on_the_bundled_smollm2_gguf(smollm2_gguf: Path, sft_data: Path, tmp_path: Path) -> None:
    hp = Hyperparameters(task="sft", max_steps=3, batch_size=2, max_length=64, threads=2, early_stopping_patience=0)
    outcome = run_training(hp, job(tmp_path, smollm2_gguf, sft_data), resume=False, progress=False)
    assert outcome.layout == "adapter"
    assert outcome.metrics["steps"] == 3
    assert len(outcome.metrics["eval_loss_per_epoch"]) == 1
    assert (tmp_path / "model" / "adapter_model.safetensors").is_file()
    assert (
        "chat_template" in (tmp_path / "model" / "tokenizer_config.json").read_text(encoding="utf-8")
        or (tmp_path / "model" / "chat_template.jinja").is_file()
    )


@pytest.mark.slow
def test_qa_steps_on_the_bundled_minilm(tmp_path: Path) -> None:
    from tests.optimize.tiny_encoders import minilm

    _, folder = minilm()
    data = write_dataset(tmp_path / "data", QA_RECORDS * 2, QA_RECORDS)
    hp = Hyperparameters(task="qa", method="full", max_steps=4, batch_size=4, max_length=128, threads=2)
    outcome = run_training(hp, job(tmp_path, folder, data), resume=False, progress=False)
    assert outcome.layout == "full"
    assert read(tmp_path / "model" / "config.json")["architectures"] == ["BertForQuestionAnswering"]
    assert outcome.metrics["steps"] == 4
