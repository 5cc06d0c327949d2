"""How the CLI formats numbers, weights status and the per-answer summary line."""

from __future__ import annotations

import pytest

from slm_eval.backends.base import Generation
from slm_eval.cli_output import answer_summary, format_context, format_parameters, weights_status
from slm_eval.metrics.figures import Figure
from slm_eval.models.catalogue import default_registry
from slm_eval.quicktest import QuickTestAnswer


@pytest.mark.parametrize(
    ("count", "text"), [(None, "n/a"), (134_515_008, "134.5M"), (3_821_079_552, "3.8B"), (1_000_000_000, "1.0B")]
)
def test_format_parameters(count: int | None, text: str) -> None:
    assert format_parameters(count) == text


@pytest.mark.parametrize(
    ("tokens", "text"), [(None, "n/a"), (131_072, "128K"), (2048, "2K"), (512, "512"), (1000, "1000")]
)
def test_format_context(tokens: int | None, text: str) -> None:
    assert format_context(tokens) == text


@pytest.mark.parametrize(
    ("name", "status"),
    [("phi-3-mini", "hub (network)"), ("grok", "api (network)"), ("smollm2", "installed")],
)
def test_weights_status(name: str, status: str) -> None:
    assert weights_status(default_registry().resolve(name)) == status


def test_answer_summary() -> None:
    generation = Generation("a b", 12, 2, 0.0, (0.25, 0.35), 0.4, "length")
    answer = QuickTestAnswer("p", generation, "measured", Figure(123.4, "MiB", "measured"))
    assert answer_summary(answer) == (
        "prompt 12 tok · output 2 tok (length) · TTFT 250 ms · 10.0 tokens/s · peak RSS 123 MiB · measured"
    )
