"""``train --backend sagemaker`` end to end, with every AWS part replaced by its contract.

The CreateTrainingJob request goes through a real botocore client behind a ``Stubber`` (so botocore checks
it against SageMaker's service model); S3 is moto's server on 127.0.0.1; and the "container" is this test:
it reads the request it was given, downloads the channels and the source bundle from S3 into a folder laid
out like ``/opt/ml``, runs the bundle's ``train.py`` with the request's hyperparameters and ``SM_*``
variables, and packs ``/opt/ml/model`` into the ``model.tar.gz`` the launcher then downloads and stores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slm_eval.errors import UserError
from slm_eval.models.registry import card_for_path
from slm_eval.training.local import TrainingPlaces
from slm_eval.training.plan import TrainingPlan, TrainRequest, plan_training
from slm_eval.training.sagemaker_request import training_job_name
from slm_eval.training.sagemaker_run import SageMakerOptions, attach_sagemaker_job, train_on_sagemaker
from tests.tiny_models import build_tiny_decoder
from tests.training.sagemaker_fakes import (
    BUCKET,
    NOW,
    REGION,
    ROLE,
    described,
    fake_aws_environment,
    log_event,
    moto_s3,
)


class _Session:
    """A boto3 session stand-in that hands out the test's clients."""

    def __init__(self, clients: dict[str, Any]) -> None:
        self.clients = clients
        self.region_name = REGION

    def client(self, name: str) -> Any:
        return self.clients[name]


def _config(tmp_path: Path, **changes: Any) -> Path:
    path = tmp_path / "sagemaker.json"
    path.write_text(json.dumps({"region": REGION, "role_arn": ROLE, "bucket": BUCKET, **changes}))
    return path


def _plan(tmp_path: Path) -> TrainingPlan:
    """A plan for a tiny Llama given by its path (as ``--model ./tiny-llama`` would)."""
    base = build_tiny_decoder(tmp_path / "tiny-llama", "tinyllama-1.1b")
    card = card_for_path(base)
    request = TrainRequest(
        model=card.name,
        dataset="border-qa",
        backend="sagemaker",
        limit=4,
        validation_limit=2,
        score_limit=0,
        overrides={"max_steps": 2, "max_length": 1024, "batch_size": 2},
    )
    return plan_training(request, card, seed=0)


def _places(tmp_path: Path) -> TrainingPlaces:
    return TrainingPlaces(models=tmp_path / "models", cache=tmp_path / "cache", training=tmp_path / "training")


def _download_prefix(s3: Any, uri: str, folder: Path) -> None:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    for item in listed.get("Contents", []):
        relative = item["Key"][len(prefix) :].lstrip("/") or Path(item["Key"]).name
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, item["Key"], str(target))


def _run_container(request: dict[str, Any], s3: Any, opt_ml: Path) -> str:
    """Do what SageMaker's Hugging Face container does with ``request``; the S3 uri of ``model.tar.gz``."""
    channels = {}
    for channel in request["InputDataConfig"]:
        folder = opt_ml / "input" / "data" / channel["ChannelName"]
        _download_prefix(s3, channel["DataSource"]["S3DataSource"]["S3Uri"], folder)
        channels[channel["ChannelName"]] = folder
    decoded = {key: json.loads(value) for key, value in request["HyperParameters"].items()}
    code = opt_ml / "code"
    _download_prefix(s3, decoded["sagemaker_submit_directory"], opt_ml / "bundle")
    with tarfile.open(next((opt_ml / "bundle").iterdir())) as bundle:
        bundle.extractall(code, filter="data")
    arguments = []
    for key, value in decoded.items():
        if not key.startswith("sagemaker_"):
            arguments += [f"--{key}", str(value).replace("/opt/ml", str(opt_ml))]
    environ = {
        "PATH": os.environ.get("PATH", ""),
        "HF_HUB_OFFLINE": "1",
        "SM_MODEL_DIR": str(opt_ml / "model"),
        "SM_OUTPUT_DATA_DIR": str(opt_ml / "output" / "data"),
        "SM_NUM_GPUS": "0",
        **{f"SM_CHANNEL_{name.upper()}": str(folder) for name, folder in channels.items()},
    }
    (opt_ml / "model").mkdir(parents=True)
    done = subprocess.run(
        [sys.executable, str(code / decoded["sagemaker_program"]), *arguments],
        cwd=code,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    archive = opt_ml / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as packed:
        for item in sorted((opt_ml / "model").iterdir()):
            packed.add(item, arcname=item.name)
    output = request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
    uri = f"{output}/{request['TrainingJobName']}/output/model.tar.gz"
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    s3.upload_file(str(archive), bucket, key)
    return uri


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Real botocore clients: S3 on moto's local server, SageMaker and CloudWatch Logs behind Stubbers."""
    import boto3
    from botocore.stub import Stubber

    fake_aws_environment(monkeypatch, tmp_path)
    with moto_s3() as endpoint:
        # moto keeps its state in the process: start each test from an empty S3.
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10)
        session = boto3.Session(region_name=REGION)
        s3 = session.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        sagemaker = session.client("sagemaker")
        logs = session.client("logs")
        with Stubber(sagemaker) as sagemaker_stub, Stubber(logs) as logs_stub:
            yield {
                "clients": {"s3": s3, "sagemaker": sagemaker, "logs": logs},
                "sagemaker_stub": sagemaker_stub,
                "logs_stub": logs_stub,
            }


def _options(config: Path, clients: dict[str, Any], sleep: Any, *, wait: bool = True) -> SageMakerOptions:
    ticks = iter(range(0, 10_000, 15))
    return SageMakerOptions(
        config=config,
        environ={},
        dry_run=False,
        wait=wait,
        session=lambda settings: _Session(clients),
        sleep=sleep,
        clock=lambda: float(next(ticks)),
    )


@pytest.mark.slow
@pytest.mark.integration
def test_a_job_trains_with_the_entry_script_and_its_model_lands_in_the_store(
    tmp_path: Path, aws: dict[str, Any]
) -> None:
    plan = _plan(tmp_path)
    clients = aws["clients"]
    sagemaker_stub, logs_stub = aws["sagemaker_stub"], aws["logs_stub"]
    job_name = training_job_name(plan.card.name, NOW)
    captured: dict[str, Any] = {}
    clients["sagemaker"].meta.events.register(
        "provide-client-params.sagemaker.CreateTrainingJob", lambda params, **kwargs: captured.update(params)
    )
    sagemaker_stub.add_response("create_training_job", {"TrainingJobArn": f"arn:aws:sagemaker:{REGION}:1:job/x"})
    sagemaker_stub.add_response("describe_training_job", described(job_name, "InProgress", "Training"))
    logs_stub.add_response("filter_log_events", {"events": [log_event(job_name, 1000, "epoch 1 loss 4.2", "e1")]})

    def container_runs(seconds: float) -> None:
        uri = _run_container(captured, clients["s3"], tmp_path / "opt-ml")
        sagemaker_stub.add_response(
            "describe_training_job", described(job_name, "Completed", "Completed", artifacts=uri)
        )
        logs_stub.add_response("filter_log_events", {"events": []})

    lines: list[str] = []
    variant = train_on_sagemaker(
        plan,
        _places(tmp_path),
        _options(_config(tmp_path), clients, container_runs),
        now=lambda: NOW,
        report=lines.append,
    )
    assert variant is not None
    sagemaker_stub.assert_no_pending_responses()
    assert captured["TrainingJobName"] == job_name
    assert {channel["ChannelName"] for channel in captured["InputDataConfig"]} == {"train", "validation", "model"}
    assert any("epoch 1 loss 4.2" in line for line in lines)
    training = variant.manifest["training"]
    assert (training["backend"], training["job_name"], training["adapter_only"]) == ("sagemaker", job_name, True)
    assert training["metrics"]["steps"] == 2
    assert training["dataset"]["train"] == 4
    assert (variant.path / "adapter_model.safetensors").is_file()
    assert variant.verify() == []
    record = json.loads((tmp_path / "training" / "sagemaker-jobs" / f"{job_name}.json").read_text())
    assert record["hyperparameters"]["max-steps"] == "2"


def test_attach_stores_the_model_of_a_job_started_without_waiting(tmp_path: Path, aws: dict[str, Any]) -> None:
    plan = _plan(tmp_path)
    clients = aws["clients"]
    sagemaker_stub = aws["sagemaker_stub"]
    job_name = training_job_name(plan.card.name, NOW)
    sagemaker_stub.add_response("create_training_job", {"TrainingJobArn": f"arn:aws:sagemaker:{REGION}:1:job/x"})
    lines: list[str] = []
    places = _places(tmp_path)
    config = _config(tmp_path)
    started = train_on_sagemaker(
        plan, places, _options(config, clients, None, wait=False), now=lambda: NOW, report=lines.append
    )
    assert started is None
    assert any(f"slm-eval train --backend sagemaker --attach {job_name}" in line for line in lines)

    sagemaker_stub.add_response("describe_training_job", described(job_name, "InProgress", "Training"))
    assert (
        attach_sagemaker_job(job_name, places, _options(config, clients, None), now=lambda: NOW, report=lines.append)
        is None
    )
    assert f"{job_name} is InProgress (Training): fetch it again when it completes" in lines

    archive = tmp_path / "model.tar.gz"
    model = tmp_path / "fake-model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "training_metrics.json").write_text(json.dumps({"steps": 2, "train_loss": 1.0}))
    with tarfile.open(archive, "w:gz") as packed:
        for item in model.iterdir():
            packed.add(item, arcname=item.name)
    clients["s3"].upload_file(str(archive), BUCKET, f"slm-eval/{job_name}/output/model.tar.gz")
    uri = f"s3://{BUCKET}/slm-eval/{job_name}/output/model.tar.gz"
    sagemaker_stub.add_response("describe_training_job", described(job_name, "Completed", "Completed", artifacts=uri))
    variant = attach_sagemaker_job(
        job_name, places, _options(config, clients, None), now=lambda: NOW, report=lines.append
    )
    assert variant is not None
    assert variant.manifest["training"]["job_name"] == job_name
    assert variant.manifest["training"]["hyperparameters"]["max-steps"] == "2"


def test_attach_without_a_record_of_the_job_says_so(tmp_path: Path) -> None:
    options = SageMakerOptions(_config(tmp_path), {}, False, True, lambda s: None, lambda s: None, lambda: 0.0)
    with pytest.raises(UserError, match=r"no record of the training job slm-eval-x in .*--no-wait"):
        attach_sagemaker_job("slm-eval-x", _places(tmp_path), options, now=lambda: NOW, report=print)


def test_a_config_without_a_bucket_names_the_key_before_any_upload(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    options = SageMakerOptions(
        _config(tmp_path, bucket=""), {}, False, True, lambda s: None, lambda s: None, lambda: 0.0
    )
    with pytest.raises(UserError, match="has no bucket"):
        train_on_sagemaker(plan, _places(tmp_path), options, now=lambda: NOW, report=print)
    assert not (tmp_path / "training").exists()  # nothing prepared, nothing staged
