"""The launcher's wiring: the session's region, the planned job with its staged bundle, refused calls."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from slm_eval.errors import UserError
from slm_eval.training.sagemaker import aws_clients, aws_errors, aws_session, dry_run_text, plan_sagemaker_job
from tests.training.sagemaker_fakes import (
    HYPERPARAMETERS,
    NOW,
    REGION,
    fake_aws_environment,
    prepared_dataset,
    settings,
)


def test_the_region_comes_from_the_config_else_the_aws_chain(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_aws_environment(monkeypatch, tmp_path)
    assert aws_session(settings(region="us-east-1")).region_name == "us-east-1"
    session = aws_session(settings(region=""))
    assert session.region_name == REGION
    clients = aws_clients(session)
    assert clients.region == REGION
    assert clients.sagemaker.meta.region_name == clients.s3.meta.region_name == clients.logs.meta.region_name == REGION
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(UserError, match=r"no AWS region: set region in config/sagemaker.json, or AWS_REGION"):
        aws_session(settings(region=""))


def test_plan_sagemaker_job_names_the_job_and_stages_the_bundle(tmp_path: Path) -> None:
    plan = plan_sagemaker_job(
        settings(),
        region=REGION,
        model_name="tinyllama-1.1b",
        dataset=prepared_dataset(tmp_path),
        base_model="TinyLlama/TinyLlama-1.1B-Chat-v1.0",
        hyperparameters=HYPERPARAMETERS,
        work_dir=tmp_path / "work",
        now=NOW,
    )
    assert plan.job_name == "slm-eval-tinyllama-1-1b-20250304-050607"
    bundle = next(upload for upload in plan.uploads if upload.key.endswith("sourcedir.tar.gz"))
    assert bundle.path == tmp_path / "work" / "sourcedir.tar.gz"
    assert json.loads(plan.request["HyperParameters"]["sagemaker_submit_directory"]) == bundle.uri
    with tarfile.open(bundle.path) as archive:
        assert {"train.py", "requirements.txt", "slm_eval/training/scripts/train.py"} <= set(archive.getnames())
    assert "sourcedir.tar.gz (" in dry_run_text(plan)


def test_refused_calls_become_one_line_errors() -> None:
    from botocore.exceptions import ClientError, EndpointConnectionError

    error = {"Error": {"Code": "ResourceLimitExceeded", "Message": "The account-level service limit is 0 Instances"}}
    limit = r"^creating the training job failed: ResourceLimitExceeded: The account-level"
    with pytest.raises(UserError, match=limit), aws_errors("creating the training job"):
        raise ClientError(error, "CreateTrainingJob")
    unreachable = r"^uploading x failed: Could not connect to the endpoint URL"
    with pytest.raises(UserError, match=unreachable), aws_errors("uploading x"):
        raise EndpointConnectionError(endpoint_url="https://s3.eu-west-1.amazonaws.com")
