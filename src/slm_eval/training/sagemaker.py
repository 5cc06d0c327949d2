"""``train --backend sagemaker``: the same training job on AWS SageMaker, planned, launched, followed, fetched.

The flow (the CLI wires it; every AWS client comes from one boto3 session it passes in)::

    settings = load_sagemaker_settings(path, os.environ)            # refuses a missing role or bucket
    session = aws_session(settings)                                  # region: config, else the AWS chain
    plan = plan_sagemaker_job(settings, region=session.region_name, ...)   # stages sourcedir.tar.gz
    print(dry_run_text(plan))                                        # --dry-run: nothing is called
    result = launch_training_job(aws_clients(session), plan, wait=True, dest=..., ...)

Credentials come from the standard AWS chain only (environment, shared files, SSO, instance or container
role) through the boto3 session; nothing here reads, prints or writes them. A missing credential, a
missing bucket or a refused call becomes a one-line :class:`UserError`; the bucket is checked before the
first upload, so a missing credential is reported before anything is uploaded.

Why the SDK is used only for the training image: see :mod:`slm_eval.training.sagemaker_request`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from slm_eval.errors import UserError, extra_install_hint, first_line, require_module
from slm_eval.training.sagemaker_config import SageMakerSettings
from slm_eval.training.sagemaker_request import TrainingJobPlan, plan_training_job, training_job_name
from slm_eval.training.sagemaker_source import stage_source

Echo = Callable[[str], None]
CREDENTIALS_HINT = (
    "configure the standard AWS chain (aws configure or aws sso login, AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY, or an instance role); slm-eval never stores credentials"
)


@dataclass(frozen=True)
class AwsClients:
    """The boto3 clients a launch uses, all from one session and region."""

    sagemaker: Any
    s3: Any
    logs: Any
    region: str


@dataclass(frozen=True)
class TrainingJobResult:
    """Where a training job stands after launching, following or fetching it.

    Attributes:
        job_name: the training job.
        status: ``InProgress``, ``Completed``, ... (SageMaker's ``TrainingJobStatus``).
        model_dir: the unpacked ``model.tar.gz`` when the job completed and was fetched, else ``None``.
        description: the last ``DescribeTrainingJob`` response (empty right after creation).
    """

    job_name: str
    status: str
    model_dir: Path | None
    description: dict[str, Any]


def aws_session(settings: SageMakerSettings) -> Any:
    """A boto3 session in the configured region, or the AWS chain's region when the config has none.

    Raises:
        UserError: boto3 is not installed, or no region is configured anywhere.
    """
    boto3 = require_module("boto3", "training on SageMaker", extra_install_hint("sagemaker"))
    session = boto3.Session(region_name=settings.region or None)
    if not session.region_name:
        raise UserError(
            "no AWS region: set region in config/sagemaker.json, or AWS_REGION, or a region in your profile"
        )
    return session


def aws_clients(session: Any) -> AwsClients:
    """The SageMaker, S3 and CloudWatch Logs clients of ``session`` (a boto3 ``Session``)."""
    return AwsClients(
        sagemaker=session.client("sagemaker"),
        s3=session.client("s3"),
        logs=session.client("logs"),
        region=str(session.region_name),
    )


def plan_sagemaker_job(
    settings: SageMakerSettings,
    *,
    region: str,
    model_name: str,
    dataset: Path,
    base_model: Path | str,
    hyperparameters: Mapping[str, str],
    work_dir: Path,
    now: datetime,
) -> TrainingJobPlan:
    """Name the job, stage ``work_dir/sourcedir.tar.gz`` and plan the uploads and the request; no AWS call.

    Args:
        settings: the SageMaker settings.
        region: the AWS region (``aws_session(settings).region_name``).
        model_name: the catalogue model name (instance type, tags, job name).
        dataset: the prepared dataset folder.
        base_model: a local GGUF file or transformers folder, or a Hugging Face hub id.
        hyperparameters: ``Hyperparameters.to_hyperparameters()``.
        work_dir: where the source bundle is written.
        now: the time the job name carries.
    """
    staged = stage_source(work_dir)
    return plan_training_job(
        settings,
        region=region,
        job_name=training_job_name(model_name, now),
        model_name=model_name,
        dataset=dataset,
        base_model=base_model,
        hyperparameters=hyperparameters,
        source_tarball=staged.tarball,
    )


def dry_run_text(plan: TrainingJobPlan) -> str:
    """What a launch would do: the S3 uploads with their sizes, and the full CreateTrainingJob request."""
    total = sum(upload.size for upload in plan.uploads)
    lines = [
        f"SageMaker training job {plan.job_name} in {plan.region} (dry run: nothing uploaded, nothing called)",
        f"S3 uploads ({len(plan.uploads)} files, {_size(total)}):",
        *(f"  {upload.path} ({_size(upload.size)}) -> {upload.uri}" for upload in plan.uploads),
        "CreateTrainingJob request:",
        json.dumps(plan.request, indent=2, ensure_ascii=False),
    ]
    return "\n".join(lines)


def launch_training_job(
    clients: AwsClients,
    plan: TrainingJobPlan,
    *,
    wait: bool,
    dest: Path,
    echo: Echo,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    poll_seconds: float = 15.0,
    follow_again: str | None = None,
    fetch_later: str | None = None,
) -> TrainingJobResult:
    """Upload the plan's files, create the training job and, with ``wait``, follow it and fetch its model.

    Args:
        clients: from :func:`aws_clients`.
        plan: from :func:`plan_sagemaker_job`.
        wait: follow the job until it ends and download its model; else return once it is created.
        dest: the folder ``model.tar.gz`` is unpacked into (must not exist or be empty).
        echo: prints one line.
        sleep: waits between status polls (``time.sleep``).
        clock: monotonic seconds (``time.monotonic``).
        poll_seconds: time between status polls.
        follow_again: the command that follows the job again (for Ctrl-C and ``--no-wait`` messages).
        fetch_later: the command that fetches the finished job's model later (for the same messages).

    Raises:
        UserError: no credentials, no bucket, a refused call, or a job that failed or was stopped.
        FollowingStoppedError: Ctrl-C while following (the job keeps running).
    """
    from slm_eval.training.sagemaker_follow import follow_training_job, tail_command

    bucket = plan.request["OutputDataConfig"]["S3OutputPath"].removeprefix("s3://").partition("/")[0]
    with aws_errors("checking the S3 bucket"):
        _check_bucket(clients.s3, bucket, clients.region)
    for upload in plan.uploads:
        echo(f"uploading {upload.path} ({_size(upload.size)}) -> {upload.uri}")
        with aws_errors(f"uploading {upload.path.name}"):
            clients.s3.upload_file(str(upload.path), upload.bucket, upload.key)
    with aws_errors("creating the training job"):
        response = clients.sagemaker.create_training_job(**plan.request)
    echo(f"created training job {plan.job_name} ({response.get('TrainingJobArn', '')}): {_console(plan)}")
    if not wait:
        again = follow_again or tail_command(plan.job_name, plan.region)
        later = f"; fetch its model when it completes with `{fetch_later}`" if fetch_later else ""
        echo(f"not waiting: the job runs on SageMaker; follow it with `{again}`{later}")
        return TrainingJobResult(plan.job_name, "InProgress", None, {})
    with aws_errors("following the training job"):
        description = follow_training_job(
            clients.sagemaker,
            clients.logs,
            plan.job_name,
            region=plan.region,
            echo=echo,
            sleep=sleep,
            clock=clock,
            poll_seconds=poll_seconds,
            follow_again=follow_again,
        )
    return _finish(clients, description, dest, echo)


def fetch_result(clients: AwsClients, job_name: str, dest: Path, *, echo: Echo) -> TrainingJobResult:
    """The model of a training job started with ``--no-wait``: downloaded and unpacked when it completed.

    Returns:
        The result; ``model_dir`` is ``None`` while the job is still running.

    Raises:
        UserError: no such job, no credentials, or the job failed or was stopped.
    """
    with aws_errors(f"describing the training job {job_name}"):
        description = clients.sagemaker.describe_training_job(TrainingJobName=job_name)
    status = str(description["TrainingJobStatus"])
    if status not in ("Completed", "Failed", "Stopped"):
        secondary = description.get("SecondaryStatus")
        echo(
            f"{job_name} is {status}" + (f" ({secondary})" if secondary else "") + ": fetch it again when it completes"
        )
        return TrainingJobResult(job_name, status, None, description)
    return _finish(clients, description, dest, echo)


def _finish(clients: AwsClients, description: dict[str, Any], dest: Path, echo: Echo) -> TrainingJobResult:
    from slm_eval.training.sagemaker_result import download_model

    job_name = str(description["TrainingJobName"])
    status = str(description["TrainingJobStatus"])
    if status != "Completed":
        reason = description.get("FailureReason") or "no reason given"
        raise UserError(f"training job {job_name} {status.lower()}: {reason}")
    uri = description.get("ModelArtifacts", {}).get("S3ModelArtifacts")
    if not uri:
        raise UserError(f"training job {job_name} completed without model artifacts: see its logs in CloudWatch")
    with aws_errors("downloading the model"):
        download_model(clients.s3, str(uri), dest, echo=echo)
    return TrainingJobResult(job_name, status, dest, description)


def _check_bucket(s3: Any, bucket: str, region: str) -> None:
    exceptions = require_module("botocore.exceptions", "training on SageMaker", extra_install_hint("sagemaker"))
    try:
        s3.head_bucket(Bucket=bucket)
    except exceptions.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in {"404", "NoSuchBucket"}:
            problem = "does not exist: create it, or set bucket in the SageMaker config"
        elif code in {"403", "AccessDenied"}:
            problem = "is not readable with these credentials: grant them s3:ListBucket on it"
        elif code in {"301", "PermanentRedirect"}:
            problem = f"is not in {region}: SageMaker reads its inputs from the job's region; use a bucket there"
        else:
            raise
        raise UserError(f"the S3 bucket {bucket} {problem}") from exc


@contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """Turn boto3's errors during ``action`` into one-line :class:`UserError` messages.

    Raises:
        UserError: no or partial credentials, a refused call (its code and message), a failed transfer or
            an unreachable endpoint.
    """
    exceptions = require_module("botocore.exceptions", "training on SageMaker", extra_install_hint("sagemaker"))
    transfer = require_module("boto3.exceptions", "training on SageMaker", extra_install_hint("sagemaker"))
    try:
        yield
    except (exceptions.NoCredentialsError, exceptions.PartialCredentialsError) as exc:
        raise UserError(f"no AWS credentials for {action}: {CREDENTIALS_HINT}") from exc
    except exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        raise UserError(
            f"{action} failed: {error.get('Code', 'error')}: {error.get('Message', first_line(exc))}"
        ) from exc
    except (exceptions.BotoCoreError, transfer.Boto3Error) as exc:
        raise UserError(f"{action} failed: {first_line(exc)}") from exc


def _console(plan: TrainingJobPlan) -> str:
    region = plan.region
    return f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}#/jobs/{plan.job_name}"


def _size(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"
