"""Planning a training run: the model's kind decides the tasks it trains, and hyperparameters are settled early."""

from __future__ import annotations

import pytest

from slm_eval.errors import UserError
from slm_eval.models.catalogue import default_registry
from slm_eval.training.plan import TrainRequest, plan_training


def _plan(model: str, **fields: object):  # type: ignore[no-untyped-def]
    card = default_registry().resolve(model)
    return plan_training(TrainRequest(model=card.name, **fields), card, seed=3)  # type: ignore[arg-type]


def test_a_decoder_trains_sft_with_lora_by_default() -> None:
    plan = _plan("smollm2")
    assert plan.task == "sft"
    assert plan.hyperparameters.method == "lora"
    assert plan.hyperparameters.seed == 3
    assert not plan.hyperparameters.merge


def test_full_fine_tuning_and_overrides_reach_the_hyperparameters() -> None:
    plan = _plan("smollm2", full=True, overrides={"epochs": 1.0, "learning_rate": 1e-4, "lora_r": None})
    assert plan.hyperparameters.method == "full"
    assert plan.hyperparameters.epochs == 1.0
    assert plan.hyperparameters.learning_rate == 1e-4
    assert plan.hyperparameters.lora_r == 16  # an option left out keeps its default


def test_an_encoder_trains_qa_in_full_by_default_and_merges_lora() -> None:
    plan = _plan("minilm")
    assert (plan.task, plan.hyperparameters.method) == ("qa", "full")
    lora = _plan("minilm", task="ner", lora=True)
    assert (lora.task, lora.hyperparameters.method, lora.hyperparameters.merge) == ("ner", "lora", True)


@pytest.mark.parametrize(
    ("model", "task", "message"),
    [
        ("minilm", "sft", r"all-minilm-l6-v2 is an encoder: it trains qa \(extractive question answering\), ner"),
        ("smollm2", "qa", r"smollm2-135m-instruct is a decoder: it trains sft \(supervised fine-tuning"),
        ("smollm2", "summarise", r"unknown task 'summarise'; smollm2-135m-instruct is a decoder: it trains sft"),
    ],
)
def test_a_task_the_kind_cannot_train_names_the_tasks_it_can(model: str, task: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        _plan(model, task=task)


def test_an_api_model_cannot_be_trained() -> None:
    with pytest.raises(UserError, match="grok-3-mini-fast is an api model: it runs elsewhere and cannot be trained"):
        _plan("grok")


def test_contradicting_or_unknown_options_are_refused() -> None:
    with pytest.raises(UserError, match="--full and --lora contradict"):
        _plan("smollm2", full=True, lora=True)
    with pytest.raises(UserError, match="unknown training backend 'azure'"):
        _plan("smollm2", backend="azure")
    with pytest.raises(UserError, match="unknown hyperparameter warmup"):
        _plan("smollm2", overrides={"warmup": 3})
