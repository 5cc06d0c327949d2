"""How many CPUs this process may use."""

from __future__ import annotations

import os


def usable_cpus() -> list[int]:
    """The CPU numbers this process may run on (its affinity mask where the OS has one), in order."""
    sched_getaffinity = getattr(os, "sched_getaffinity", None)
    if sched_getaffinity is not None:
        return sorted(sched_getaffinity(0))
    return list(range(max(1, os.cpu_count() or 1)))


def usable_cpu_count() -> int:
    """How many CPUs this process may run on, at least 1."""
    return max(1, len(usable_cpus()))
