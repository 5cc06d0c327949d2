"""The CreateTrainingJob request: validated by botocore's service model through a Stubber on a real client."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ParamValidationError
from botocore.stub import Stubber

from slm_eval.errors import UserError
from slm_eval.training.sagemaker import dry_run_text
from slm_eval.training.sagemaker_checks import request_problems, sagemaker_service_model
from slm_eval.training.sagemaker_request import TrainingJobPlan, plan_training_job, training_job_name
from tests.training.sagemaker_fakes import (
    BUCKET,
    HYPERPARAMETERS,
    NOW,
    REGION,
    ROLE,
    fake_aws_environment,
    prepared_dataset,
    settings,
    source_tarball,
)

JOB = "slm-eval-smollm2-135m-instruct-20250304-050607"
ROOT = f"s3://{BUCKET}/slm-eval/{JOB}"
HF_IMAGE = (
    f"763104351884.dkr.ecr.{REGION}.amazonaws.com/huggingface-pytorch-training:"
    "2.9.0-transformers5.3.0-gpu-py312-cu130-ubuntu22.04"
)


@pytest.fixture
def sagemaker_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """A real boto3 SageMaker client with fake credentials from the environment, in a fixed region."""
    fake_aws_environment(monkeypatch, tmp_path)
    return boto3.Session().client("sagemaker", region_name=REGION)


def _plan(tmp_path: Path, base_model: Path | str | None = None, **changes: Any) -> TrainingJobPlan:
    if base_model is None:
        base_model = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
        base_model.write_bytes(b"GGUF" + bytes(60))
    return plan_training_job(
        settings(**changes),
        region=REGION,
        job_name=JOB,
        model_name="smollm2-135m-instruct",
        dataset=prepared_dataset(tmp_path),
        base_model=base_model,
        hyperparameters=HYPERPARAMETERS,
        source_tarball=source_tarball(tmp_path),
    )


def test_job_names_follow_sagemakers_rules() -> None:
    pattern = sagemaker_service_model().operation_model("CreateTrainingJob").input_shape.members["TrainingJobName"]
    assert training_job_name("smollm2-135m-instruct", NOW) == JOB
    odd = training_job_name("TinyLlama-1.1B@ft-20250101-abc_123", NOW)
    assert odd == "slm-eval-tinyllama-1-1b-ft-20250101-abc-123-20250304-050607"
    long = training_job_name("a-very-long-model-name-" * 4, NOW)
    assert len(long) <= 63 and long.endswith("-20250304-050607") and "--" not in long
    for name in (JOB, odd, long, training_job_name("@@@", NOW)):
        assert re.fullmatch(pattern.metadata["pattern"], name), name


def test_a_local_gguf_becomes_the_model_channel_and_every_field_is_set(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    request = plan.request
    assert [upload.uri for upload in plan.uploads] == [
        f"{ROOT}/input/train/train.jsonl",
        f"{ROOT}/input/validation/validation.jsonl",
        f"{ROOT}/input/dataset.json",
        f"{ROOT}/input/model/SmolLM2-135M-Instruct.Q4_1.gguf",
        f"{ROOT}/source/sourcedir.tar.gz",
    ]
    assert plan.uploads[3].size == 64
    assert request["AlgorithmSpecification"] == {"TrainingImage": HF_IMAGE, "TrainingInputMode": "File"}
    assert request["RoleArn"] == ROLE
    channels = {
        channel["ChannelName"]: channel["DataSource"]["S3DataSource"]["S3Uri"] for channel in request["InputDataConfig"]
    }
    assert channels == {n: f"{ROOT}/input/{n}/" for n in ("train", "validation", "model")}
    assert request["OutputDataConfig"] == {"S3OutputPath": f"{ROOT}/output"}
    assert request["ResourceConfig"] == {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50}
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 14400}
    assert request["EnableManagedSpotTraining"] is False
    assert request["CheckpointConfig"] == {"S3Uri": f"{ROOT}/checkpoints", "LocalPath": "/opt/ml/checkpoints"}
    assert {"Key": "slm-eval:model", "Value": "smollm2-135m-instruct"} in request["Tags"]


def test_hyperparameters_are_json_encoded_like_the_sdk_with_script_mode_keys(tmp_path: Path) -> None:
    encoded = _plan(tmp_path).request["HyperParameters"]
    decoded = {key: json.loads(value) for key, value in encoded.items()}
    assert encoded["epochs"] == '"1"' and encoded["sagemaker_program"] == '"train.py"'
    assert decoded == {
        **HYPERPARAMETERS,
        "checkpoint-dir": "/opt/ml/checkpoints",
        "resume": "auto",
        "sagemaker_program": "train.py",
        "sagemaker_submit_directory": f"{ROOT}/source/sourcedir.tar.gz",
        "sagemaker_region": REGION,
        "sagemaker_job_name": JOB,
        "sagemaker_container_log_level": 20,
    }
    assert "model" not in decoded  # the container finds the base model in SM_CHANNEL_MODEL


def test_a_hub_id_is_the_model_hyperparameter_and_no_channel(tmp_path: Path) -> None:
    plan = _plan(tmp_path, base_model="HuggingFaceTB/SmolLM2-135M-Instruct")
    assert json.loads(plan.request["HyperParameters"]["model"]) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert [channel["ChannelName"] for channel in plan.request["InputDataConfig"]] == ["train", "validation"]
    assert not any("/input/model/" in upload.key for upload in plan.uploads)


def test_a_model_folder_uploads_each_file_but_hidden_ones(tmp_path: Path) -> None:
    folder = tmp_path / "minilm"
    (folder / "tokenizer").mkdir(parents=True)
    (folder / ".cache").mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer/vocab.txt", ".cache/lock"):
        (folder / name).write_text("x", encoding="utf-8")
    keys = [upload.key.rpartition("/input/model/")[2] for upload in _plan(tmp_path, folder).uploads]
    assert [key for key in keys if "/" not in key or key.startswith("tokenizer")][:3] == [
        "config.json",
        "model.safetensors",
        "tokenizer/vocab.txt",
    ]
    assert ".cache/lock" not in keys


def test_spot_sets_the_wait_and_the_flag(tmp_path: Path) -> None:
    request = _plan(tmp_path, use_spot_instances=True, max_run_seconds=3600).request
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}


def test_the_stubber_accepts_the_request_against_botocores_service_model(tmp_path: Path, sagemaker_client: Any) -> None:
    plan = _plan(tmp_path, use_spot_instances=True)
    arn = f"arn:aws:sagemaker:{REGION}:123456789012:training-job/{JOB}"
    with Stubber(sagemaker_client) as stubber:
        stubber.add_response("create_training_job", {"TrainingJobArn": arn}, expected_params=plan.request)
        assert sagemaker_client.create_training_job(**plan.request) == {"TrainingJobArn": arn}
        stubber.assert_no_pending_responses()
    assert request_problems(plan.request) == []


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("RoleArn",), None, r"Missing required parameter in input: \"RoleArn\""),
        (("ResourceConfig", "InstanceCount"), "1", r"Invalid type for parameter ResourceConfig.InstanceCount"),
        (("HyperParameter",), {"epochs": "1"}, r"Unknown parameter in input: \"HyperParameter\""),
        (("TrainingJobName",), "", r"Invalid length for parameter TrainingJobName"),
    ],
)
def test_the_stubbed_client_rejects_a_broken_request(
    tmp_path: Path, sagemaker_client: Any, path: tuple[str, ...], value: Any, message: str
) -> None:
    request = copy.deepcopy(_plan(tmp_path).request)
    node = request
    for key in path[:-1]:
        node = node[key]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    with Stubber(sagemaker_client) as stubber:
        stubber.add_response("create_training_job", {"TrainingJobArn": "arn"}, expected_params=request)
        with pytest.raises(ParamValidationError, match=message):
            sagemaker_client.create_training_job(**request)
    assert any(re.search(message, problem) for problem in request_problems(request))


def test_an_unknown_instance_type_passes_botocore_but_not_the_service_rules(
    tmp_path: Path, sagemaker_client: Any
) -> None:
    request = copy.deepcopy(_plan(tmp_path).request)
    request["ResourceConfig"]["InstanceType"] = "ml.g5.2xlarg"
    with Stubber(sagemaker_client) as stubber:  # botocore leaves enums to the service
        stubber.add_response("create_training_job", {"TrainingJobArn": "arn"}, expected_params=request)
        sagemaker_client.create_training_job(**request)
    [problem] = request_problems(request)
    assert problem.startswith(
        "CreateTrainingJob.ResourceConfig.InstanceType='ml.g5.2xlarg' is not a valid TrainingInstanceType: "
        "did you mean ml.g5.2xlarge, "
    )


def test_service_rules_catch_lengths_and_patterns(tmp_path: Path) -> None:
    request = copy.deepcopy(_plan(tmp_path).request)
    request["TrainingJobName"] = "x" * 64
    request["RoleArn"] = "arn:aws:iam::123:role/short-account"
    request["HyperParameters"]["lora-targets"] = json.dumps("q" * 2600)
    problems = request_problems(request)
    assert any("TrainingJobName has 64 characters, more than its maximum 63" in p for p in problems)
    assert any(p.startswith("CreateTrainingJob.RoleArn='arn:aws:iam::123:role") for p in problems)
    assert any("HyperParameters['lora-targets'] has 2602 characters" in p for p in problems)


def test_the_plan_refuses_an_instance_type_sagemaker_does_not_train_on(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"InstanceType='ml.g5.2xlarg' .* did you mean ml.g5.2xlarge"):
        _plan(tmp_path, image_uri="123.dkr.ecr.eu-west-1.amazonaws.com/x:1", default_instance_type="ml.g5.2xlarg")


def test_no_image_for_a_cpu_instance_says_what_to_change(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"no Hugging Face training image .* on ml.m5.xlarge in eu-west-1 .*image_uri"):
        _plan(tmp_path, default_instance_type="ml.m5.xlarge")


def test_missing_inputs_are_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"does not exist: give a GGUF file, a model folder or a hub id"):
        _plan(tmp_path, base_model=tmp_path / "missing")
    dataset = prepared_dataset(tmp_path / "other")
    (dataset / "validation" / "validation.jsonl").unlink()
    with pytest.raises(UserError, match=r"has no validation/validation.jsonl: prepare the dataset again"):
        plan_training_job(
            settings(),
            region=REGION,
            job_name=JOB,
            model_name="m",
            dataset=dataset,
            base_model="org/model",
            hyperparameters=HYPERPARAMETERS,
            source_tarball=source_tarball(tmp_path),
        )


def test_script_mode_keys_are_reserved(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sagemaker_program is reserved"):
        plan_training_job(
            settings(),
            region=REGION,
            job_name=JOB,
            model_name="m",
            dataset=prepared_dataset(tmp_path),
            base_model="org/model",
            hyperparameters={"sagemaker_program": "evil.py"},
            source_tarball=source_tarball(tmp_path),
        )


def test_the_dry_run_prints_every_upload_and_the_full_request(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    text = dry_run_text(plan)
    head, _, request_json = text.partition("CreateTrainingJob request:\n")
    assert json.loads(request_json) == plan.request
    assert "S3 uploads (5 files, " in head and "nothing uploaded, nothing called" in head
    for upload in plan.uploads:
        assert f"{upload.path} (" in head and f"-> {upload.uri}" in head
    assert "(64 B)" in head
