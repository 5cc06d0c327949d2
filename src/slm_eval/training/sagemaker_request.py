"""The SageMaker training job, planned: the S3 uploads and the exact CreateTrainingJob request.

Pure: nothing here calls AWS. :func:`plan_training_job` decides every S3 key and every request field
from the settings, the job name, the prepared dataset folder, the base model, the hyperparameters and
the staged source bundle; :mod:`slm_eval.training.sagemaker` then uploads and calls, or, for
``--dry-run``, only prints.

How the ``sagemaker`` SDK is used, and why not more of it. The SDK's v3 ``ModelTrainer`` (package
``sagemaker-train``: mlflow, pyarrow, SQLAlchemy and ~55 more packages in all) builds the arguments in a
private method that uploads local inputs while it builds them, then creates the job in the same call:
it has no request-only mode for ``--dry-run``, and it runs the script through its own driver channel
rather than the Hugging Face container's script mode. The v2 ``HuggingFace`` estimator is in
maintenance, pins older attrs, packaging and protobuf, and also uploads as it builds. What the SDK holds
that must not be copied by hand is the catalogue of training images (account per region, CUDA and
Ubuntu tags per version), so the image comes from the SDK's own ``sagemaker.core.image_uris.retrieve``
(package ``sagemaker-core``, the v3 SDK's foundation: 17 packages over this project's dev set, offline,
reading the JSON bundled with the SDK). The request is laid out as the SDK's script-mode estimators lay
it out for this container: ``sagemaker_program``, ``sagemaker_submit_directory``, ``sagemaker_region``,
``sagemaker_container_log_level`` and ``sagemaker_job_name``, and every hyperparameter value
``json.dumps``-ed as v2's ``EstimatorBase._json_encode_hyperparameters`` does (the container's training
toolkit ``json.loads`` each value and passes ``--key value`` to ``train.py``). Every call goes through
plain boto3 clients of the session the CLI passes in, so a ``Stubber`` and a local S3 server stand in
for AWS in the tests. The request is checked against botocore's service model for SageMaker by
:mod:`slm_eval.training.sagemaker_checks` before anything is uploaded.

S3 layout of one job, under ``s3://<bucket>/<prefix>/<job>/``::

    input/train/train.jsonl              channel ``train``       (SM_CHANNEL_TRAIN)
    input/validation/validation.jsonl    channel ``validation``  (SM_CHANNEL_VALIDATION)
    input/model/...                      channel ``model``       (SM_CHANNEL_MODEL: local base model only)
    input/dataset.json                   the dataset card (not a channel: provenance)
    source/sourcedir.tar.gz              the entry script bundle
    checkpoints/                         /opt/ml/checkpoints, synced by SageMaker
    output/<job>/output/model.tar.gz     written by SageMaker from /opt/ml/model
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from slm_eval.errors import UserError, extra_install_hint, first_line, require_module
from slm_eval.training.sagemaker_checks import check_request
from slm_eval.training.sagemaker_config import SageMakerSettings

CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
JOB_NAME_PREFIX = "slm-eval-"
JOB_NAME_MAX = 63
# SageMaker script-mode hyperparameters, named as in the SDK's sagemaker.model module.
SCRIPT_PARAM = "sagemaker_program"
DIR_PARAM = "sagemaker_submit_directory"
REGION_PARAM = "sagemaker_region"
LOG_LEVEL_PARAM = "sagemaker_container_log_level"
JOB_NAME_PARAM = "sagemaker_job_name"
MODEL_PARAM = "model"
CHECKPOINT_PARAM = "checkpoint-dir"
RESUME_PARAM = "resume"
_RESERVED_PARAMS = frozenset({SCRIPT_PARAM, DIR_PARAM, REGION_PARAM, LOG_LEVEL_PARAM, JOB_NAME_PARAM})
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")
_NOT_NAME = re.compile(r"[^a-z0-9]+")
_CHANNEL_FILES = {"train": "train/train.jsonl", "validation": "validation/validation.jsonl"}
_DATASET_CARD = "dataset.json"


@dataclass(frozen=True)
class Upload:
    """One local file and the S3 object it becomes."""

    path: Path
    bucket: str
    key: str
    size: int

    @property
    def uri(self) -> str:
        """``s3://bucket/key``."""
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class TrainingJobPlan:
    """Everything a launch does, decided before any call.

    Attributes:
        job_name: the training job's name.
        region: the AWS region of the job and the bucket.
        uploads: the files to put in S3, in order.
        request: the CreateTrainingJob request, as boto3's ``create_training_job(**request)`` takes it.
    """

    job_name: str
    region: str
    uploads: tuple[Upload, ...]
    request: dict[str, Any]

    @property
    def output_path(self) -> str:
        """Where SageMaker writes ``<job>/output/model.tar.gz``."""
        return str(self.request["OutputDataConfig"]["S3OutputPath"])


def training_job_name(model: str, now: datetime) -> str:
    """``slm-eval-<model>-<yyyymmdd-hhmmss>``, shortened and cleaned to SageMaker's name rules.

    SageMaker allows 63 letters, digits and hyphens, starting and ending with a letter or digit.
    """
    stamp = now.strftime("%Y%m%d-%H%M%S")
    room = JOB_NAME_MAX - len(JOB_NAME_PREFIX) - len(stamp) - 1
    slug = _NOT_NAME.sub("-", model.lower()).strip("-")[:room].strip("-") or "model"
    return f"{JOB_NAME_PREFIX}{slug}-{stamp}"


def training_image(settings: SageMakerSettings, region: str, instance_type: str) -> str:
    """The Hugging Face PyTorch training image for the configured versions, from the SDK's catalogue.

    Raises:
        UserError: the SDK is not installed, or it has no image for these versions, region and instance.
    """
    if settings.image_uri:
        return settings.image_uri
    image_uris = require_module(
        "sagemaker.core.image_uris", "finding the SageMaker training image", extra_install_hint("sagemaker")
    )
    try:
        uri = image_uris.retrieve(
            framework="huggingface",
            region=region,
            version=settings.transformers_version,
            base_framework_version=f"pytorch{settings.pytorch_version}",
            py_version=settings.python_version,
            instance_type=instance_type,
            image_scope="training",
        )
    except (ValueError, KeyError) as exc:
        raise UserError(
            f"no Hugging Face training image for transformers {settings.transformers_version}, "
            f"PyTorch {settings.pytorch_version}, {settings.python_version} on {instance_type} in {region} "
            f"({first_line(exc)}): change the versions or the instance type in the SageMaker config, or set image_uri"
        ) from exc
    return str(uri)


def plan_training_job(
    settings: SageMakerSettings,
    *,
    region: str,
    job_name: str,
    model_name: str,
    dataset: Path,
    base_model: Path | str,
    hyperparameters: Mapping[str, str],
    source_tarball: Path,
) -> TrainingJobPlan:
    """Decide the uploads and the CreateTrainingJob request of one training job.

    Args:
        settings: the SageMaker settings (role, bucket, instance types, versions, spot, limits).
        region: the AWS region (the config's, else the AWS chain's).
        job_name: from :func:`training_job_name`.
        model_name: the catalogue name of the model, for the instance type and the tags.
        dataset: the prepared dataset folder (``train/``, ``validation/``, ``dataset.json``).
        base_model: a local GGUF file or transformers folder (uploaded as channel ``model``), or a Hugging
            Face hub id (passed as the ``model`` hyperparameter; the container downloads it).
        hyperparameters: the entry script's hyperparameters, key -> string (``Hyperparameters.to_hyperparameters()``).
        source_tarball: the staged ``sourcedir.tar.gz``.

    Raises:
        UserError: a missing dataset split or base model, no training image for the settings, or a request
            botocore's SageMaker model refuses (e.g. an instance type SageMaker does not train on).
        ValueError: ``hyperparameters`` uses a key reserved for SageMaker's script mode.
    """
    reserved = sorted(_RESERVED_PARAMS.intersection(hyperparameters))
    if reserved:
        raise ValueError(f"hyperparameter {reserved[0]} is reserved for SageMaker's script mode")
    job_prefix = "/".join(part for part in (settings.prefix, job_name) if part)
    root = f"s3://{settings.bucket}/{job_prefix}"

    def upload(path: Path, key: str) -> Upload:
        return Upload(path=path, bucket=settings.bucket, key=f"{job_prefix}/{key}", size=path.stat().st_size)

    uploads: list[Upload] = []
    channels: list[dict[str, Any]] = []
    for channel, relative in _CHANNEL_FILES.items():
        path = dataset / relative
        if not path.is_file():
            raise UserError(f"the prepared dataset {dataset} has no {relative}: prepare the dataset again")
        uploads.append(upload(path, f"input/{relative}"))
        channels.append(_channel(channel, f"{root}/input/{channel}/"))
    card = dataset / _DATASET_CARD
    if card.is_file():
        uploads.append(upload(card, f"input/{_DATASET_CARD}"))
    script_params: dict[str, str] = dict(hyperparameters)
    if isinstance(base_model, Path):
        model_uploads = _model_uploads(base_model)
        uploads.extend(upload(path, f"input/model/{name}") for path, name in model_uploads)
        channels.append(_channel("model", f"{root}/input/model/"))
    else:
        if not _HUB_ID.fullmatch(base_model):
            raise UserError(f"'{base_model}' is neither a local model file or folder nor a Hugging Face hub id")
        script_params[MODEL_PARAM] = base_model
    source = upload(source_tarball, f"source/{source_tarball.name}")
    uploads.append(source)
    if settings.keep_checkpoints:
        # SageMaker restores the S3 checkpoints into this folder when a (spot) job restarts; "auto" resumes.
        script_params.setdefault(CHECKPOINT_PARAM, CHECKPOINT_LOCAL_PATH)
        script_params.setdefault(RESUME_PARAM, "auto")
    script_params.update(
        {
            SCRIPT_PARAM: "train.py",
            DIR_PARAM: source.uri,
            REGION_PARAM: region,
            JOB_NAME_PARAM: job_name,
        }
    )
    encoded = {key: json.dumps(value) for key, value in script_params.items()}
    encoded[LOG_LEVEL_PARAM] = json.dumps(settings.container_log_level)
    instance_type = settings.instance_type_for(model_name)
    request: dict[str, Any] = {
        "TrainingJobName": job_name,
        "HyperParameters": dict(sorted(encoded.items())),
        "AlgorithmSpecification": {
            "TrainingImage": training_image(settings, region, instance_type),
            "TrainingInputMode": "File",
        },
        "RoleArn": settings.role_arn,
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": f"{root}/output"},
        "ResourceConfig": {
            "InstanceType": instance_type,
            "InstanceCount": 1,
            "VolumeSizeInGB": settings.volume_size_gb,
        },
        "StoppingCondition": _stopping_condition(settings),
        "EnableManagedSpotTraining": settings.use_spot_instances,
        "Tags": _tags(settings, model_name),
    }
    if settings.keep_checkpoints:
        request["CheckpointConfig"] = {"S3Uri": f"{root}/checkpoints", "LocalPath": CHECKPOINT_LOCAL_PATH}
    check_request(request)
    return TrainingJobPlan(job_name=job_name, region=region, uploads=tuple(uploads), request=request)


def _channel(name: str, s3_prefix: str) -> dict[str, Any]:
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": s3_prefix,
                "S3DataDistributionType": "FullyReplicated",
            }
        },
        "InputMode": "File",
    }


def _model_uploads(base_model: Path) -> list[tuple[Path, str]]:
    if base_model.is_file():
        return [(base_model, base_model.name)]
    if not base_model.is_dir():
        raise UserError(f"the base model {base_model} does not exist: give a GGUF file, a model folder or a hub id")
    files = [
        (path, path.relative_to(base_model).as_posix())
        for path in sorted(base_model.rglob("*"))
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(base_model).parts)
    ]
    if not files:
        raise UserError(f"the base model folder {base_model} is empty: give a GGUF file or a transformers folder")
    return files


def _stopping_condition(settings: SageMakerSettings) -> dict[str, int]:
    condition = {"MaxRuntimeInSeconds": settings.max_run_seconds}
    if settings.use_spot_instances:
        condition["MaxWaitTimeInSeconds"] = settings.max_wait_for_spot()
    return condition


def _tags(settings: SageMakerSettings, model_name: str) -> list[dict[str, str]]:
    tags = {**settings.tags, "slm-eval:model": model_name}
    return [{"Key": key, "Value": value} for key, value in tags.items()]
