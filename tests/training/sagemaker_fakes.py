"""Shared pieces of the SageMaker tests: fake AWS environment, a local S3 server, stubbed responses, inputs.

Nothing here reaches AWS: credentials are fake, the AWS config files point at nothing, instance metadata
is off, SageMaker and CloudWatch Logs clients are real botocore clients behind a ``Stubber``, and S3 is
moto's server on 127.0.0.1.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from slm_eval.training.sagemaker_config import SageMakerSettings

ROLE = "arn:aws:iam::123456789012:role/SlmEvalTraining"
BUCKET = "slm-eval-test"
REGION = "eu-west-1"
NOW = datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
HYPERPARAMETERS = {"task": "sft", "method": "lora", "epochs": "1", "lora-targets": "q_proj,v_proj", "merge": "false"}
_AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_REGION",
)


def fake_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, credentials: bool = True) -> None:
    """A standard AWS chain that holds fake keys (or none) and can reach nothing."""
    for name in _AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    if credentials:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    else:
        monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)


def settings(**changes: Any) -> SageMakerSettings:
    """Settings with a role and a bucket; ``changes`` override fields."""
    return SageMakerSettings(**{"role_arn": ROLE, "bucket": BUCKET, "region": REGION, **changes})


def prepared_dataset(root: Path) -> Path:
    """A prepared dataset folder as prepare.py writes it: train/, validation/, dataset.json."""
    folder = root / "dataset"
    (folder / "train").mkdir(parents=True)
    (folder / "validation").mkdir()
    record = '{"id": "q1", "prompt": "Which document?", "response": "A passport.", "source": "border-qa"}\n'
    (folder / "train" / "train.jsonl").write_text(record * 3, encoding="utf-8")
    (folder / "validation" / "validation.jsonl").write_text(record, encoding="utf-8")
    (folder / "dataset.json").write_text('{"task": "sft"}\n', encoding="utf-8")
    return folder


def source_tarball(root: Path) -> Path:
    """A stand-in ``sourcedir.tar.gz`` (the plan only needs its size)."""
    path = root / "work" / "sourcedir.tar.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x1f\x8b stand-in")
    return path


def model_archive(files: dict[str, bytes]) -> bytes:
    """A ``model.tar.gz`` as SageMaker packs ``/opt/ml/model``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def described(
    job_name: str,
    status: str,
    secondary: str,
    *,
    message: str | None = None,
    artifacts: str | None = None,
    failure: str | None = None,
) -> dict[str, Any]:
    """A ``DescribeTrainingJob`` response, complete enough for botocore's output shape."""
    response: dict[str, Any] = {
        "TrainingJobName": job_name,
        "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:123456789012:training-job/{job_name}",
        "ModelArtifacts": {"S3ModelArtifacts": artifacts or ""},
        "TrainingJobStatus": status,
        "SecondaryStatus": secondary,
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "CreationTime": NOW,
    }
    if message:
        response["SecondaryStatusTransitions"] = [{"Status": secondary, "StartTime": NOW, "StatusMessage": message}]
    if failure:
        response["FailureReason"] = failure
    if status == "Completed":
        response["TrainingTimeInSeconds"] = 120
        response["BillableTimeInSeconds"] = 120
    return response


def log_event(job_name: str, timestamp: int, message: str, event_id: str) -> dict[str, Any]:
    """One CloudWatch log event of the job's first stream."""
    return {
        "logStreamName": f"{job_name}/algo-1-1741064767",
        "timestamp": timestamp,
        "message": message,
        "ingestionTime": timestamp + 5,
        "eventId": event_id,
    }


@contextmanager
def moto_s3() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1, a free port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()
