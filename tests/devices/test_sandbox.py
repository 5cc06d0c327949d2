"""The worker process under a profile's limits: limits read back inside it, memory measured, a real OOM.

These start real worker processes. The fake backend keeps most of them under a second; the out-of-memory
tests load the real SmolLM2 GGUF with a 32K context, whose KV cache (~750 MB) cannot fit in 300 MiB.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from slm_eval.devices.cgroup import MEMORY_ROOT, MemoryCgroup, own_memory_cgroup
from slm_eval.devices.sandbox import (
    MemorySampler,
    SandboxLimits,
    WorkerOutcome,
    WorkerProcess,
    docker_engine_reachable,
    limits_for,
)

MIB = 1024 * 1024
MODEL = "smollm2-135m-instruct"


def _cgroup_writable() -> bool:
    group = MemoryCgroup.create(f"slm-eval-test-probe-{os.getpid()}", 64 * MIB)
    if group is None:
        return False
    group.remove()
    return True


CGROUP = _cgroup_writable()
needs_cgroup = pytest.mark.skipif(not CGROUP, reason=f"no writable cgroup v1 memory controller at {MEMORY_ROOT}")


def _fake_job(*prompts: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "backend": "fake",
        "requests": [{"key": f"k{i}", "prompt": p, "max_new_tokens": 4} for i, p in enumerate(prompts)],
        **extra,
    }


def _run(limits: SandboxLimits, job: dict[str, Any], **options: Any) -> tuple[WorkerOutcome, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    outcome = WorkerProcess(limits, **options).run(job, events.append)
    return outcome, events


# --- limits_for --------------------------------------------------------------------------------------


def test_limits_for_a_profile_within_the_host() -> None:
    limits = limits_for(2, 512, [5, 1, 3, 7])
    assert limits == SandboxLimits(cpus=(1, 3), memory_bytes=512 * MIB, threads=2, note="")


def test_limits_for_more_cores_than_the_host_allows_caps_and_says_so() -> None:
    limits = limits_for(8, 2048, [0, 1])
    assert limits.cpus == (0, 1)
    assert limits.threads == 2
    assert limits.memory_bytes == 2048 * 1024 * 1024 == 2_147_483_648
    assert limits.note == "the profile has 8 cores but this host allows 2; all 2 used"


def test_limits_for_the_host_profile_are_none() -> None:
    limits = limits_for(None, None, [0, 1, 2])
    assert limits == SandboxLimits(cpus=None, memory_bytes=None, threads=3, note="")


# --- the worker reads its limits back ----------------------------------------------------------------


def test_the_worker_answers_and_reports_its_events() -> None:
    outcome, events = _run(limits_for(None, None, [0]), _fake_job("What is a visa?", "Declare cash?"))
    assert [e["event"] for e in events] == ["ready", "loaded", "result", "result", "done"]
    first = events[2]
    assert first["key"] == "k0"
    assert first["text"] == f"(dry run) {MODEL} received"  # four words: max_new_tokens 4
    assert first["output_tokens"] == 4 and first["finish_reason"] == "length"
    assert first["ttft_s"] == pytest.approx(0.004) and first["tpot_s"] == pytest.approx(0.01)
    assert outcome.exit_code == 0 and outcome.signal is None and outcome.error is None
    assert outcome.sandbox == "process" and outcome.memory_enforcement == "none"
    assert outcome.out_of_memory is False


def test_one_core_means_affinity_to_one_cpu_read_back_in_the_worker() -> None:
    usable = sorted(os.sched_getaffinity(0))
    limits = limits_for(1, None, usable)
    outcome, events = _run(limits, _fake_job("hello there"))
    assert events[0]["event"] == "ready"
    assert outcome.read_back["affinity"] == [usable[0]]
    assert outcome.limits.threads == 1


def test_the_memory_limit_is_read_back_in_the_worker() -> None:
    limits = limits_for(None, 1024, sorted(os.sched_getaffinity(0)))
    outcome, _ = _run(limits, _fake_job("hello there"))
    assert outcome.exit_code == 0
    assert outcome.memory_enforcement == ("cgroup-v1" if CGROUP else "rlimit-as")
    if outcome.memory_enforcement == "cgroup-v1":
        assert outcome.read_back["cgroup_memory_limit"] == 1024 * MIB
        assert outcome.read_back["rlimit_as"] is None
    else:
        assert outcome.read_back["rlimit_as"] == 1024 * MIB
        assert outcome.read_back["cgroup_memory_limit"] is None
    assert outcome.hit_memory_limit is False


def test_without_cgroups_the_address_space_limit_is_applied() -> None:
    outcome, _ = _run(limits_for(1, 1024, [0]), _fake_job("hello there"), use_cgroup=False)
    assert outcome.exit_code == 0
    assert outcome.memory_enforcement == "rlimit-as"
    assert outcome.read_back == {"affinity": [0], "rlimit_as": 1024 * MIB, "cgroup_memory_limit": None}


@needs_cgroup
def test_the_cgroup_is_removed_after_the_worker_exits() -> None:
    own = own_memory_cgroup()
    assert own is not None
    parent = MEMORY_ROOT / own.lstrip("/")
    outcome, _ = _run(limits_for(1, 256, [0]), _fake_job("hello there"))
    assert outcome.memory_enforcement == "cgroup-v1"
    assert list(parent.glob(f"slm-eval-{os.getpid()}-*")) == []


# --- memory measured from outside and by the kernel --------------------------------------------------


def test_peak_rss_from_wait4_and_the_sampled_peak() -> None:
    outcome, _ = _run(limits_for(None, None, [0]), _fake_job("hello there"), sample_interval_s=0.01)
    assert outcome.peak_rss_bytes is not None and outcome.sampled_peak_rss_bytes is not None
    assert outcome.peak_rss_bytes > 5 * MIB  # a Python interpreter with slm_eval imported
    assert outcome.memory_samples, "the parent sampled the worker at least once"
    assert all(t >= 0 for t, _ in outcome.memory_samples)
    assert outcome.memory_samples[0][1] > 0
    assert outcome.sampled_peak_rss_bytes == max(rss for _, rss in outcome.memory_samples)
    # The kernel's maximum is never below what was seen from outside.
    assert outcome.peak_rss_bytes >= 0.95 * outcome.sampled_peak_rss_bytes
    assert outcome.cpu_seconds is not None and outcome.cpu_seconds > 0


def test_the_kernel_peak_is_the_workers_own_not_the_parents() -> None:
    # ru_maxrss from wait4 also counts the parent's pages the child shared before exec; VmHWM does not.
    ballast = bytearray(256 * MIB)
    ballast[::4096] = b"\x01" * len(ballast[::4096])  # touch every page: the parent's RSS is now > 256 MiB
    outcome, _ = _run(limits_for(None, None, [0]), _fake_job("hello there"), sample_interval_s=0.01)
    del ballast
    assert outcome.sampled_peak_rss_bytes is not None and outcome.peak_rss_bytes is not None
    assert outcome.sampled_peak_rss_bytes < 128 * MIB
    assert outcome.peak_rss_bytes < 2 * outcome.sampled_peak_rss_bytes
    assert outcome.peak_rss_source is not None and "VmHWM" in outcome.peak_rss_source
    assert outcome.wait4_maxrss_bytes is not None and outcome.wait4_maxrss_bytes >= outcome.peak_rss_bytes


def test_no_memory_sample_is_taken_of_an_exited_worker() -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while psutil.Process(process.pid).status() != psutil.STATUS_ZOMBIE:  # exited, not yet reaped
            assert time.monotonic() < deadline, "the child did not exit"
            time.sleep(0.005)
        sampler = MemorySampler(process.pid, interval_s=0.005)
        sampler.start()
        deadline = time.monotonic() + 5
        while not sampler.samples and sampler._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        sampler.stop()
    finally:
        process.wait()
    assert all(rss > 0 for _, rss in sampler.samples), sampler.samples[:3]


# --- failures ----------------------------------------------------------------------------------------


def test_a_user_error_in_the_worker_comes_back_as_an_event() -> None:
    outcome, events = _run(limits_for(None, None, [0]), _fake_job("   "))
    assert outcome.error is not None
    assert outcome.error["kind"] == "user"
    assert outcome.error["message"] == "empty prompt: give some text to answer"
    assert outcome.exit_code == 3
    assert outcome.out_of_memory is False
    assert [e["event"] for e in events] == ["ready", "loaded", "error"]


def test_an_unknown_model_in_the_job_is_a_user_error() -> None:
    job = _fake_job("hello")
    job["model"] = "phi-4"
    outcome, _ = _run(limits_for(None, None, [0]), job)
    assert outcome.error is not None and outcome.error["kind"] == "user"
    assert "'phi-4'" in outcome.error["message"]


@pytest.mark.slow
@needs_cgroup
def test_a_real_out_of_memory_under_the_cgroup_limit(tmp_path: Path) -> None:
    job = {
        "model": MODEL,
        "backend": "llamacpp",
        "cache_dir": str(tmp_path / "cache"),
        "load": {"threads": 1, "context_length": 32768, "seed": 0},
        "requests": [{"key": "k0", "prompt": "What is a visa?", "max_new_tokens": 2}],
    }
    outcome, events = _run(limits_for(1, 300, [0]), job, stderr_path=tmp_path / "worker.log")
    assert outcome.memory_enforcement == "cgroup-v1"
    assert outcome.read_back["cgroup_memory_limit"] == 300 * MIB
    assert outcome.hit_memory_limit is True
    assert outcome.signal == 9
    assert outcome.out_of_memory is True
    assert "result" not in [e["event"] for e in events]


@pytest.mark.slow
def test_a_real_out_of_memory_under_the_address_space_limit(tmp_path: Path) -> None:
    job = {
        "model": MODEL,
        "backend": "llamacpp",
        "cache_dir": str(tmp_path / "cache"),
        "load": {"threads": 1, "context_length": 32768, "seed": 0},
        "requests": [{"key": "k0", "prompt": "What is a visa?", "max_new_tokens": 2}],
    }
    outcome, _ = _run(limits_for(1, 300, [0]), job, use_cgroup=False, stderr_path=tmp_path / "worker.log")
    assert outcome.memory_enforcement == "rlimit-as"
    assert outcome.read_back["rlimit_as"] == 300 * MIB
    assert outcome.out_of_memory is True


# --- docker ------------------------------------------------------------------------------------------


def test_no_docker_engine_on_a_missing_socket(tmp_path: Path) -> None:
    assert docker_engine_reachable(tmp_path / "docker.sock") is False


def test_no_docker_engine_on_a_socket_nobody_listens_to(tmp_path: Path) -> None:
    path = tmp_path / "d.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))  # bound, never listening: connect is refused
        assert docker_engine_reachable(path, timeout_s=0.2) is False
