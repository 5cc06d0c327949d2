"""Clocks and the timing figures of one generation: TTFT, time per output token, tokens/s."""

from __future__ import annotations

import time
from dataclasses import dataclass
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


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between ranks (numpy's default).

    Raises:
        ValueError: no values, or ``q`` outside 0..100.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


@dataclass(frozen=True)
class Distribution:
    """Percentiles, mean and standard deviation of a series of measurements."""

    n: int
    mean: float
    std: float
    p50: float
    p90: float
    p99: float
    minimum: float
    maximum: float

    @property
    def coefficient_of_variation(self) -> float | None:
        """Standard deviation over mean, or ``None`` for a zero mean."""
        return self.std / self.mean if self.mean else None

    def to_dict(self, unit: str, label: str) -> dict[str, object]:
        """JSON-ready, with the unit and label beside the numbers."""
        return {
            "n": self.n,
            "mean": self.mean,
            "std": self.std,
            "p50": self.p50,
            "p90": self.p90,
            "p99": self.p99,
            "min": self.minimum,
            "max": self.maximum,
            "cv": self.coefficient_of_variation,
            "unit": unit,
            "label": label,
        }


def distribution(values: list[float]) -> Distribution | None:
    """Summarise a series (sample standard deviation); ``None`` for an empty one."""
    if not values:
        return None
    n = len(values)
    mean = sum(values) / n
    variance = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return Distribution(
        n=n,
        mean=mean,
        std=variance**0.5,
        p50=percentile(values, 50),
        p90=percentile(values, 90),
        p99=percentile(values, 99),
        minimum=min(values),
        maximum=max(values),
    )
