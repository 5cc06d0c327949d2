"""Following a job: status changes and CloudWatch log lines in order, stubbed clients, no real sleep, Ctrl-C."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from slm_eval.errors import UserError
from slm_eval.training.sagemaker import AwsClients, fetch_result
from slm_eval.training.sagemaker_follow import LOG_GROUP, FollowingStoppedError, follow_training_job
from tests.training.sagemaker_fakes import REGION, described, fake_aws_environment, log_event

JOB = "slm-eval-smollm2-135m-instruct-20250304-050607"
T0 = 1_741_064_800_000


class Stubs:
    """Stubbed SageMaker and CloudWatch Logs clients, the lines printed and the sleeps asked for."""

    def __init__(self) -> None:
        session = boto3.Session(region_name=REGION)
        self.sagemaker = session.client("sagemaker")
        self.logs = session.client("logs")
        self.sagemaker_stub = Stubber(self.sagemaker)
        self.logs_stub = Stubber(self.logs)
        self.printed: list[str] = []
        self.sleeps: list[float] = []
        self.now = 0.0

    def describe(self, status: str, secondary: str, **extra: Any) -> None:
        self.sagemaker_stub.add_response(
            "describe_training_job", described(JOB, status, secondary, **extra), {"TrainingJobName": JOB}
        )

    def events(
        self, start: int, events: list[dict[str, Any]], *, token: str | None = None, after: str | None = None
    ) -> None:
        expected: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamNamePrefix": f"{JOB}/", "startTime": start}
        if after:
            expected["nextToken"] = after
        response: dict[str, Any] = {"events": events}
        if token:
            response["nextToken"] = token
        self.logs_stub.add_response("filter_log_events", response, expected)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def follow(self) -> dict[str, Any]:
        return follow_training_job(
            self.sagemaker,
            self.logs,
            JOB,
            region=REGION,
            echo=self.printed.append,
            sleep=self.sleep,
            clock=lambda: self.now,
            poll_seconds=30,
        )


@pytest.fixture
def stubs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Stubs]:
    fake_aws_environment(monkeypatch, tmp_path)
    made = Stubs()
    with made.sagemaker_stub, made.logs_stub:
        yield made
        made.sagemaker_stub.assert_no_pending_responses()
        made.logs_stub.assert_no_pending_responses()


def test_status_changes_and_log_lines_print_in_order_until_completed(stubs: Stubs) -> None:
    stubs.describe("InProgress", "Starting", message="Launching requested ML instances")
    stubs.logs_stub.add_client_error("filter_log_events", "ResourceNotFoundException", http_status_code=400)
    stubs.describe("InProgress", "Training", message="Training image download completed. Training in progress.")
    stubs.events(0, [log_event(JOB, T0, "epoch 1 loss 2.1\n", "e1")], token="page-2")
    stubs.events(0, [log_event(JOB, T0 + 10, "epoch 1 eval_loss 1.9\n", "e2")], after="page-2")
    stubs.describe("InProgress", "Training", message="Training image download completed. Training in progress.")
    stubs.events(T0 + 10, [log_event(JOB, T0 + 10, "epoch 1 eval_loss 1.9\n", "e2")])
    stubs.describe("InProgress", "Uploading", message="Uploading generated training model")
    stubs.events(
        T0 + 10, [log_event(JOB, T0 + 10, "epoch 1 eval_loss 1.9\n", "e2"), log_event(JOB, T0 + 20, "saved", "e3")]
    )
    stubs.describe("Completed", "Completed", message="Training job completed")
    stubs.events(T0 + 20, [])

    final = stubs.follow()

    assert final["TrainingJobStatus"] == "Completed"
    assert stubs.printed == [
        "[00:00] InProgress / Starting: Launching requested ML instances",
        "[00:30] InProgress / Training: Training image download completed. Training in progress.",
        "epoch 1 loss 2.1",
        "epoch 1 eval_loss 1.9",
        "[01:30] InProgress / Uploading: Uploading generated training model",
        "saved",
        "[02:00] Completed / Completed: Training job completed (training 120 s, billed 120 s)",
    ]
    assert stubs.sleeps == [30, 30, 30, 30]


def test_logs_that_cannot_be_read_are_said_once_and_the_status_is_still_followed(stubs: Stubs) -> None:
    stubs.describe("InProgress", "Training")
    stubs.logs_stub.add_client_error("filter_log_events", "AccessDeniedException", http_status_code=400)
    stubs.describe("Failed", "Failed", failure="AlgorithmError: CUDA out of memory")

    final = stubs.follow()

    assert final["FailureReason"] == "AlgorithmError: CUDA out of memory"
    assert stubs.printed == [
        "[00:00] InProgress / Training",
        "cannot read the job's CloudWatch logs (AccessDeniedException): following its status only",
        "[00:30] Failed / Failed",
    ]


def test_ctrl_c_stops_following_and_says_the_job_keeps_running(stubs: Stubs) -> None:
    stubs.describe("InProgress", "Training")
    stubs.events(0, [log_event(JOB, T0, "step 1", "e1")])

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(FollowingStoppedError) as caught:
        follow_training_job(
            stubs.sagemaker,
            stubs.logs,
            JOB,
            region=REGION,
            echo=stubs.printed.append,
            sleep=interrupted,
            clock=lambda: 0.0,
            follow_again=f"slm-eval train --follow {JOB}",
        )

    message = str(caught.value)
    assert message.startswith(f"stopped following {JOB}; the training job keeps running on SageMaker")
    assert f"`slm-eval train --follow {JOB}`" in message
    assert f"`aws sagemaker stop-training-job --training-job-name {JOB} --region {REGION}`" in message
    assert caught.value.exit_code == 130 and isinstance(caught.value, UserError)
    assert stubs.printed == ["[00:00] InProgress / Training", "step 1"]


def test_fetching_a_running_job_downloads_nothing_and_a_failed_one_says_why(stubs: Stubs, tmp_path: Path) -> None:
    clients = AwsClients(sagemaker=stubs.sagemaker, s3=None, logs=stubs.logs, region=REGION)
    stubs.describe("InProgress", "Training")
    result = fetch_result(clients, JOB, tmp_path / "model", echo=stubs.printed.append)
    assert (result.status, result.model_dir) == ("InProgress", None)
    assert stubs.printed == [f"{JOB} is InProgress (Training): fetch it again when it completes"]

    stubs.describe("Failed", "Failed", failure="AlgorithmError: ExecuteUserScriptError: exit code 2")
    with pytest.raises(UserError, match=rf"training job {JOB} failed: AlgorithmError: ExecuteUserScriptError"):
        fetch_result(clients, JOB, tmp_path / "model", echo=stubs.printed.append)
    assert not (tmp_path / "model").exists()


def test_an_unknown_job_is_a_one_line_error(stubs: Stubs, tmp_path: Path) -> None:
    clients = AwsClients(sagemaker=stubs.sagemaker, s3=None, logs=stubs.logs, region=REGION)
    stubs.sagemaker_stub.add_client_error(
        "describe_training_job", "ValidationException", "Requested resource not found.", http_status_code=400
    )
    with pytest.raises(UserError, match=rf"describing the training job {JOB} failed: ValidationException: Requested"):
        fetch_result(clients, JOB, tmp_path / "model", echo=stubs.printed.append)
