"""Clocks and rates."""

from __future__ import annotations

import pytest

from slm_eval.metrics.timing import MonotonicClock, SteppingClock, rate_per_second


def test_stepping_clock_moves_only_when_told() -> None:
    clock = SteppingClock(start=10.0)
    assert clock.now() == 10.0
    assert clock.now() == 10.0
    clock.advance(0.5)
    clock.advance(0.0)
    assert clock.now() == pytest.approx(10.5)


def test_stepping_clock_cannot_go_back() -> None:
    clock = SteppingClock()
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(-0.001)
    assert clock.now() == 0.0


def test_monotonic_clock_never_goes_back() -> None:
    clock = MonotonicClock()
    readings = [clock.now() for _ in range(100)]
    assert readings == sorted(readings)


@pytest.mark.parametrize(
    ("count", "seconds", "rate"),
    [(10, 2.0, 5.0), (1, 0.25, 4.0), (0, 1.0, None), (5, 0.0, None), (5, -1.0, None), (-1, 1.0, None)],
)
def test_rate_per_second(count: int, seconds: float, rate: float | None) -> None:
    assert rate_per_second(count, seconds) == rate
