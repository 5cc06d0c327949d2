"""How many CPUs this process may use."""

from __future__ import annotations

import os

import pytest

from slm_eval.devices.cpus import usable_cpu_count


def test_usable_cpu_count_is_within_the_machine() -> None:
    count = usable_cpu_count()
    assert 1 <= count <= (os.cpu_count() or 1)


def test_affinity_mask_is_respected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3}, raising=False)
    assert usable_cpu_count() == 2


def test_without_affinity_falls_back_to_the_cpu_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert usable_cpu_count() == 1
