"""Launch and fetch against a real S3-compatible server on 127.0.0.1 (moto), SageMaker and Logs stubbed."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from slm_eval.errors import UserError
from slm_eval.training.sagemaker import AwsClients, fetch_result, launch_training_job
from slm_eval.training.sagemaker_request import TrainingJobPlan, plan_training_job, training_job_name
from tests.training.sagemaker_fakes import (
    HYPERPARAMETERS,
    NOW,
    REGION,
    described,
    fake_aws_environment,
    log_event,
    model_archive,
    moto_s3,
    prepared_dataset,
    settings,
    source_tarball,
)

MODEL_FILES = {
    "adapter_config.json": b'{"r": 16}',
    "adapter_model.safetensors": b"\x00" * 2048,
    "adapter/README.md": b"merged adapter",
    "training_metrics.json": b'{"eval_loss": [1.9]}',
}
# Above boto3's 8 MB multipart threshold, so the upload goes in parts.
GGUF_SIZE = 9 * 1024 * 1024


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_s3() as url:
        yield url


@dataclass(frozen=True)
class Bucket:
    """An S3 client pointed at moto and the test's own bucket there."""

    s3: Any
    name: str


@pytest.fixture
def bucket(endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, request: pytest.FixtureRequest) -> Bucket:
    """A fresh bucket in moto, and the S3 client of a fake-credential session that reaches it."""
    fake_aws_environment(monkeypatch, tmp_path)
    client = boto3.Session(region_name=REGION).client("s3", endpoint_url=endpoint)
    name = "b-" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:20]
    client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    return Bucket(client, name)


def _plan(tmp_path: Path, bucket: str) -> TrainingJobPlan:
    gguf = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.write_bytes(b"GGUF" + bytes(range(256)) * (GGUF_SIZE // 256))
    return plan_training_job(
        settings(bucket=bucket),
        region=REGION,
        job_name=training_job_name("smollm2-135m-instruct", NOW),
        model_name="smollm2-135m-instruct",
        dataset=prepared_dataset(tmp_path),
        base_model=gguf,
        hyperparameters=HYPERPARAMETERS,
        source_tarball=source_tarball(tmp_path),
    )


def _stubbed(s3: Any) -> tuple[AwsClients, Stubber, Stubber]:
    session = boto3.Session(region_name=REGION)
    sagemaker, logs = session.client("sagemaker"), session.client("logs")
    return AwsClients(sagemaker=sagemaker, s3=s3, logs=logs, region=REGION), Stubber(sagemaker), Stubber(logs)


def _launch(clients: AwsClients, plan: TrainingJobPlan, dest: Path, printed: list[str], *, wait: bool = True) -> Any:
    return launch_training_job(
        clients, plan, wait=wait, dest=dest, echo=printed.append, sleep=lambda _: None, clock=lambda: 0.0
    )


def test_launch_uploads_creates_follows_and_unpacks_the_model(bucket: Bucket, tmp_path: Path) -> None:
    plan = _plan(tmp_path, bucket.name)
    job = plan.job_name
    artifacts_key = f"slm-eval/{job}/output/{job}/output/model.tar.gz"
    bucket.s3.put_object(Bucket=bucket.name, Key=artifacts_key, Body=model_archive(MODEL_FILES))
    clients, sagemaker, logs = _stubbed(bucket.s3)
    arn = f"arn:aws:sagemaker:{REGION}:123456789012:training-job/{job}"
    sagemaker.add_response("create_training_job", {"TrainingJobArn": arn}, expected_params=plan.request)
    sagemaker.add_response("describe_training_job", described(job, "InProgress", "Training"), {"TrainingJobName": job})
    logs.add_response("filter_log_events", {"events": [log_event(job, 1_741_064_800_000, "epoch 1", "e1")]})
    artifacts = f"s3://{bucket.name}/{artifacts_key}"
    sagemaker.add_response(
        "describe_training_job", described(job, "Completed", "Completed", artifacts=artifacts), {"TrainingJobName": job}
    )
    logs.add_response("filter_log_events", {"events": []})
    printed: list[str] = []

    with sagemaker, logs:
        result = _launch(clients, plan, tmp_path / "variant", printed)
        sagemaker.assert_no_pending_responses()

    for upload in plan.uploads:
        stored = bucket.s3.get_object(Bucket=upload.bucket, Key=upload.key)
        assert stored["Body"].read() == upload.path.read_bytes(), upload.key
    gguf = next(upload for upload in plan.uploads if upload.key.endswith(".gguf"))
    assert bucket.s3.head_object(Bucket=gguf.bucket, Key=gguf.key)["ETag"].endswith('-2"')  # multipart, two parts
    assert (result.status, result.model_dir) == ("Completed", tmp_path / "variant")
    unpacked = {
        p.relative_to(result.model_dir).as_posix(): p.read_bytes() for p in result.model_dir.rglob("*") if p.is_file()
    }
    assert unpacked == MODEL_FILES
    assert [line.split(" ")[0] for line in printed] == ["uploading"] * 5 + [
        "created",
        "[00:00]",
        "epoch",
        "[00:00]",
        "downloading",
        "unpacking",
    ]
    assert not list(tmp_path.glob(".download-*")) and not list(tmp_path.glob(".tmp-*"))


def test_no_wait_returns_after_creating_and_says_how_to_follow(bucket: Bucket, tmp_path: Path) -> None:
    plan = _plan(tmp_path, bucket.name)
    clients, sagemaker, logs = _stubbed(bucket.s3)
    sagemaker.add_response(
        "create_training_job", {"TrainingJobArn": "arn:aws:sagemaker:x"}, expected_params=plan.request
    )
    printed: list[str] = []
    with sagemaker, logs:
        result = _launch(clients, plan, tmp_path / "variant", printed, wait=False)
    assert (result.status, result.model_dir) == ("InProgress", None)
    assert printed[-1].startswith("not waiting: the job runs on SageMaker; follow it with `aws logs tail ")
    assert not (tmp_path / "variant").exists()


def test_fetch_result_downloads_a_completed_job(bucket: Bucket, tmp_path: Path) -> None:
    job = "slm-eval-all-minilm-l6-v2-20250304-050607"
    key = f"slm-eval/{job}/output/{job}/output/model.tar.gz"
    bucket.s3.put_object(Bucket=bucket.name, Key=key, Body=model_archive({"config.json": b"{}"}))
    clients, sagemaker, _ = _stubbed(bucket.s3)
    completed = described(job, "Completed", "Completed", artifacts=f"s3://{bucket.name}/{key}")
    sagemaker.add_response("describe_training_job", completed, {"TrainingJobName": job})
    with sagemaker:
        result = fetch_result(clients, job, tmp_path / "minilm", echo=lambda _: None)
    assert result.model_dir is not None and (result.model_dir / "config.json").read_bytes() == b"{}"


def test_missing_credentials_stop_before_any_upload(
    bucket: Bucket, endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    plan = _plan(tmp_path, bucket.name)
    fake_aws_environment(monkeypatch, tmp_path, credentials=False)
    session = boto3.Session(region_name=REGION)
    assert session.get_credentials() is None
    clients = AwsClients(
        sagemaker=session.client("sagemaker"),
        s3=session.client("s3", endpoint_url=endpoint),
        logs=session.client("logs"),
        region=REGION,
    )
    printed: list[str] = []
    with pytest.raises(
        UserError, match=r"^no AWS credentials for checking the S3 bucket: configure the standard AWS chain"
    ):
        _launch(clients, plan, tmp_path / "variant", printed)
    assert printed == []
    assert bucket.s3.list_objects_v2(Bucket=bucket.name)["KeyCount"] == 0


def test_a_missing_bucket_is_named_before_any_upload(bucket: Bucket, tmp_path: Path) -> None:
    plan = _plan(tmp_path, "no-such-bucket-here")
    clients, sagemaker, logs = _stubbed(bucket.s3)
    with (
        sagemaker,
        logs,
        pytest.raises(UserError, match=r"the S3 bucket no-such-bucket-here does not exist: create it"),
    ):
        _launch(clients, plan, tmp_path / "variant", [])
