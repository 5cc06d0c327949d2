"""How many CPUs this process may use."""

from __future__ import annotations

import os


def usable_cpu_count() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one), at least 1."""
    sched_getaffinity = getattr(os, "sched_getaffinity", None)
    if sched_getaffinity is not None:
        return max(1, len(sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)
