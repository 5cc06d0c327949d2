"""``slm-eval train --backend local``: prepare the data, score, train with the entry script, score again, store.

The training itself is the entry script of :mod:`slm_eval.training.scripts.train`, called with the same
arguments SageMaker gives it in its container, so a local run and a SageMaker job train alike::

    slm-eval train --model smollm2-135m-instruct --dataset border-qa --epochs 2
    slm-eval train --model all-minilm-l6-v2 --dataset border-qa --task qa
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from slm_eval.errors import UserError
from slm_eval.logs import get_logger
from slm_eval.models.registry import ModelCard
from slm_eval.models.store import ModelStore, Variant, sha256_tree
from slm_eval.training.plan import TrainingPlan
from slm_eval.training.run_folder import RunFolder, run_folder, run_key
from slm_eval.training.trained_variant import TrainingInputs, read_metrics, store_trained_variant

log = get_logger(__name__)
Report = Callable[[str], None]
TRAINABLE_FORMATS = ("gguf", "transformers")


@dataclass(frozen=True)
class TrainingPlaces:
    """Folders a training run uses.

    Attributes:
        models: the model store, where the trained variant lands.
        cache: the weights cache (assembled GGUF files).
        training: prepared datasets and run folders (checkpoints, outputs).
    """

    models: Path
    cache: Path
    training: Path


@dataclass(frozen=True)
class TrainOutcome:
    """A finished training run.

    Attributes:
        variant: the stored variant.
        before: the base model's validation score (``None`` when scoring was off).
        after: the trained model's validation score on the same examples.
        metrics: the entry script's ``training_metrics.json``.
        run: the run's folders.
    """

    variant: Variant
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    metrics: Mapping[str, Any]
    run: RunFolder

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant.reference,
            "path": str(self.variant.path),
            "before": self.before,
            "after": self.after,
            "metrics": dict(self.metrics),
            "run": str(self.run.root),
        }


def base_weights(card: ModelCard, cache: Path) -> Path:
    """The local weights training starts from: a GGUF file or a transformers folder.

    Raises:
        UserError: the weights are in a format PyTorch cannot train (ONNX), or cannot be found.
    """
    if card.source.format not in TRAINABLE_FORMATS:
        raise UserError(
            f"{card.name} is stored as {card.source.format}; training starts from PyTorch-loadable weights "
            "(a GGUF file or a transformers folder): train its parent model instead"
        )
    return card.source.locate(cache)


def prepare_inputs(plan: TrainingPlan, places: TrainingPlaces, base: Path | str, report: Report) -> TrainingInputs:
    """Prepare the dataset and find the run's folder (the same request finds the same folder).

    Raises:
        UserError: bad or missing data, or a dataset the model's task cannot use.
    """
    from slm_eval.training.prepare import DatasetRequest, prepare_dataset

    request = plan.request
    dataset = prepare_dataset(
        DatasetRequest(
            dataset=request.dataset,
            task=plan.task,
            seed=plan.hyperparameters.seed,
            limit=request.limit,
            validation_limit=request.validation_limit,
        ),
        places.training / "datasets",
    )
    report(
        f"dataset: {dataset.train_count} training and {dataset.validation_count} validation records "
        f"({', '.join(dataset.sources)}) in {dataset.folder}"
    )
    base_sha = sha256_tree(base) if isinstance(base, Path) else base
    key = run_key(plan.card.name, base_sha, dataset.sha256, plan.hyperparameters.to_hyperparameters())
    return TrainingInputs(base, base_sha, dataset, run_folder(places.training, plan.card.name, key))


def train_locally(
    plan: TrainingPlan,
    places: TrainingPlaces,
    *,
    now: Callable[[], datetime],
    report: Report,
) -> TrainOutcome:
    """Train ``plan`` on this machine and store the result as ``<model>@ft-<date>-<hash>``.

    Raises:
        UserError: bad data, a model that cannot be trained, nothing to resume, or an interruption (the
            checkpoint is kept; ``--resume`` continues). No variant is stored unless training finished.
    """
    base = base_weights(plan.card, places.cache)
    store = ModelStore(places.models)
    if plan.request.name is not None:
        check_name_free(plan, store, plan.request.name)
    inputs = prepare_inputs(plan, places, base, report)
    run, dataset = inputs.run, inputs.dataset
    check_name_free(plan, store, plan.request.name or run.variant_name(now()))
    _prepare_run_folder(run, plan.request.resume)
    before = _before_score(plan, base, dataset, run, report)

    report(f"training {plan.card.name} ({plan.hyperparameters.method}, {plan.task}) in {run.root} ...")
    from slm_eval.training.scripts.train import run_job

    arguments = [
        "--model", str(base),
        "--train-dir", str(dataset.train_dir),
        "--validation-dir", str(dataset.validation_dir),
        "--model-dir", str(run.model),
        "--output-data-dir", str(run.output_data),
        "--checkpoint-dir", str(run.checkpoints),
        "--resume", "true" if plan.request.resume else "false",
        *as_arguments(plan.hyperparameters.to_hyperparameters()),
    ]  # fmt: skip
    run_job(arguments, environ={}, progress=None)

    from slm_eval.backends.transformers_adapter import AdapterBase, is_adapter, write_base

    if is_adapter(run.model):  # where the base is, for loading the adapter later
        write_base(run.model, AdapterBase(model=plan.card.name, weights=base.resolve()))
    after = None
    if before is not None:
        report("scoring the trained model on the same validation examples ...")
        after = score_on_validation(plan, run.model, dataset, report)
    variant = store_trained_variant(
        plan,
        inputs,
        run.model,
        store,
        today=now(),
        scores={"before": before, "after": after},
        backend_facts={"backend": "local"},
    )
    report(f"stored {variant.reference} in {variant.path}")
    return TrainOutcome(variant=variant, before=before, after=after, metrics=read_metrics(run.model), run=run)


def check_name_free(plan: TrainingPlan, store: ModelStore, name: str) -> None:
    """Refuse before any work when the variant exists and ``--force`` was not given.

    Raises:
        UserError: the variant exists; the message names ``--force`` and ``--name``.
    """
    from slm_eval.models.store import split_reference

    model, _ = split_reference(plan.card.name)
    if not plan.request.force and store.folder(model, name).exists():
        raise UserError(
            f"{model}@{name} already exists in {store.root / model}: pass --force to replace it, or --name for another"
        )


def _prepare_run_folder(run: RunFolder, resume: bool) -> None:
    has_checkpoint = run.checkpoints.is_dir() and any(run.checkpoints.glob("checkpoint-*"))
    if resume and not has_checkpoint:
        raise UserError(
            f"nothing to resume: no checkpoint in {run.checkpoints} (a resumed run needs the same model, "
            "dataset and hyperparameters); drop --resume to start afresh"
        )
    if not resume and has_checkpoint:
        log.info("starting afresh: removing the earlier run's checkpoints in %s", run.checkpoints)
        shutil.rmtree(run.checkpoints, ignore_errors=True)
    shutil.rmtree(run.model, ignore_errors=True)
    for folder in (run.checkpoints, run.output_data):
        folder.mkdir(parents=True, exist_ok=True)


def _before_score(
    plan: TrainingPlan, base: Path, dataset: Any, run: RunFolder, report: Report
) -> dict[str, Any] | None:
    if not plan.request.score_limit or not dataset.validation_sets:
        return None
    limit = plan.request.score_limit
    if run.before_score.is_file():
        cached: dict[str, Any] = json.loads(run.before_score.read_text(encoding="utf-8"))
        if cached.get("limit") == limit:  # the same examples: kept from an earlier start of this run
            report(f"the base model's validation score, kept from this run's first start: {cached['mean']:.3f}")
            return cached
    report(f"scoring {plan.card.name} on the validation examples before training ...")
    score = {**score_on_validation(plan, base, dataset, report), "limit": limit}
    run.root.mkdir(parents=True, exist_ok=True)
    run.before_score.write_text(json.dumps(score, indent=2) + "\n", encoding="utf-8")
    return score


def score_on_validation(plan: TrainingPlan, location: Path, dataset: Any, report: Report) -> dict[str, Any]:
    """The validation score of the weights at ``location`` (base or trained), as a JSON-ready dict."""
    from slm_eval.training.validation_score import score_model

    score = score_model(
        plan.card,
        location,
        dataset.validation_sets,
        encoder_task=plan.task if plan.task != "sft" else None,
        limit=plan.request.score_limit,
        seed=plan.hyperparameters.seed,
        threads=plan.hyperparameters.threads,
        report=report,
    )
    return score.to_dict()


def as_arguments(hyperparameters: Mapping[str, str]) -> list[str]:
    """``{"epochs": "3"}`` as ``["--epochs", "3"]``, the way SageMaker passes hyperparameters."""
    arguments = []
    for key, value in hyperparameters.items():
        arguments += [f"--{key}", value]
    return arguments
