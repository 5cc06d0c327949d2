"""The ``train`` command: fine-tune a model locally or on AWS SageMaker and store the result as a variant.

A thin call into :mod:`slm_eval.training`; :mod:`slm_eval.cli` registers it on the app.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from slm_eval.cli_context import app_state, table_console
from slm_eval.errors import UserError
from slm_eval.models.catalogue import default_registry

if TYPE_CHECKING:
    from slm_eval.models.store import Variant
    from slm_eval.training.sagemaker_run import SageMakerOptions

DEFAULT_SCORE_LIMIT = 40


def train_command(
    ctx: typer.Context,
    model: str | None = typer.Option(
        None, "--model", "-m", help="A catalogued model, alias or model@variant (default: from config)."
    ),
    dataset: str = typer.Option(
        "border-qa",
        "--dataset",
        help="border-qa, squad (online), a use case, border (every use case + border-qa), or a SQuAD/JSONL file.",
    ),
    task: str | None = typer.Option(
        None, "--task", help="sft (decoders, the default) or qa (default), ner, classify (encoders)."
    ),
    backend: str = typer.Option("local", "--backend", help="Where to train: local or sagemaker."),
    full: bool = typer.Option(False, "--full", help="Decoders: fine-tune every weight instead of LoRA."),
    lora: bool = typer.Option(False, "--lora", help="Encoders: LoRA instead of full fine-tuning (merged after)."),
    merge: bool = typer.Option(False, "--merge", help="LoRA: also merge the adapter into a whole model."),
    epochs: float | None = typer.Option(None, "--epochs", help="Passes over the training data (default 3)."),
    learning_rate: float | None = typer.Option(None, "--learning-rate", "--lr", help="Peak learning rate."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Examples per step (default 4)."),
    gradient_accumulation: int | None = typer.Option(
        None, "--gradient-accumulation", min=1, help="Steps whose gradients add up before each update."
    ),
    max_length: int | None = typer.Option(None, "--max-length", min=16, help="Tokens per example at most."),
    lora_r: int | None = typer.Option(None, "--lora-r", min=1, help="LoRA rank (default 16)."),
    lora_alpha: int | None = typer.Option(None, "--lora-alpha", min=1, help="LoRA alpha (default 32)."),
    lora_dropout: float | None = typer.Option(None, "--lora-dropout", min=0.0, max=1.0, help="LoRA dropout."),
    lora_targets: str | None = typer.Option(
        None, "--lora-targets", help="Modules LoRA adapts, comma-separated (default all-linear)."
    ),
    early_stopping: int | None = typer.Option(
        None, "--early-stopping", min=0, help="Stop after this many epochs without a better validation loss (0: off)."
    ),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="Stop after this many steps."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads (default: all usable)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (default: from config)."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Train on at most this many records."),
    validation_limit: int | None = typer.Option(
        None, "--validation-limit", min=1, help="Validate on at most this many records."
    ),
    score_limit: int | None = typer.Option(
        None,
        "--score-limit",
        min=0,
        help="Validation examples scored before and after training, per set (default 40 locally, 0 on SageMaker).",
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the same run from its latest checkpoint."),
    name: str | None = typer.Option(None, "--name", help="The variant's name (default: ft-<date>-<hash>)."),
    force: bool = typer.Option(False, "--force", help="Replace a variant of the same name."),
    sagemaker_config: Path | None = typer.Option(
        None, "--sagemaker-config", help="SageMaker settings (default: config/sagemaker.json)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="SageMaker: print the CreateTrainingJob request and the uploads; call nothing."
    ),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="SageMaker: follow the job until it ends."),
    attach: str | None = typer.Option(
        None, "--attach", help="SageMaker: fetch and store the model of a job started with --no-wait."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
) -> None:
    """Fine-tune a model (LoRA or full) on border-control or SQuAD-format data, and store it as a variant.

    The same entry script trains here and in SageMaker's container. The result lands in the model store as
    <model>@ft-<date>-<hash> with a manifest (base model, data hash, hyperparameters, metrics, and the
    validation score before and after training on the same examples).

    Example: slm-eval train --model smollm2-135m-instruct --dataset border-qa --epochs 2
    """
    from slm_eval.training.local import TrainingPlaces

    settings = app_state(ctx).settings
    places = TrainingPlaces(models=settings.paths.models, cache=settings.paths.cache, training=settings.paths.training)
    err = Console(stderr=True)

    def report(message: str) -> None:
        err.print(message, markup=False, highlight=False, soft_wrap=True)

    def now() -> datetime:
        return datetime.now(timezone.utc)

    on_sagemaker = backend.strip().lower() == "sagemaker"
    if (dry_run or attach) and not on_sagemaker:
        raise UserError(f"{'--dry-run' if dry_run else '--attach'} is for SageMaker jobs: add --backend sagemaker")
    if attach:
        from slm_eval.training.sagemaker_run import attach_sagemaker_job

        _print_variant(
            attach_sagemaker_job(
                attach, places, _sagemaker_options(sagemaker_config, dry_run, wait), now=now, report=report
            ),
            as_json,
        )
        return
    from slm_eval.training.plan import TrainRequest, plan_training

    card = default_registry().resolve(model or settings.defaults.model, settings.paths.models)
    overrides: dict[str, Any] = {
        "epochs": epochs,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "gradient_accumulation": gradient_accumulation,
        "max_length": max_length,
        "lora_r": lora_r,
        "lora_alpha": lora_alpha,
        "lora_dropout": lora_dropout,
        "lora_targets": _targets(lora_targets),
        "early_stopping_patience": early_stopping,
        "max_steps": max_steps,
        "threads": threads,
        "merge": merge or None,
    }
    request = TrainRequest(
        model=card.name,
        dataset=dataset,
        task=task,
        backend=backend,
        full=full,
        lora=lora,
        overrides=overrides,
        limit=limit,
        validation_limit=validation_limit,
        score_limit=score_limit if score_limit is not None else (0 if on_sagemaker else DEFAULT_SCORE_LIMIT),
        resume=resume,
        name=name,
        force=force,
    )
    plan = plan_training(request, card, settings.defaults.seed if seed is None else seed)
    if on_sagemaker:
        from slm_eval.training.sagemaker_run import train_on_sagemaker

        options = _sagemaker_options(sagemaker_config, dry_run, wait)
        _print_variant(train_on_sagemaker(plan, places, options, now=now, report=report), as_json)
        return
    from slm_eval.training.local import train_locally

    outcome = train_locally(plan, places, now=now, report=report)
    if as_json:
        typer.echo(json.dumps(outcome.to_dict(), indent=2, ensure_ascii=False))
        return
    from slm_eval.cli_output import training_summary

    table_console().print(training_summary(outcome))


def _sagemaker_options(config: Path | None, dry_run: bool, wait: bool) -> SageMakerOptions:
    import os
    import time

    from slm_eval.training.sagemaker import aws_session
    from slm_eval.training.sagemaker_run import SageMakerOptions

    return SageMakerOptions(
        config=config,
        environ=os.environ,
        dry_run=dry_run,
        wait=wait,
        session=aws_session,
        sleep=time.sleep,
        clock=time.monotonic,
        output=typer.echo,
    )


def _print_variant(variant: Variant | None, as_json: bool) -> None:
    if variant is None:
        return
    if as_json:
        typer.echo(json.dumps({"variant": variant.reference, "manifest": dict(variant.manifest)}, indent=2))
        return
    typer.echo(f"{variant.reference}: {variant.path}")


def _targets(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    targets = tuple(item.strip() for item in value.split(",") if item.strip())
    if not targets:
        raise UserError("--lora-targets needs module names, e.g. q_proj,v_proj, or all-linear")
    return targets
