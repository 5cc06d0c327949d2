"""This machine's memory bandwidth and peak compute, measured with numpy, for the roofline projection.

Both are quick micro-benchmarks, not STREAM or LINPACK: they give the same kind of figure on every
machine, which is what the projection's ratios need. numpy is imported inside each function.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from slm_eval.devices.cpus import usable_cpu_count
from slm_eval.metrics.figures import Figure

Clock = Callable[[], float]


def measure_memory_bandwidth_gbs(
    size_mib: int = 256,
    repeats: int = 5,
    threads: int | None = None,
    clock: Clock = time.perf_counter,
) -> Figure:
    """Memory bandwidth in GB/s: the best of ``repeats`` copies of a ``size_mib`` buffer.

    Each copy reads ``size_mib`` and writes ``size_mib``, so ``2 * size`` bytes count as moved (the
    STREAM convention; write-allocate traffic is not counted). The buffer is split across ``threads``
    threads (default: the CPUs this process may use), since numpy releases the GIL while copying and
    one core alone seldom saturates the memory bus. Choose a size well above the last-level cache.

    Returns:
        The figure, labelled ``measured``; its value is ``None`` when the clock never advanced.

    Raises:
        ValueError: a size, repeat count or thread count below 1.
    """
    import numpy as np

    if size_mib < 1 or repeats < 1:
        raise ValueError(f"size_mib and repeats must be at least 1 (got {size_mib}, {repeats})")
    workers = usable_cpu_count() if threads is None else threads
    if workers < 1:
        raise ValueError(f"threads must be at least 1 (got {threads})")
    size = size_mib * 1024 * 1024
    source = np.ones(size, dtype=np.uint8)
    target = np.zeros(size, dtype=np.uint8)
    bounds = [(size * index // workers, size * (index + 1) // workers) for index in range(workers)]

    def copy_chunk(bound: tuple[int, int]) -> None:
        np.copyto(target[bound[0] : bound[1]], source[bound[0] : bound[1]])

    best = 0.0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(copy_chunk, bounds))  # untimed: touches every page of the target
        for _ in range(repeats):
            start = clock()
            list(pool.map(copy_chunk, bounds))
            elapsed = clock() - start
            if elapsed > 0:
                best = max(best, 2 * size / elapsed / 1e9)
    return Figure(best or None, "GB/s", "measured")


def measure_peak_gflops(n: int = 1024, repeats: int = 3, clock: Clock = time.perf_counter) -> Figure:
    """Peak float32 compute in GFLOPS: the best of ``repeats`` ``n x n`` matrix products (``2 n^3`` FLOPs each).

    numpy's BLAS uses its own threads, so this is the figure for the whole machine as BLAS sees it.

    Raises:
        ValueError: ``n`` or ``repeats`` below 1.
    """
    import numpy as np

    if n < 1 or repeats < 1:
        raise ValueError(f"n and repeats must be at least 1 (got {n}, {repeats})")
    rng = np.random.default_rng(0)
    left = rng.random((n, n), dtype=np.float32)
    right = rng.random((n, n), dtype=np.float32)
    np.matmul(left, right)  # untimed: BLAS thread start-up
    best = 0.0
    for _ in range(repeats):
        start = clock()
        np.matmul(left, right)
        elapsed = clock() - start
        if elapsed > 0:
            best = max(best, 2 * n**3 / elapsed / 1e9)
    return Figure(best or None, "GFLOPS", "measured")
