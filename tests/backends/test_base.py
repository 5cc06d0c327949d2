"""Timing figures of a Generation, computed by hand."""

from __future__ import annotations

import pytest

from slm_eval.backends.base import Capabilities, Generation, GenerationRequest, LoadOptions
from slm_eval.metrics.timing import MonotonicClock


def _generation(token_times: tuple[float, ...], prompt_tokens: int = 10) -> Generation:
    return Generation(
        text="x",
        prompt_tokens=prompt_tokens,
        output_tokens=len(token_times),
        started_at=1.0,
        token_times=token_times,
        finished_at=2.0,
        finish_reason="stop",
    )


def test_figures_of_several_tokens() -> None:
    generation = _generation((1.5, 1.6, 1.7, 1.9))
    assert generation.time_to_first_token_s == pytest.approx(0.5)
    assert generation.end_to_end_s == pytest.approx(1.0)
    assert generation.time_per_output_token_s == pytest.approx(0.4 / 3)
    assert generation.decode_tokens_per_s == pytest.approx(3 / 0.4)
    assert generation.prompt_tokens_per_s == pytest.approx(10 / 0.5)


def test_figures_without_tokens() -> None:
    generation = _generation(())
    assert generation.time_to_first_token_s is None
    assert generation.time_per_output_token_s is None
    assert generation.decode_tokens_per_s is None
    assert generation.prompt_tokens_per_s is None
    assert generation.end_to_end_s == pytest.approx(1.0)


def test_figures_of_one_token() -> None:
    generation = _generation((1.25,), prompt_tokens=5)
    assert generation.time_to_first_token_s == pytest.approx(0.25)
    assert generation.prompt_tokens_per_s == pytest.approx(20.0)
    assert generation.time_per_output_token_s is None
    assert generation.decode_tokens_per_s is None


def test_tokens_at_the_same_instant_have_no_rate() -> None:
    generation = _generation((1.5, 1.5))
    assert generation.time_per_output_token_s == 0.0
    assert generation.decode_tokens_per_s is None


def test_first_token_at_submission_has_no_prompt_rate() -> None:
    assert _generation((1.0, 1.1)).prompt_tokens_per_s is None


def test_defaults() -> None:
    request = GenerationRequest("p")
    assert request.temperature == 0.0  # greedy unless asked otherwise
    assert request.stop == ()
    assert not request.ignore_eos
    options = LoadOptions()
    assert options.threads is None
    assert isinstance(options.clock, MonotonicClock)
    capabilities = Capabilities(generate=True, streaming=False, chat_template=False)
    assert not capabilities.parallel_batch
    assert capabilities.local
    assert capabilities.token_counts == "exact"
    assert capabilities.encoder_tasks == frozenset()
