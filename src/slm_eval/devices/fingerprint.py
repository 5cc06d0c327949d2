"""A fingerprint of the host and software a run measured on, stored in every summary."""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from pathlib import Path

import psutil

from slm_eval import __version__
from slm_eval.devices.cpus import usable_cpu_count

PACKAGES = ("llama-cpp-python", "torch", "transformers", "onnxruntime", "onnxruntime-genai", "numpy", "psutil")


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name, or the platform's processor string where ``/proc/cpuinfo`` is absent."""
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_fingerprint() -> dict[str, object]:
    """Operating system, Python, CPU, memory and the versions of the packages that run models."""
    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": cpu_model(),
        "logical_cpus": psutil.cpu_count(logical=True),
        "usable_cpus": usable_cpu_count(),
        "memory_mib": psutil.virtual_memory().total // (1024 * 1024),
        "slm_eval": __version__,
        "packages": versions,
    }
