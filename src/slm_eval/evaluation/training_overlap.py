"""Warn when a fine-tuned model is evaluated on examples it was trained on.

``slm-eval train`` stores the ids of its training records in ``training_data.json`` beside the weights; an
evaluation whose examples share ids with them overstates the model, and its summary says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from slm_eval.models.registry import ModelCard

TRAINING_DATA_FILE = "training_data.json"


def trained_ids(card: ModelCard) -> frozenset[str]:
    """The ids of the records ``card``'s weights were fine-tuned on (empty for any other model)."""
    if card.source.format != "transformers":
        return frozenset()
    location = getattr(card.source, "path", None)
    if not isinstance(location, Path):
        return frozenset()
    folder = location if location.is_dir() else location.parent
    try:
        data = json.loads((folder / TRAINING_DATA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return frozenset()
    ids = data.get("train_ids") if isinstance(data, dict) else None
    return frozenset(str(item) for item in ids) if isinstance(ids, list) else frozenset()


def overlap_warning(card: ModelCard, example_ids: Iterable[str]) -> str | None:
    """A warning when some evaluated examples were training records of ``card``, else ``None``."""
    trained = trained_ids(card)
    if not trained:
        return None
    evaluated = set(example_ids)
    shared = evaluated & trained
    if not shared:
        return None
    return (
        f"{len(shared)} of {len(evaluated)} evaluated examples were in {card.name}'s training data: its scores "
        "here overstate it; evaluate on held-out examples"
    )
