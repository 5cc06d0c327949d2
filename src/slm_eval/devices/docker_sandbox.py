"""Run the worker inside a Docker container with ``--cpus`` and ``--memory``, where an engine is reachable.

The image is built from ``docker/worker.Dockerfile`` (it holds slm-eval, llama-cpp-python and the bundled
models). The container gets no network, the profile's CPU quota and pinned CPUs, and a hard memory limit
with no swap; the cache folder and any local model path are mounted at the same absolute paths.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from slm_eval.devices.sandbox import THREAD_VARIABLES, SandboxLimits, docker_engine_reachable

DEFAULT_IMAGE = "slm-eval-worker:latest"
BUILD_HINT = "docker build -f docker/worker.Dockerfile -t slm-eval-worker ."


@dataclass(frozen=True)
class DockerChoice:
    """Whether the worker runs in a container, and why (or why not)."""

    use_docker: bool
    image: str
    reason: str


def choose_docker(profile_name: str, image: str = DEFAULT_IMAGE, docker: str = "docker") -> DockerChoice:
    """Use Docker for the ``docker-sim`` profile when an engine answers and the worker image exists."""
    if profile_name != "docker-sim":
        return DockerChoice(False, image, "the profile is simulated with a local worker process")
    if shutil.which(docker) is None or not docker_engine_reachable():
        return DockerChoice(False, image, "no Docker engine reachable; the limits apply to a local worker process")
    inspect = subprocess.run([docker, "image", "inspect", image], capture_output=True, check=False)
    if inspect.returncode != 0:
        return DockerChoice(False, image, f"Docker image {image} not found (build it: {BUILD_HINT}); local worker used")
    return DockerChoice(True, image, f"worker ran in a container of {image}")


def docker_command(limits: SandboxLimits, image: str, mounts: Sequence[Path], docker: str = "docker") -> list[str]:
    """The ``docker run`` command line that starts the worker under ``limits``."""
    command = [docker, "run", "--rm", "-i", "--network=none"]
    if limits.cpus:
        command += [f"--cpus={len(limits.cpus)}", f"--cpuset-cpus={','.join(str(cpu) for cpu in limits.cpus)}"]
    if limits.memory_bytes is not None:
        command += [f"--memory={limits.memory_bytes}b", f"--memory-swap={limits.memory_bytes}b"]
    command += [f"--env={name}={limits.threads}" for name in THREAD_VARIABLES]
    for mount in dict.fromkeys(path.resolve() for path in mounts):
        command.append(f"--volume={mount}:{mount}")
    command.append(image)
    return command
