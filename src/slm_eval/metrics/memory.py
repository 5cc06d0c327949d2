"""Peak resident memory of a process, as the operating system reports it."""

from __future__ import annotations

import sys

import psutil


def peak_rss_bytes() -> int:
    """The peak resident set size of this process so far, in bytes (measured by the kernel).

    Linux and macOS report it through ``getrusage`` (kilobytes on Linux, bytes on macOS);
    Windows through the peak working set.
    """
    if sys.platform == "win32":
        info = psutil.Process().memory_info()
        return int(getattr(info, "peak_wset", info.rss))
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def current_rss_bytes() -> int:
    """The resident set size of this process now, in bytes."""
    return int(psutil.Process().memory_info().rss)
