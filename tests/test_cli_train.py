"""``slm-eval train``: bad input is one line before any work; a SageMaker dry run prints its request; runs store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import RunCli
from tests.training.sagemaker_fakes import BUCKET, REGION, ROLE, fake_aws_environment


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--model", "grok"), "grok-3-mini-fast is an api model: it runs elsewhere and cannot be trained here"),
        (("--model", "minilm", "--task", "sft"), "all-minilm-l6-v2 is an encoder: it trains qa"),
        (("--model", "smollm2", "--task", "ner"), "smollm2-135m-instruct is a decoder: it trains sft"),
        (("--model", "smollm2", "--full", "--lora"), "--full and --lora contradict each other"),
        (("--model", "smollm2", "--dry-run"), "--dry-run is for SageMaker jobs: add --backend sagemaker"),
        (("--model", "smollm2", "--backend", "azure"), "unknown training backend 'azure'"),
        (("--model", "smollm2", "--epochs", "0"), "--epochs must be above 0"),
        (("--model", "minilm", "--dataset", "report-generation"), "report-generation"),
        (("--model", "smollm2", "--dataset", "multilingual-triage"), "multilingual-triage"),
        (("--model", "smollm2", "--dataset", "missing.jsonl"), "missing.jsonl"),
        (("--model", "phi-3-mini", "--dataset", "squad"), "not available offline"),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_variant(run_cli: RunCli, argv: tuple[str, ...], message: str) -> None:
    result = run_cli("train", *argv)
    assert message in result.error_line()
    assert not Path("data/models").exists()


def test_a_record_without_its_field_names_the_line(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "pairs.jsonl").write_text('{"prompt": "Which form?", "response": "Form 105"}\n{"prompt": "x"}\n')
    line = run_cli("train", "--model", "smollm2", "--dataset", "pairs.jsonl").error_line()
    assert "pairs.jsonl" in line
    assert "line 2" in line
    assert "response" in line


def _sagemaker_config(tmp_path: Path, **changes: str) -> str:
    path = tmp_path / "sagemaker.json"
    path.write_text(json.dumps({"region": REGION, "role_arn": ROLE, "bucket": BUCKET, **changes}))
    return str(path)


def test_a_sagemaker_dry_run_prints_the_request_and_uploads_and_calls_nothing(
    run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_aws_environment(monkeypatch, tmp_path, credentials=False)  # a call would fail for want of credentials
    config = _sagemaker_config(tmp_path)
    result = run_cli("train", "--model", "smollm2", "--backend", "sagemaker", "--dry-run", "--sagemaker-config", config)
    assert result.code == 0, result.err
    assert "dry run: nothing uploaded, nothing called" in result.out
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in result.out  # the base model goes up as the model channel
    request = json.loads(result.out[result.out.index("{") :])
    assert request["RoleArn"] == ROLE
    assert request["HyperParameters"]["sagemaker_program"] == '"train.py"'
    assert json.loads(request["HyperParameters"]["task"]) == "sft"
    assert not Path("data/models").exists()


def test_a_sagemaker_config_without_a_role_names_the_key(
    run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_aws_environment(monkeypatch, tmp_path)
    config = _sagemaker_config(tmp_path, role_arn="")
    line = run_cli("train", "--model", "smollm2", "--backend", "sagemaker", "--sagemaker-config", config).error_line()
    assert "has no role_arn" in line
    assert not Path("data/training").exists()  # refused before preparing or uploading anything


@pytest.mark.slow
def test_training_minilm_stores_a_variant_that_evaluate_warns_about(run_cli: RunCli) -> None:
    result = run_cli("train", "--model", "minilm", "--max-steps", "2", "--score-limit", "3", "--json")
    assert result.code == 0, result.err
    outcome = json.loads(result.out)
    assert outcome["variant"].startswith("all-minilm-l6-v2@ft-")
    assert outcome["before"]["sets"][0]["examples"] == outcome["after"]["sets"][0]["examples"] == 3
    manifest = json.loads((Path(outcome["path"]) / "manifest.json").read_text())
    assert manifest["training"]["dataset"]["train"] == 123
    assert manifest["training"]["hyperparameters"]["max-steps"] == "2"
    assert manifest["source"]["sha256"]

    listed = run_cli("models", "--json")
    assert outcome["variant"].split("@")[1] in listed.out
    evaluated = run_cli("evaluate", "--model", outcome["variant"], "--limit", "3", "--device", "host")
    assert evaluated.code == 0, evaluated.err
    (summary,) = Path("results").glob("*/summary.json")
    warnings = json.loads(summary.read_text())["warnings"]
    assert any("of 3 evaluated examples were in all-minilm-l6-v2@ft-" in item for item in warnings), warnings


@pytest.mark.slow
def test_lora_on_smollm2_stores_an_adapter_that_runs(run_cli: RunCli) -> None:
    result = run_cli(
        "train", "--model", "smollm2", "--max-steps", "1", "--max-length", "320", "--limit", "4",
        "--validation-limit", "2", "--score-limit", "0", "--name", "ft-test", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    variant = Path("data/models/smollm2-135m-instruct/ft-test")
    assert (variant / "adapter_model.safetensors").is_file()
    assert not (variant / "model.safetensors").exists()
    answered = run_cli(
        "quick-test", "--model", "smollm2@ft-test", "--backend", "transformers", "--input", "What is a visa?",
        "--max-new-tokens", "4", "--json",
    )  # fmt: skip
    assert answered.code == 0, answered.err
    again = run_cli("train", "--model", "smollm2", "--max-steps", "1", "--limit", "4", "--name", "ft-test")
    assert "already exists" in again.error_line()
    for command in (("convert", "--format", "onnx"), ("quantize", "--bits", "8", "--format", "pytorch")):
        refused = run_cli(*command, "--model", "smollm2@ft-test")
        assert "is a LoRA adapter, not a whole model" in refused.error_line()
