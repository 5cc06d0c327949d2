"""The Docker sandbox: the run command carries the profile's limits; without an engine the worker runs locally."""

from __future__ import annotations

from pathlib import Path

import pytest

from slm_eval.devices import docker_sandbox
from slm_eval.devices.docker_sandbox import choose_docker, docker_command
from slm_eval.devices.sandbox import SandboxLimits


def test_docker_command_applies_cpus_memory_threads_and_no_network(tmp_path: Path) -> None:
    limits = SandboxLimits(cpus=(0, 1), memory_bytes=2 * 1024**3, threads=2)
    command = docker_command(limits, "slm-eval-worker:latest", [tmp_path, tmp_path])
    assert command[:5] == ["docker", "run", "--rm", "-i", "--network=none"]
    assert "--cpus=2" in command
    assert "--cpuset-cpus=0,1" in command
    assert f"--memory={2 * 1024**3}b" in command
    assert f"--memory-swap={2 * 1024**3}b" in command  # no swap beyond the limit
    assert "--env=OMP_NUM_THREADS=2" in command
    assert command.count(f"--volume={tmp_path.resolve()}:{tmp_path.resolve()}") == 1
    assert command[-1] == "slm-eval-worker:latest"


def test_no_limits_means_no_limit_flags() -> None:
    command = docker_command(SandboxLimits(cpus=None, memory_bytes=None, threads=4), "img", [])
    assert not any(flag.startswith(("--cpus", "--memory", "--cpuset")) for flag in command)


def test_only_docker_sim_uses_a_container() -> None:
    choice = choose_docker("raspberry-pi-5")
    assert not choice.use_docker
    assert "local worker" in choice.reason


def test_without_an_engine_docker_sim_falls_back_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker_sandbox, "docker_engine_reachable", lambda: False)
    choice = choose_docker("docker-sim")
    assert not choice.use_docker
    assert "no Docker engine reachable" in choice.reason
