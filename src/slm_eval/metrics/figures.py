"""A figure with its unit and how it was obtained; no number leaves the library without both."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# measured: read on this machine; estimated: computed from a model of the device (e.g. power from CPU
# time); projected: scaled from this machine to another device; scripted: set by the fake backend.
FigureLabel = Literal["measured", "estimated", "projected", "scripted"]


@dataclass(frozen=True)
class Figure:
    """One number, its unit and its label."""

    value: float | None
    unit: str
    label: FigureLabel

    def to_dict(self) -> dict[str, object]:
        """``{"value": ..., "unit": ..., "label": ...}``, the shape used in every JSON output."""
        return {"value": self.value, "unit": self.unit, "label": self.label}

    def format(self, precision: int = 1) -> str:
        """``"41.2 ms"``, or ``"n/a"`` when there is no value; estimates and projections say so."""
        if self.value is None:
            return "n/a"
        text = f"{self.value:.{precision}f} {self.unit}"
        return text if self.label in ("measured", "scripted") else f"{text} ({self.label})"
