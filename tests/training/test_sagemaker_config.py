"""config/sagemaker.json: a missing role or bucket is named before anything else happens; overrides; checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from slm_eval.errors import UserError
from slm_eval.training.sagemaker_config import BUCKET_ENV, ROLE_ENV, load_sagemaker_settings
from tests.training.sagemaker_fakes import BUCKET, ROLE

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "sagemaker.json"


def _config(tmp_path: Path, **values: Any) -> Path:
    path = tmp_path / "sagemaker.json"
    path.write_text(json.dumps(values), encoding="utf-8")
    return path


def test_a_config_without_role_names_the_key_and_how_to_set_it(tmp_path: Path) -> None:
    path = _config(tmp_path, bucket=BUCKET, role_arn="")
    with pytest.raises(UserError, match=r"has no role_arn: set the IAM role SageMaker assumes") as caught:
        load_sagemaker_settings(path, {})
    assert str(path) in str(caught.value)
    assert ROLE_ENV in str(caught.value)


def test_a_config_without_bucket_names_the_key(tmp_path: Path) -> None:
    path = _config(tmp_path, role_arn=ROLE)
    with pytest.raises(UserError, match=rf"{path} has no bucket: set the S3 bucket .* or in {BUCKET_ENV}"):
        load_sagemaker_settings(path, {})


def test_the_shipped_config_leaves_role_and_bucket_to_the_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(SHIPPED.parent.parent)
    with pytest.raises(UserError, match=r"config/sagemaker.json has no role_arn"):
        load_sagemaker_settings(None, {})
    loaded = load_sagemaker_settings(None, {ROLE_ENV: ROLE, BUCKET_ENV: BUCKET})
    assert (loaded.role_arn, loaded.bucket) == (ROLE, BUCKET)
    assert loaded.instance_type_for("phi-3-mini") == "ml.g5.2xlarge"
    assert loaded.instance_type_for("smollm2-135m-instruct@ft-20250101-abc123") == "ml.g5.xlarge"
    assert loaded.instance_type_for("not-listed") == loaded.default_instance_type
    assert loaded.use_spot_instances is False and loaded.keep_checkpoints is True


def test_no_file_starts_from_defaults_and_still_asks_for_the_role(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"config/sagemaker.json has no role_arn"):
        load_sagemaker_settings(None, {BUCKET_ENV: BUCKET})


def test_the_environment_overrides_role_and_bucket(tmp_path: Path) -> None:
    path = _config(tmp_path, role_arn="arn:aws:iam::000000000000:role/Old", bucket="old-bucket")
    loaded = load_sagemaker_settings(path, {ROLE_ENV: ROLE, BUCKET_ENV: f"s3://{BUCKET}/"})
    assert (loaded.role_arn, loaded.bucket) == (ROLE, BUCKET)


def test_an_invalid_role_arn_names_the_key_and_its_source(tmp_path: Path) -> None:
    path = _config(tmp_path, bucket=BUCKET)
    with pytest.raises(UserError, match=rf"role_arn='SageMakerRole' \(from {ROLE_ENV}\): not an IAM role ARN"):
        load_sagemaker_settings(path, {ROLE_ENV: "SageMakerRole"})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"instance_type": "ml.g5.xlarge"}, r"unknown SageMaker config key 'instance_type'.*default_instance_type"),
        ({"instance_types": {"phi-3-mini": "g5.xlarge"}}, r"instance_types.phi-3-mini=.*ml.<family>.<size>"),
        ({"bucket": "My_Bucket"}, r"bucket='My_Bucket'.*not an S3 bucket name"),
        ({"use_spot_instances": True, "max_wait_seconds": 60}, r"max_wait_seconds must be at least max_run_seconds"),
        ({"use_spot_instances": True, "keep_checkpoints": False}, r"use_spot_instances needs keep_checkpoints"),
        ({"max_run_seconds": 0}, r"max_run_seconds=0"),
    ],
)
def test_invalid_values_are_one_line_errors(tmp_path: Path, values: dict[str, Any], message: str) -> None:
    path = _config(tmp_path, **{"role_arn": ROLE, "bucket": BUCKET, **values})
    with pytest.raises(UserError, match=message) as caught:
        load_sagemaker_settings(path, {})
    assert "\n" not in str(caught.value)


def test_spot_waits_twice_the_run_time_unless_told(tmp_path: Path) -> None:
    path = _config(tmp_path, role_arn=ROLE, bucket=BUCKET, use_spot_instances=True, max_run_seconds=600)
    assert load_sagemaker_settings(path, {}).max_wait_for_spot() == 1200
