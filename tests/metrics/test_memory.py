"""Peak and current resident memory of this process."""

from __future__ import annotations

from slm_eval.metrics.memory import current_rss_bytes, peak_rss_bytes

MIB = 1024 * 1024


def test_peak_is_about_at_least_the_current_resident_size() -> None:
    current = current_rss_bytes()
    peak = peak_rss_bytes()
    assert current > MIB
    # The kernel's high-water mark lags its batched RSS counters by a few pages, hence the margin.
    assert peak >= current - 4 * MIB
    assert peak < 64 * 1024 * MIB


def test_peak_is_in_bytes_and_follows_a_large_allocation() -> None:
    block = b"\x01" * (64 * MIB)  # written, so resident
    assert peak_rss_bytes() >= len(block)
