"""Store a finished training run's model as ``<model>@ft-<date>-<hash>``, with everything that made it.

Both backends end here: a local run's model folder and a SageMaker job's unpacked ``model.tar.gz`` have the
same layout (the entry script wrote both). The variant is written to a temporary folder and renamed into the
store when complete, so an interruption leaves no half-written variant.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slm_eval.errors import UserError
from slm_eval.evaluation.training_overlap import TRAINING_DATA_FILE
from slm_eval.models.store import ModelStore, Variant, split_reference, write_manifest
from slm_eval.training.plan import TrainingPlan
from slm_eval.training.run_folder import RunFolder

if TYPE_CHECKING:
    from slm_eval.training.prepare import PreparedDataset


@dataclass(frozen=True)
class TrainingInputs:
    """What a run starts from, settled before training.

    Attributes:
        base: the base weights: a local GGUF file or transformers folder, or a hub id (SageMaker only).
        base_sha256: the sha256 of the local weights, or the hub id.
        dataset: the prepared dataset.
        run: the run's folders.
    """

    base: Path | str
    base_sha256: str
    dataset: PreparedDataset
    run: RunFolder


def read_metrics(model_dir: Path) -> dict[str, Any]:
    """The entry script's ``training_metrics.json`` in ``model_dir``.

    Raises:
        UserError: the file is missing or unreadable (the run did not finish).
    """
    path = model_dir / "training_metrics.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"the training run left no readable {path.name} in {model_dir}") from exc
    return data if isinstance(data, dict) else {}


def store_trained_variant(
    plan: TrainingPlan,
    inputs: TrainingInputs,
    model_dir: Path,
    store: ModelStore,
    *,
    today: datetime,
    scores: Mapping[str, Mapping[str, Any] | None],
    backend_facts: Mapping[str, Any],
) -> Variant:
    """Copy ``model_dir`` into the store with a manifest and the ids of the training records.

    Args:
        plan: the training plan.
        inputs: the base weights, dataset and run folder.
        model_dir: the entry script's output folder.
        store: the model store.
        today: the date in the default name.
        scores: ``before`` and ``after`` validation scores (``None`` when not scored).
        backend_facts: where it trained (``local``, or the SageMaker job's name, image, instance and region).

    Raises:
        UserError: a variant of that name exists and ``--force`` was not given.
    """
    from slm_eval.backends.transformers_adapter import is_adapter

    model_name, _ = split_reference(plan.card.name)
    name = plan.request.name or inputs.run.variant_name(today)
    metrics = read_metrics(model_dir)
    facts = _manifest_facts(plan, inputs, metrics, scores, backend_facts, name, model_name, is_adapter(model_dir))
    with store.writing(model_name, name, replace=plan.request.force) as folder:
        for item in sorted(model_dir.iterdir()):
            if item.is_dir():
                shutil.copytree(item, folder / item.name)
            else:
                shutil.copy2(item, folder / item.name)
        record = {"dataset_sha256": inputs.dataset.sha256, "train_ids": sorted(inputs.dataset.train_ids)}
        (folder / TRAINING_DATA_FILE).write_text(json.dumps(record) + "\n", encoding="utf-8")
        write_manifest(folder, facts)
    return store.get(model_name, name)


def _manifest_facts(
    plan: TrainingPlan,
    inputs: TrainingInputs,
    metrics: Mapping[str, Any],
    scores: Mapping[str, Mapping[str, Any] | None],
    backend_facts: Mapping[str, Any],
    name: str,
    model_name: str,
    adapter_only: bool,
) -> dict[str, Any]:
    from slm_eval.optimize.export_facts import tool_versions

    hyperparameters = plan.hyperparameters
    dataset = inputs.dataset
    return {
        "model": model_name,
        "variant": name,
        "format": "transformers",
        "kind": plan.card.kind,
        "method": f"fine-tuned ({hyperparameters.method}{', merged' if hyperparameters.merge else ''})",
        "precision": "fp32",
        "source": {
            "model": plan.card.name,
            "format": plan.card.source.format,
            "path": str(inputs.base),
            "sha256": inputs.base_sha256,
        },
        "encoder_task": plan.task if plan.card.kind == "encoder" else None,
        "training": {
            **dict(backend_facts),
            "task": plan.task,
            "method": hyperparameters.method,
            "merged": hyperparameters.merge,
            "adapter_only": adapter_only,
            "dataset": {
                "name": plan.request.dataset,
                "sha256": dataset.sha256,
                "folder": str(dataset.folder),
                "train": dataset.train_count,
                "validation": dataset.validation_count,
                "sources": list(dataset.sources),
            },
            "hyperparameters": dict(hyperparameters.to_hyperparameters()),
            "metrics": dict(metrics),
            "validation_score": {key: (dict(value) if value is not None else None) for key, value in scores.items()},
            "run": str(inputs.run.root),
        },
        "tool_versions": tool_versions(("torch", "transformers", "peft", "accelerate")),
    }
