"""Where one training run keeps its checkpoints and output, and the name its variant gets.

A run is identified by what determines its result: the model, its weights' sha256, the prepared dataset's
sha256 and the hyperparameters. The same request therefore finds the same folder, which is what
``--resume`` continues from.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class RunFolder:
    """The folders of one training run under ``<training>/runs/<model>/<key>/``.

    Attributes:
        root: the run's folder.
        key: the run's identity, a sha256 in hex.
    """

    root: Path
    key: str

    @property
    def checkpoints(self) -> Path:
        """Checkpoints of each epoch (and of an interrupted step)."""
        return self.root / "checkpoints"

    @property
    def model(self) -> Path:
        """What the entry script writes: the model, adapter, metrics (``SM_MODEL_DIR`` in SageMaker)."""
        return self.root / "model"

    @property
    def output_data(self) -> Path:
        """Other output of the entry script (``SM_OUTPUT_DATA_DIR`` in SageMaker)."""
        return self.root / "output"

    @property
    def before_score(self) -> Path:
        """The base model's validation score, kept so a resumed run does not score it again."""
        return self.root / "score-before.json"

    def variant_name(self, today: datetime) -> str:
        """``ft-<yyyymmdd>-<first 7 hex of the key>``."""
        return f"ft-{today:%Y%m%d}-{self.key[:7]}"


def run_key(model: str, base_sha256: str, dataset_sha256: str, hyperparameters: Mapping[str, Any]) -> str:
    """The identity of a run: a sha256 over what determines its result."""
    payload = json.dumps(
        {"model": model, "base": base_sha256, "dataset": dataset_sha256, "hyperparameters": dict(hyperparameters)},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def run_folder(training_root: Path, model: str, key: str) -> RunFolder:
    """The run folder of ``model`` with ``key`` (created by the caller when it starts).

    A model given as a path (``./my-model``, ``C:\\models\\x.gguf``) becomes one safe folder name.
    """
    safe = _UNSAFE.sub("-", model.replace("@", "--")).strip("-.") or "model"
    return RunFolder(training_root / "runs" / safe[-80:].lstrip("-.") / key[:16], key)
