"""Figures carry their unit and how they were obtained."""

from __future__ import annotations

import pytest

from slm_eval.metrics.figures import Figure, FigureLabel


@pytest.mark.parametrize(
    ("label", "text"),
    [
        ("measured", "41.2 ms"),
        ("scripted", "41.2 ms"),
        ("estimated", "41.2 ms (estimated)"),
        ("projected", "41.2 ms (projected)"),
    ],
)
def test_format_says_when_a_figure_is_not_measured(label: FigureLabel, text: str) -> None:
    assert Figure(41.234, "ms", label).format() == text


def test_format_precision_and_missing_values() -> None:
    assert Figure(3.14159, "s", "measured").format(3) == "3.142 s"
    assert Figure(99.6, "MiB", "measured").format(0) == "100 MiB"
    assert Figure(None, "tokens/s", "estimated").format() == "n/a"


def test_to_dict() -> None:
    assert Figure(1.5, "J", "estimated").to_dict() == {"value": 1.5, "unit": "J", "label": "estimated"}
    assert Figure(None, "ms", "measured").to_dict() == {"value": None, "unit": "ms", "label": "measured"}
