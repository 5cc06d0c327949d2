"""A fine-tuned model evaluated on its own training examples gets a warning; other models never do."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from slm_eval.evaluation.training_overlap import overlap_warning, trained_ids
from slm_eval.models.catalogue import default_registry
from slm_eval.models.sources import LocalPath


def _card(folder: Path):  # type: ignore[no-untyped-def]
    parent = default_registry().resolve("smollm2")
    return replace(parent, name="smollm2-135m-instruct@ft-x", source=LocalPath(path=folder, format="transformers"))


def test_shared_ids_are_counted_in_the_warning(tmp_path: Path) -> None:
    (tmp_path / "training_data.json").write_text(json.dumps({"train_ids": ["bqa-0001", "bqa-0002"]}))
    card = _card(tmp_path)
    assert trained_ids(card) == {"bqa-0001", "bqa-0002"}
    warning = overlap_warning(card, ["bqa-0001", "bqa-0050", "bqa-0051"])
    assert warning == (
        "1 of 3 evaluated examples were in smollm2-135m-instruct@ft-x's training data: its scores here overstate "
        "it; evaluate on held-out examples"
    )
    assert overlap_warning(card, ["bqa-0050"]) is None


def test_models_without_training_data_get_no_warning(tmp_path: Path) -> None:
    assert overlap_warning(_card(tmp_path), ["bqa-0001"]) is None
    assert overlap_warning(default_registry().resolve("smollm2"), ["bqa-0001"]) is None
