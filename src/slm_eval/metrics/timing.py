"""Clocks and the timing figures of one generation: TTFT, time per output token, tokens/s."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """A monotonic clock in seconds. Passed in everywhere a duration is measured."""

    def now(self) -> float:
        """Seconds from an arbitrary, fixed origin."""
        ...


class MonotonicClock:
    """The real clock: :func:`time.perf_counter`."""

    def now(self) -> float:
        return time.perf_counter()


class SteppingClock:
    """A clock that moves only when told to: for tests and the fake backend."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go back")
        self._now += seconds


def rate_per_second(count: int, seconds: float) -> float | None:
    """``count / seconds``, or ``None`` when the interval is empty."""
    if count <= 0 or seconds <= 0:
        return None
    return count / seconds
