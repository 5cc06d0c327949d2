"""SageMaker settings: ``config/sagemaker.json`` validated by pydantic, with environment overrides.

Constructing a :class:`SageMakerSettings` does no I/O. :func:`load_sagemaker_settings` reads the file and
the environment and refuses, in one line naming the key, a config without the IAM role or the S3 bucket:
this runs before anything is uploaded. ``SLM_EVAL_SAGEMAKER_ROLE`` and ``SLM_EVAL_SAGEMAKER_BUCKET``
override the file's ``role_arn`` and ``bucket``; an empty ``region`` means the standard AWS chain
(``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile in ``~/.aws/config``). Credentials are never part
of this file: they come from the standard AWS chain only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from slm_eval.errors import UserError
from slm_eval.json_files import read_json_object

DEFAULT_SAGEMAKER_CONFIG = Path("config") / "sagemaker.json"
ROLE_ENV = "SLM_EVAL_SAGEMAKER_ROLE"
BUCKET_ENV = "SLM_EVAL_SAGEMAKER_BUCKET"
# The environment variables this module reads; the global settings loader must not take them for its keys.
ENVIRONMENT_OVERRIDES = (ROLE_ENV, BUCKET_ENV)

_ROLE_ARN = re.compile(r"arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_INSTANCE_TYPE = re.compile(r"ml\.[a-z0-9-]+\.[a-z0-9-]+")
_PREFIX = re.compile(r"[A-Za-z0-9!_.*'()/-]*")
_REQUIRED = {
    "role_arn": (
        ROLE_ENV,
        "the IAM role SageMaker assumes to read and write the bucket (arn:aws:iam::<account>:role/<name>)",
    ),
    "bucket": (BUCKET_ENV, "the S3 bucket that holds the dataset, the entry script and the trained model"),
}


def _check_instance_type(value: str) -> str:
    value = value.strip()
    if not _INSTANCE_TYPE.fullmatch(value):
        raise ValueError(f"'{value}' is not a SageMaker instance type: use ml.<family>.<size>, e.g. ml.g5.xlarge")
    return value


InstanceType = Annotated[str, AfterValidator(_check_instance_type)]


class SageMakerSettings(BaseModel):
    """Where and how ``train --backend sagemaker`` runs the training job.

    Attributes:
        region: AWS region of the job and the bucket; empty: the standard AWS chain decides.
        role_arn: IAM role the training job assumes (needs S3 access to ``bucket``).
        bucket: S3 bucket for the inputs, the entry script, checkpoints and the output.
        prefix: key prefix inside the bucket; each job writes under ``<prefix>/<job name>/``.
        default_instance_type: the instance for models not named in ``instance_types``.
        instance_types: instance type by catalogue model name.
        transformers_version, pytorch_version, python_version: select the Hugging Face training image.
        image_uri: an explicit training image instead of the Hugging Face image the versions select.
        use_spot_instances: managed spot training (cheaper; the job may wait and resumes from checkpoints).
        max_run_seconds: the job is stopped after this much training time.
        max_wait_seconds: spot only: the job gives up after this much time waiting plus training.
        volume_size_gb: the instance's storage for the inputs and checkpoints.
        keep_checkpoints: sync ``/opt/ml/checkpoints`` to S3 (required with spot, so an interrupted job resumes).
        container_log_level: Python logging level of the container's training toolkit.
        tags: tags put on the training job.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    region: str = ""
    role_arn: str = ""
    bucket: str = ""
    prefix: str = Field(default="slm-eval", max_length=200)
    default_instance_type: InstanceType = "ml.g5.xlarge"
    instance_types: dict[str, InstanceType] = Field(default_factory=dict)
    transformers_version: str = Field(default="5.3.0", min_length=1)
    pytorch_version: str = Field(default="2.9.0", min_length=1)
    python_version: str = Field(default="py312", pattern=r"^py3\d+$")
    image_uri: str = ""
    use_spot_instances: bool = False
    max_run_seconds: int = Field(default=4 * 3600, gt=0, le=28 * 24 * 3600)
    max_wait_seconds: int | None = Field(default=None, gt=0)
    volume_size_gb: int = Field(default=50, ge=1, le=16384)
    keep_checkpoints: bool = True
    container_log_level: int = Field(default=20, ge=0, le=50)
    tags: dict[str, str] = Field(default_factory=lambda: {"project": "slm-eval"})

    @field_validator("role_arn")
    @classmethod
    def _role_arn(cls, value: str) -> str:
        value = value.strip()
        if value and not _ROLE_ARN.fullmatch(value):
            raise ValueError("not an IAM role ARN: use arn:aws:iam::<12-digit account>:role/<name>")
        return value

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        value = value.strip().removeprefix("s3://").rstrip("/")
        if value and (not _BUCKET.fullmatch(value) or ".." in value):
            raise ValueError("not an S3 bucket name: 3-63 lower-case letters, digits, '.' and '-'")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip().strip("/")
        if not _PREFIX.fullmatch(value) or "//" in value:
            raise ValueError("use letters, digits and !_.*'()/- in the key prefix, without empty parts")
        return value

    @model_validator(mode="after")
    def _spot(self) -> SageMakerSettings:
        if not self.use_spot_instances:
            return self
        if not self.keep_checkpoints:
            raise ValueError("use_spot_instances needs keep_checkpoints: a spot job resumes from its S3 checkpoints")
        if self.max_wait_seconds is not None and self.max_wait_seconds < self.max_run_seconds:
            raise ValueError("max_wait_seconds must be at least max_run_seconds (it counts waiting plus training)")
        return self

    def instance_type_for(self, model: str) -> str:
        """The instance type for a catalogue model name (``model@variant`` uses the model's entry)."""
        base = model.partition("@")[0]
        return self.instance_types.get(model) or self.instance_types.get(base) or self.default_instance_type

    def max_wait_for_spot(self) -> int:
        """``max_wait_seconds``, or twice the run time when unset (spot waits for capacity as well)."""
        return self.max_wait_seconds if self.max_wait_seconds is not None else 2 * self.max_run_seconds


def load_sagemaker_settings(config_path: Path | None, environ: Mapping[str, str]) -> SageMakerSettings:
    """Read the SageMaker config and apply the role and bucket overrides from the environment.

    Args:
        config_path: the file (``--sagemaker-config``); ``None`` reads ``config/sagemaker.json`` in the
            working directory when it exists, else starts from the built-in defaults.
        environ: the environment (``os.environ`` in the CLI).

    Raises:
        UserError: the file is missing, not JSON or holds an invalid value, or no role or bucket is set.
    """
    path = config_path
    data: dict[str, Any] = {}
    if path is not None:
        data = read_json_object(path, "SageMaker config")
    elif DEFAULT_SAGEMAKER_CONFIG.is_file():
        path = DEFAULT_SAGEMAKER_CONFIG
        data = read_json_object(path, "SageMaker config")
    source = str(path) if path is not None else str(DEFAULT_SAGEMAKER_CONFIG)
    sources = dict.fromkeys(data, source)
    for key, env_name in (("role_arn", ROLE_ENV), ("bucket", BUCKET_ENV)):
        value = environ.get(env_name, "").strip()
        if value:
            data[key] = value
            sources[key] = env_name
    try:
        settings = SageMakerSettings.model_validate(data)
    except ValidationError as exc:
        raise UserError(_describe(exc, sources, source)) from exc
    for key, (env_name, meaning) in _REQUIRED.items():
        if not getattr(settings, key):
            raise UserError(f"{source} has no {key}: set {meaning} there, or in {env_name}")
    return settings


def _describe(exc: ValidationError, sources: Mapping[str, str], default_source: str) -> str:
    first = exc.errors()[0]
    location = [str(part) for part in first["loc"]]
    key = ".".join(location)
    source = sources.get(location[0], default_source) if location else default_source
    if first["type"] == "extra_forbidden":
        known = ", ".join(SageMakerSettings.model_fields)
        return f"unknown SageMaker config key '{key}' (in {source}); known keys: {known}"
    message = str(first["msg"]).removeprefix("Value error, ")
    if not key:
        return f"invalid SageMaker config ({source}): {message}"
    return f"invalid SageMaker config value {key}={first.get('input')!r} (from {source}): {message}"
