"""Following a SageMaker training job: status changes and its CloudWatch logs, until it ends or Ctrl-C.

:func:`follow_training_job` polls ``DescribeTrainingJob`` and prints each change of status or secondary
status (with SageMaker's status message), then the job's new log lines, read with ``FilterLogEvents``
from the log group ``/aws/sagemaker/TrainingJobs`` (streams ``<job>/algo-1-<time>``). The sleep between
polls and the clock are passed in, so tests run without waiting. Ctrl-C stops following only: the job
keeps running, and :class:`FollowingStoppedError` says how to follow it again or stop it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slm_eval.errors import UserError, extra_install_hint, require_module

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TERMINAL_STATUSES = ("Completed", "Failed", "Stopped")
POLL_SECONDS = 15.0

Echo = Callable[[str], None]


class FollowingStoppedError(UserError):
    """Ctrl-C while following: the training job itself keeps running."""

    exit_code = 130


def stop_command(job_name: str, region: str) -> str:
    """The AWS CLI command that stops a training job."""
    return f"aws sagemaker stop-training-job --training-job-name {job_name} --region {region}"


def tail_command(job_name: str, region: str) -> str:
    """The AWS CLI command that follows a training job's logs."""
    return f"aws logs tail {LOG_GROUP} --log-stream-name-prefix {job_name}/ --follow --region {region}"


class LogTail:
    """The new CloudWatch log lines of one training job, each returned once.

    ``FilterLogEvents`` is asked from the newest timestamp seen so far (inclusive), and events already
    printed at that timestamp are skipped by their id; every page is read (``nextToken``).
    """

    def __init__(self, logs: Any, job_name: str) -> None:
        exceptions = require_module("botocore.exceptions", "following a SageMaker job", extra_install_hint("sagemaker"))
        self._client_error: type[Exception] = exceptions.ClientError
        self._logs = logs
        self._prefix = f"{job_name}/"
        self._start_ms = 0
        self._seen_at_start: set[str] = set()
        self._unavailable = False

    def new_lines(self) -> list[str]:
        """The log lines written since the last call, oldest first; none while the job has no stream yet.

        When the logs cannot be read (e.g. ``AccessDeniedException``), one line says so and later calls
        return nothing: the job is still followed by its status.
        """
        if self._unavailable:
            return []
        events: list[dict[str, Any]] = []
        arguments: dict[str, Any] = {
            "logGroupName": LOG_GROUP,
            "logStreamNamePrefix": self._prefix,
            "startTime": self._start_ms,
        }
        while True:
            try:
                page = self._logs.filter_log_events(**arguments)
            except self._client_error as exc:
                code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", "error"))
                if code == "ResourceNotFoundException":
                    return []  # the log group appears with the account's first training job
                self._unavailable = True
                return [f"cannot read the job's CloudWatch logs ({code}): following its status only"]
            events.extend(page.get("events", []))
            token = page.get("nextToken")
            if not token:
                break
            arguments["nextToken"] = token
        return [_line(event) for event in self._unseen(events)]

    def _unseen(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        fresh = [
            event
            for event in sorted(events, key=lambda event: (int(event["timestamp"]), str(event.get("eventId", ""))))
            if not (int(event["timestamp"]) == self._start_ms and event.get("eventId") in self._seen_at_start)
        ]
        if fresh:
            newest = int(fresh[-1]["timestamp"])
            at_newest = {str(event.get("eventId")) for event in fresh if int(event["timestamp"]) == newest}
            self._seen_at_start = at_newest | (self._seen_at_start if newest == self._start_ms else set())
            self._start_ms = newest
        return fresh


def follow_training_job(
    sagemaker: Any,
    logs: Any,
    job_name: str,
    *,
    region: str,
    echo: Echo,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    poll_seconds: float = POLL_SECONDS,
    follow_again: str | None = None,
) -> dict[str, Any]:
    """Print the job's status changes and log lines until it completes, fails or is stopped.

    Args:
        sagemaker: a boto3 SageMaker client.
        logs: a boto3 CloudWatch Logs client.
        job_name: the training job.
        region: its region, for the commands in messages.
        echo: prints one line.
        sleep: waits between polls (``time.sleep``).
        clock: seconds, monotonic (``time.monotonic``), for the elapsed time on status lines.
        poll_seconds: time between polls.
        follow_again: the command that follows the job again, for the Ctrl-C message (default: the
            AWS CLI's ``aws logs tail``).

    Returns:
        The last ``DescribeTrainingJob`` response (status Completed, Failed or Stopped).

    Raises:
        FollowingStoppedError: Ctrl-C; the job keeps running.
    """
    tail = LogTail(logs, job_name)
    started = clock()
    last: tuple[str, str] | None = None
    try:
        while True:
            description: dict[str, Any] = sagemaker.describe_training_job(TrainingJobName=job_name)
            status = str(description["TrainingJobStatus"])
            secondary = str(description.get("SecondaryStatus", ""))
            if (status, secondary) != last:
                echo(_status_line(description, clock() - started))
                last = (status, secondary)
            for line in tail.new_lines():
                echo(line)
            if status in TERMINAL_STATUSES:
                return description
            sleep(poll_seconds)
    except KeyboardInterrupt:
        again = follow_again or tail_command(job_name, region)
        raise FollowingStoppedError(
            f"stopped following {job_name}; the training job keeps running on SageMaker: follow it again with "
            f"`{again}`, or stop it with `{stop_command(job_name, region)}`"
        ) from None


def _status_line(description: dict[str, Any], elapsed: float) -> str:
    minutes, seconds = divmod(int(elapsed), 60)
    status = description["TrainingJobStatus"]
    secondary = description.get("SecondaryStatus")
    line = f"[{minutes:02d}:{seconds:02d}] {status}" + (f" / {secondary}" if secondary else "")
    transitions = description.get("SecondaryStatusTransitions") or []
    message = transitions[-1].get("StatusMessage") if transitions else None
    if message:
        line += f": {message}"
    if status == "Completed":
        training, billable = description.get("TrainingTimeInSeconds"), description.get("BillableTimeInSeconds")
        if training is not None and billable is not None:
            line += f" (training {training} s, billed {billable} s)"
    return line


def _line(event: dict[str, Any]) -> str:
    return str(event.get("message", "")).rstrip("\r\n")
