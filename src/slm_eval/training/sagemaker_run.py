"""``slm-eval train --backend sagemaker``: the same prepared data and entry script, trained in SageMaker's container.

The dataset is prepared here exactly as for a local run; the job runs the entry script
(:mod:`slm_eval.training.scripts.train`) on it; the unpacked ``model.tar.gz`` is stored as a variant like a
local run's output::

    slm-eval train --model smollm2-135m-instruct --backend sagemaker --dry-run
    slm-eval train --model phi-3-mini --dataset squad --backend sagemaker --no-wait
    slm-eval train --model phi-3-mini --dataset squad --backend sagemaker --attach slm-eval-phi-3-mini-20261129-101500
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from slm_eval.errors import UserError
from slm_eval.models.store import ModelStore, Variant
from slm_eval.training.local import TrainingPlaces, base_weights, check_name_free, prepare_inputs
from slm_eval.training.plan import TrainingPlan
from slm_eval.training.trained_variant import store_trained_variant

Report = Callable[[str], None]


@dataclass(frozen=True)
class SageMakerOptions:
    """How to talk to SageMaker for one ``train`` command.

    Attributes:
        config: the SageMaker settings file (``None``: ``config/sagemaker.json``).
        environ: the environment (role and bucket overrides).
        dry_run: print the request and uploads (through ``output``); call nothing.
        wait: follow the job until it ends, then store its model.
        session: makes the boto3 session from the settings (injected by tests).
        sleep: waits between status polls.
        clock: monotonic seconds.
        output: prints the command's result (the dry run's request) on standard output.
    """

    config: Path | None
    environ: Mapping[str, str]
    dry_run: bool
    wait: bool
    session: Callable[[Any], Any]
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    output: Callable[[str], None] = print


def sagemaker_base(plan: TrainingPlan, places: TrainingPlaces) -> Path | str:
    """What the job starts from: the local weights (uploaded as the ``model`` channel), or a hub id.

    Hub models are downloaded by the container itself, not uploaded from here.
    """
    if not plan.card.source.offline and plan.card.hub_id:
        return plan.card.hub_id
    return base_weights(plan.card, places.cache)


def train_on_sagemaker(
    plan: TrainingPlan,
    places: TrainingPlaces,
    options: SageMakerOptions,
    *,
    now: Callable[[], datetime],
    report: Report,
) -> Variant | None:
    """Plan, launch, follow and store a SageMaker training job (or print it with ``dry_run``).

    Returns:
        The stored variant, or ``None`` after a dry run, ``--no-wait``, or a job still running.

    Raises:
        UserError: a config without role or bucket (before any upload), no credentials, a refused call, a
            failed job, or Ctrl-C while following (the job keeps running).
    """
    from slm_eval.training.sagemaker import (
        aws_clients,
        dry_run_text,
        launch_training_job,
        plan_sagemaker_job,
    )
    from slm_eval.training.sagemaker_config import load_sagemaker_settings

    settings = load_sagemaker_settings(options.config, options.environ)
    base = sagemaker_base(plan, places)
    if isinstance(base, str) and plan.hyperparameters.method == "lora" and not plan.hyperparameters.merge:
        # An adapter of a hub model would need the hub to load; the job merges it so the variant stands alone.
        plan = replace(plan, hyperparameters=replace(plan.hyperparameters, merge=True))
        report(f"{plan.card.name} comes from the hub: the job merges the LoRA adapter into a whole model")
    inputs = prepare_inputs(plan, places, base, report)
    session = options.session(settings)
    dest = inputs.run.root / "sagemaker-model"
    job = plan_sagemaker_job(
        settings,
        region=str(session.region_name),
        model_name=plan.card.name,
        dataset=inputs.dataset.folder,
        base_model=base,
        hyperparameters=plan.hyperparameters.to_hyperparameters(),
        work_dir=inputs.run.root / "sagemaker-source",
        now=now(),
    )
    if options.dry_run:
        options.output(dry_run_text(job))
        return None
    check_name_free(plan, ModelStore(places.models), plan.request.name or inputs.run.variant_name(now()))
    shutil.rmtree(dest, ignore_errors=True)
    _write_job_record(places, job.job_name, plan)
    result = launch_training_job(
        aws_clients(session),
        job,
        wait=options.wait,
        dest=dest,
        echo=report,
        sleep=options.sleep,
        clock=options.clock,
        fetch_later=f"slm-eval train --backend sagemaker --attach {job.job_name}",
    )
    if result.model_dir is None:
        return None
    return _store(plan, places, inputs, result, str(session.region_name), now, report)


def attach_sagemaker_job(
    job_name: str,
    places: TrainingPlaces,
    options: SageMakerOptions,
    *,
    now: Callable[[], datetime],
    report: Report,
) -> Variant | None:
    """Fetch the model of a job started here with ``--no-wait`` and store it, as the launch would have.

    The job's request (model, dataset, hyperparameters) was recorded when it was created, so no other option
    is needed.

    Returns:
        The stored variant, or ``None`` while the job is still running.

    Raises:
        UserError: no record of the job here, no credentials, or a job that failed or was stopped.
    """
    from slm_eval.training.sagemaker import aws_clients, fetch_result
    from slm_eval.training.sagemaker_config import load_sagemaker_settings

    plan = _read_job_record(places, job_name)
    settings = load_sagemaker_settings(options.config, options.environ)
    inputs = prepare_inputs(plan, places, sagemaker_base(plan, places), report)
    session = options.session(settings)
    dest = inputs.run.root / "sagemaker-model"
    shutil.rmtree(dest, ignore_errors=True)
    result = fetch_result(aws_clients(session), job_name, dest, echo=report)
    if result.model_dir is None:
        return None
    return _store(plan, places, inputs, result, str(session.region_name), now, report)


def _store(
    plan: TrainingPlan,
    places: TrainingPlaces,
    inputs: Any,
    result: Any,
    region: str,
    now: Callable[[], datetime],
    report: Report,
) -> Variant:
    facts = {
        "backend": "sagemaker",
        "job_name": result.job_name,
        "region": region,
        "instance_type": result.description.get("ResourceConfig", {}).get("InstanceType"),
        "image": result.description.get("AlgorithmSpecification", {}).get("TrainingImage"),
        "billable_seconds": result.description.get("BillableTimeInSeconds"),
    }
    variant = store_trained_variant(
        plan,
        inputs,
        result.model_dir,
        ModelStore(places.models),
        today=now(),
        scores={"before": None, "after": None},
        backend_facts=facts,
    )
    report(f"stored {variant.reference} in {variant.path}")
    return variant


def _job_record(places: TrainingPlaces, job_name: str) -> Path:
    return places.training / "sagemaker-jobs" / f"{job_name}.json"


def _write_job_record(places: TrainingPlaces, job_name: str, plan: TrainingPlan) -> None:
    """Keep what ``--attach`` needs to store the job's model later: the request and the hyperparameters."""
    record = {
        "job_name": job_name,
        "request": asdict(plan.request),
        "hyperparameters": plan.hyperparameters.to_hyperparameters(),
    }
    path = _job_record(places, job_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")


def _read_job_record(places: TrainingPlaces, job_name: str) -> TrainingPlan:
    from slm_eval.models.catalogue import default_registry
    from slm_eval.training.job import Hyperparameters
    from slm_eval.training.plan import TrainRequest

    path = _job_record(places, job_name)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        request = TrainRequest(**record["request"])
        hyperparameters = Hyperparameters.from_hyperparameters(record["hyperparameters"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(
            f"no record of the training job {job_name} in {path.parent}: --attach fetches jobs started from this "
            "folder with --no-wait"
        ) from exc
    card = default_registry().resolve(request.model, places.models)
    return TrainingPlan(request=request, card=card, task=hyperparameters.task, hyperparameters=hyperparameters)
