"""Energy per request and average power: read from RAPL or NVML, or estimated from a power model.

A reading is labelled ``measured`` only when a hardware counter gave it, on the machine the
workload ran on. Otherwise the energy is estimated from the CPU time and the device profile's
:class:`~slm_eval.devices.profiles.PowerModel` and labelled ``estimated``; an estimate is never
shown as a measurement.

Readers are cumulative counters: read once before the workload and once after, and the
difference is the energy it used (together with everything else the counted hardware ran).
"""

from __future__ import annotations

import contextlib
import importlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from slm_eval.devices.profiles import PowerModel
from slm_eval.metrics.figures import Figure

POWERCAP_ROOT = Path("/sys/class/powercap")
# Top-level package domains only: ``intel-rapl:0``, not the sub-domains ``intel-rapl:0:0`` (core, uncore,
# dram), which the package counter already includes, and not ``intel-rapl-mmio:0``, a second view of it.
_PACKAGE_DOMAIN = re.compile(r"^intel-rapl:\d+$")

EnergyLabel = Literal["measured", "estimated"]


class EnergyReader(Protocol):
    """A cumulative energy counter."""

    name: str

    def read_joules(self) -> float | None:
        """Joules counted so far (from an arbitrary origin), or ``None`` when the counter cannot be read."""
        ...


class RaplReader:
    """CPU package energy from Linux powercap RAPL (``/sys/class/powercap/intel-rapl:N/energy_uj``).

    Sums the top-level package domains. Each raw counter wraps at ``max_energy_range_uj``; the reader
    keeps the last raw value of each domain and adds the wrapped difference, so the total stays
    monotonic as long as it is read at least once per wrap period (tens of minutes at full load).
    Since Linux 5.10 ``energy_uj`` is readable by root only; elsewhere this reader gives ``None``.
    """

    name = "rapl"

    def __init__(self, root: Path = POWERCAP_ROOT) -> None:
        """Count the package domains under ``root``; nothing is read until :meth:`read_joules`."""
        self.root = root
        self._last_uj: dict[str, int] = {}
        self._total_uj: dict[str, int] = {}

    @classmethod
    def available(cls, root: Path = POWERCAP_ROOT) -> bool:
        """Whether RAPL package counters are readable under ``root``."""
        return cls(root).read_joules() is not None

    def domains(self) -> list[Path]:
        """The top-level package domain directories, sorted; empty when there are none or ``root`` is absent."""
        try:
            entries = list(self.root.iterdir())
        except OSError:
            return []
        return sorted(entry for entry in entries if _PACKAGE_DOMAIN.match(entry.name))

    def read_joules(self) -> float | None:
        """The summed package energy in joules, or ``None`` when any package counter is unreadable."""
        domains = self.domains()
        if not domains:
            return None
        readings: dict[str, int] = {}
        totals: dict[str, int] = {}
        for domain in domains:
            energy = _read_int(domain / "energy_uj")
            if energy is None:
                return None
            last = self._last_uj.get(domain.name)
            if last is None:
                totals[domain.name] = energy
            elif energy >= last:
                totals[domain.name] = self._total_uj[domain.name] + energy - last
            else:
                # The counter wrapped: it ran from `last` up to `max_range`, then from 0 up to `energy`.
                max_range = _read_int(domain / "max_energy_range_uj")
                if max_range is None or max_range < last:
                    return None
                totals[domain.name] = self._total_uj[domain.name] + max_range - last + energy
            readings[domain.name] = energy
        self._last_uj.update(readings)
        self._total_uj.update(totals)
        return sum(totals.values()) / 1e6


class NvmlReader:
    """Total GPU board energy from NVML (``nvmlDeviceGetTotalEnergyConsumption``, millijoules; Volta or newer).

    NVML counts the GPU only, not the CPU: use it when the workload runs on the GPU. ``pynvml`` (the
    ``nvidia-ml-py`` package) is imported on the first read; without it, or without a driver, or on a
    GPU that has no energy counter, the reader gives ``None``.
    """

    name = "nvml"

    def __init__(self, device_indices: Sequence[int] | None = None, nvml: Any = None) -> None:
        """Count the GPUs in ``device_indices`` (all when ``None``); ``nvml`` replaces ``pynvml`` in tests."""
        self.device_indices = None if device_indices is None else tuple(device_indices)
        self._nvml = nvml
        self._initialised = False

    def read_joules(self) -> float | None:
        """The summed energy of the chosen GPUs in joules, or ``None`` when NVML cannot give it."""
        nvml = self._load()
        if nvml is None:
            return None
        try:
            if not self._initialised:
                nvml.nvmlInit()
                self._initialised = True
            indices = self.device_indices
            if indices is None:
                indices = tuple(range(int(nvml.nvmlDeviceGetCount())))
            if not indices:
                return None
            total_mj = 0.0
            for index in indices:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                total_mj += float(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        except Exception:  # NVMLError and its many subclasses: no driver, not supported, lost GPU
            return None
        return total_mj / 1000.0

    def close(self) -> None:
        """Shut NVML down if this reader started it."""
        if self._initialised and self._nvml is not None:
            with contextlib.suppress(Exception):  # shutting down a broken NVML is not worth an error
                self._nvml.nvmlShutdown()
            self._initialised = False

    def _load(self) -> Any:
        if self._nvml is None:
            try:
                self._nvml = importlib.import_module("pynvml")
            except ImportError:
                return None
        return self._nvml


class SumReader:
    """The sum of several counters (e.g. CPU package and GPU); ``None`` when any of them is unreadable."""

    def __init__(self, readers: Sequence[EnergyReader]) -> None:
        """Sum ``readers``; the name joins theirs, e.g. ``"rapl+nvml"``."""
        self.readers = tuple(readers)
        self.name = "+".join(reader.name for reader in self.readers)

    def read_joules(self) -> float | None:
        """The summed joules of every reader, or ``None``."""
        total = 0.0
        for reader in self.readers:
            value = reader.read_joules()
            if value is None:
                return None
            total += value
        return total


def detect_energy_reader(
    root: Path = POWERCAP_ROOT,
    *,
    gpu: bool = False,
    nvml: Any = None,
) -> EnergyReader | None:
    """The energy counters that give a reading on this machine, or ``None`` when none does.

    Args:
        root: the powercap directory (a fake tree in tests).
        gpu: the workload runs on a GPU, so NVML's GPU energy is counted too (alone when RAPL is
            unreadable). Left ``False`` for CPU work: a GPU's energy says nothing about it.
        nvml: replaces the ``pynvml`` module in tests.
    """
    readers: list[EnergyReader] = []
    rapl = RaplReader(root)
    if rapl.read_joules() is not None:
        readers.append(rapl)
    if gpu:
        nvml_reader = NvmlReader(nvml=nvml)
        if nvml_reader.read_joules() is not None:
            readers.append(nvml_reader)
    if not readers:
        return None
    return readers[0] if len(readers) == 1 else SumReader(readers)


def estimate_energy_joules(cpu_seconds: float, wall_seconds: float, power: PowerModel, cores: int) -> float:
    """Energy estimated from CPU time and a linear power model.

    ``E = idle_w * wall + (active_w - idle_w) * u * wall`` with the utilisation
    ``u = min(1, cpu_seconds / (wall_seconds * cores))``: the device draws ``idle_w`` at rest and
    ``active_w`` with every core busy, linearly in between. The idle share is included, because the
    device draws it while it serves the request.

    Args:
        cpu_seconds: user + system CPU time of the workload.
        wall_seconds: wall-clock time of the workload.
        power: the device's power model.
        cores: the cores the workload may use (the profile's, or this machine's).

    Raises:
        ValueError: a negative time or fewer than one core.
    """
    if cpu_seconds < 0 or wall_seconds < 0:
        raise ValueError(f"times must not be negative (cpu_seconds={cpu_seconds}, wall_seconds={wall_seconds})")
    if cores < 1:
        raise ValueError(f"cores must be at least 1 (got {cores})")
    if wall_seconds == 0:
        return 0.0
    utilisation = min(1.0, cpu_seconds / (wall_seconds * cores))
    return power.idle_w * wall_seconds + (power.active_w - power.idle_w) * utilisation * wall_seconds


def energy_figures(joules: float | None, requests: int, wall_seconds: float, label: EnergyLabel) -> dict[str, Figure]:
    """Total energy, energy per request and average power, each with the given label.

    Args:
        joules: energy of all ``requests`` together; ``None`` gives figures without a value.
        requests: requests served, at least 1.
        wall_seconds: wall-clock time over which ``joules`` were used.
        label: ``"measured"`` for a counter's reading, ``"estimated"`` for :func:`estimate_energy_joules`.

    Returns:
        ``{"energy_total": J, "energy_per_request": J, "average_power": W}``.
    """
    if label not in ("measured", "estimated"):
        raise ValueError(f"energy figures are 'measured' or 'estimated', not {label!r}")
    if requests < 1:
        raise ValueError(f"requests must be at least 1 (got {requests})")
    per_request = None if joules is None else joules / requests
    watts = None if joules is None or wall_seconds <= 0 else joules / wall_seconds
    return {
        "energy_total": Figure(joules, "J", label),
        "energy_per_request": Figure(per_request, "J", label),
        "average_power": Figure(watts, "W", label),
    }


def power_figures(
    *,
    measured_joules: float | None,
    cpu_seconds: float,
    wall_seconds: float,
    requests: int,
    power: PowerModel | None,
    cores: int,
) -> dict[str, Figure]:
    """The ``power`` metric: measured when a counter read it, else estimated from the power model.

    Args:
        measured_joules: the counter's difference over the workload; pass it only when the workload
            ran on the device the figures describe (the host), never for a simulated profile.
        cpu_seconds: CPU time of the workload, for the estimate.
        wall_seconds: wall-clock time of the workload.
        requests: requests served, at least 1.
        power: the device profile's power model; ``None`` and no measurement gives figures without a value.
        cores: cores the workload may use, for the estimate.
    """
    if measured_joules is not None:
        return energy_figures(measured_joules, requests, wall_seconds, "measured")
    if power is None:
        return energy_figures(None, requests, wall_seconds, "estimated")
    estimate = estimate_energy_joules(cpu_seconds, wall_seconds, power, cores)
    return energy_figures(estimate, requests, wall_seconds, "estimated")


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
