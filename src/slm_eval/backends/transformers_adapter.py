"""LoRA adapter folders from ``slm-eval train``: the base model they were trained on, plus the adapter.

A trained variant without ``--merge`` holds only the adapter (``adapter_config.json``,
``adapter_model.safetensors``), the tokenizer and ``base_model.json``, which names the base model and where
its weights were. The transformers backend loads the base, applies the adapter through ``peft`` and merges
it, so generation runs at the base model's speed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slm_eval.errors import UserError, extra_install_hint, first_line, require_module

ADAPTER_CONFIG = "adapter_config.json"
BASE_MODEL_FILE = "base_model.json"


@dataclass(frozen=True)
class AdapterBase:
    """The base model of an adapter folder.

    Attributes:
        model: the base model's catalogue name (or ``model@variant``).
        weights: the base weights: a GGUF file or a transformers folder.
    """

    model: str
    weights: Path

    def to_dict(self) -> dict[str, str]:
        return {"model": self.model, "weights": str(self.weights)}


def is_adapter(location: Path | None) -> bool:
    """True when ``location`` is a LoRA adapter folder rather than a whole model."""
    return (
        location is not None
        and location.is_dir()
        and (location / ADAPTER_CONFIG).is_file()
        and not (location / "config.json").is_file()
    )


def write_base(folder: Path, base: AdapterBase) -> None:
    """Record the base model of the adapter in ``folder``."""
    (folder / BASE_MODEL_FILE).write_text(json.dumps(base.to_dict(), indent=2) + "\n", encoding="utf-8")


def read_base(folder: Path) -> AdapterBase:
    """The base model recorded beside an adapter.

    Raises:
        UserError: the record is missing or unreadable, or the base weights are no longer where they were.
    """
    path = folder / BASE_MODEL_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        base = AdapterBase(model=str(data["model"]), weights=Path(str(data["weights"])))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(
            f"{folder} is a LoRA adapter without a readable {BASE_MODEL_FILE} ({first_line(exc)}); "
            "train again, or with --merge for a whole model"
        ) from exc
    if not base.weights.exists():
        raise UserError(
            f"the base model of the adapter in {folder} ({base.model}) is no longer at {base.weights}: "
            "reinstall it, or train again with --merge for a whole model"
        )
    return base


def apply_adapter(model: Any, folder: Path) -> Any:
    """``model`` with the adapter in ``folder`` applied and merged into its weights.

    Raises:
        MissingDependencyError: peft is not installed.
        UserError: the adapter does not fit the model.
    """
    peft = require_module("peft", "a LoRA adapter", extra_install_hint("train"))
    try:
        adapted = peft.PeftModel.from_pretrained(model, str(folder), is_trainable=False)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise UserError(f"the adapter in {folder} does not fit its base model ({first_line(exc)})") from exc
    return adapted.merge_and_unload()


def refuse_adapter(location: Path, card_name: str, action: str) -> None:
    """Refuse to ``action`` (convert, quantize) an adapter-only variant: it needs a whole model.

    Raises:
        UserError: ``location`` is a LoRA adapter folder.
    """
    if is_adapter(location):
        raise UserError(f"{card_name} is a LoRA adapter, not a whole model: to {action} it, train again with --merge")
