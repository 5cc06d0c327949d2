"""Energy readers on a fake sysfs tree and a fake NVML, the estimate, and honest labels."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from slm_eval.devices.profiles import PowerModel
from slm_eval.metrics.energy import (
    EnergyReader,
    NvmlReader,
    RaplReader,
    SumReader,
    detect_energy_reader,
    energy_figures,
    estimate_energy_joules,
    power_figures,
)

MAX_RANGE_UJ = 262_143_328_850


def _domain(root: Path, name: str, energy_uj: int, max_range_uj: int = MAX_RANGE_UJ) -> Path:
    domain = root / name
    domain.mkdir(parents=True, exist_ok=True)
    (domain / "name").write_text("package-0\n")
    (domain / "energy_uj").write_text(f"{energy_uj}\n")
    (domain / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
    return domain


def _set_energy(domain: Path, energy_uj: int) -> None:
    (domain / "energy_uj").write_text(f"{energy_uj}\n")


def test_rapl_sums_package_domains_only(tmp_path: Path) -> None:
    _domain(tmp_path, "intel-rapl:0", 1_000_000)
    _domain(tmp_path, "intel-rapl:1", 2_500_000)
    _domain(tmp_path, "intel-rapl:0:0", 400_000_000)  # core sub-domain: part of package 0 already
    _domain(tmp_path, "intel-rapl-mmio:0", 900_000_000)  # a second view of package 0
    reader = RaplReader(tmp_path)
    assert [domain.name for domain in reader.domains()] == ["intel-rapl:0", "intel-rapl:1"]
    assert reader.read_joules() == pytest.approx(3.5)
    assert RaplReader.available(tmp_path)


def test_rapl_counts_increments(tmp_path: Path) -> None:
    package = _domain(tmp_path, "intel-rapl:0", 5_000_000)
    reader = RaplReader(tmp_path)
    before = reader.read_joules()
    _set_energy(package, 17_000_000)
    after = reader.read_joules()
    assert before is not None and after is not None
    assert after - before == pytest.approx(12.0)


def test_rapl_handles_wrap_around(tmp_path: Path) -> None:
    package = _domain(tmp_path, "intel-rapl:0", 990, max_range_uj=1000)
    reader = RaplReader(tmp_path)
    before = reader.read_joules()
    _set_energy(package, 30)  # ran 990 -> 1000, then 0 -> 30: 40 uJ
    middle = reader.read_joules()
    _set_energy(package, 530)
    after = reader.read_joules()
    assert before is not None and middle is not None and after is not None
    assert (middle - before) * 1e6 == pytest.approx(40)
    assert (after - before) * 1e6 == pytest.approx(540)


def test_rapl_wrap_without_a_range_is_unreadable(tmp_path: Path) -> None:
    package = _domain(tmp_path, "intel-rapl:0", 990)
    (package / "max_energy_range_uj").unlink()
    reader = RaplReader(tmp_path)
    assert reader.read_joules() is not None
    _set_energy(package, 30)
    assert reader.read_joules() is None


def test_rapl_absent_gives_none(tmp_path: Path) -> None:
    assert RaplReader(tmp_path / "no-powercap").read_joules() is None
    assert RaplReader(tmp_path).read_joules() is None  # a powercap directory with no RAPL domain
    assert not RaplReader.available(tmp_path)


def test_rapl_garbage_gives_none(tmp_path: Path) -> None:
    package = _domain(tmp_path, "intel-rapl:0", 1)
    (package / "energy_uj").write_text("not a number\n")
    assert RaplReader(tmp_path).read_joules() is None


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_rapl_unreadable_counter_gives_none(tmp_path: Path) -> None:
    _domain(tmp_path, "intel-rapl:0", 1_000_000)
    package = _domain(tmp_path, "intel-rapl:1", 1_000_000)
    (package / "energy_uj").chmod(0o000)  # as for non-root users since Linux 5.10
    try:
        assert RaplReader(tmp_path).read_joules() is None
        assert detect_energy_reader(tmp_path) is None
    finally:
        (package / "energy_uj").chmod(0o644)


def test_rapl_permission_denied_gives_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _domain(tmp_path, "intel-rapl:0", 1_000_000)
    locked = _domain(tmp_path, "intel-rapl:1", 1_000_000) / "energy_uj"
    read_text = Path.read_text

    def guarded(self: Path, *args: object, **kwargs: object) -> str:
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return read_text(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", guarded)
    assert RaplReader(tmp_path).read_joules() is None
    assert not RaplReader.available(tmp_path)


def test_rapl_missing_counter_file_gives_none(tmp_path: Path) -> None:
    package = _domain(tmp_path, "intel-rapl:0", 1_000_000)
    (package / "energy_uj").unlink()
    assert RaplReader(tmp_path).read_joules() is None


class _FakeNvml:
    class NVMLError(Exception):
        pass

    def __init__(self, energies_mj: list[int], *, fail: bool = False) -> None:
        self.energies_mj = energies_mj
        self.fail = fail
        self.initialised = 0
        self.shut_down = 0

    def nvmlInit(self) -> None:  # noqa: N802 - NVML's own names
        if self.fail:
            raise self.NVMLError("driver not loaded")
        self.initialised += 1

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.shut_down += 1

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.energies_mj)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:  # noqa: N802
        return index

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:  # noqa: N802
        return self.energies_mj[handle]


def test_nvml_sums_devices_in_joules() -> None:
    fake = _FakeNvml([1500, 2500])
    reader = NvmlReader(nvml=fake)
    assert reader.read_joules() == pytest.approx(4.0)
    assert reader.read_joules() == pytest.approx(4.0)
    assert fake.initialised == 1
    assert NvmlReader(device_indices=[1], nvml=fake).read_joules() == pytest.approx(2.5)
    reader.close()
    assert fake.shut_down == 1


def test_nvml_failure_gives_none() -> None:
    assert NvmlReader(nvml=_FakeNvml([1], fail=True)).read_joules() is None
    assert NvmlReader(nvml=_FakeNvml([])).read_joules() is None


def test_nvml_without_pynvml_gives_none(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    def no_module(name: str) -> object:
        raise ImportError(name)

    monkeypatch.setattr(importlib, "import_module", no_module)
    assert NvmlReader().read_joules() is None


def test_detect_prefers_rapl_and_adds_the_gpu_only_for_gpu_work(tmp_path: Path) -> None:
    _domain(tmp_path, "intel-rapl:0", 2_000_000)
    fake = _FakeNvml([3000])
    cpu = detect_energy_reader(tmp_path, nvml=fake)
    assert cpu is not None and cpu.name == "rapl"
    both = detect_energy_reader(tmp_path, gpu=True, nvml=fake)
    assert both is not None and both.name == "rapl+nvml"
    assert both.read_joules() == pytest.approx(5.0)
    gpu_only = detect_energy_reader(tmp_path / "absent", gpu=True, nvml=fake)
    assert gpu_only is not None and gpu_only.name == "nvml"
    assert detect_energy_reader(tmp_path / "absent", nvml=fake) is None


def test_sum_reader_is_none_when_a_part_is() -> None:
    class Dead:
        name = "dead"

        def read_joules(self) -> float | None:
            return None

    readers: list[EnergyReader] = [NvmlReader(nvml=_FakeNvml([1000])), Dead()]
    assert SumReader(readers).read_joules() is None


def test_estimate_against_hand_computed_numbers() -> None:
    power = PowerModel(idle_w=2.7, active_w=7.0)
    # 4 cores, 10 s wall, 20 CPU-seconds: utilisation 0.5; 2.7*10 + 4.3*0.5*10 = 48.5 J
    assert estimate_energy_joules(20.0, 10.0, power, cores=4) == pytest.approx(48.5)
    # Fully busy (and more CPU time than cores allow) is capped at active power: 7 W * 10 s
    assert estimate_energy_joules(40.0, 10.0, power, cores=4) == pytest.approx(70.0)
    assert estimate_energy_joules(99.0, 10.0, power, cores=4) == pytest.approx(70.0)
    # Idle: only the idle draw
    assert estimate_energy_joules(0.0, 10.0, power, cores=4) == pytest.approx(27.0)
    assert estimate_energy_joules(0.0, 0.0, power, cores=4) == 0.0


def test_estimate_rejects_impossible_inputs() -> None:
    power = PowerModel(idle_w=1.0, active_w=2.0)
    with pytest.raises(ValueError):
        estimate_energy_joules(-1.0, 1.0, power, cores=1)
    with pytest.raises(ValueError):
        estimate_energy_joules(1.0, 1.0, power, cores=0)


def test_energy_figures_per_request_and_watts() -> None:
    figures = energy_figures(48.5, requests=5, wall_seconds=10.0, label="estimated")
    assert figures["energy_total"].value == pytest.approx(48.5)
    assert figures["energy_per_request"].value == pytest.approx(9.7)
    assert figures["energy_per_request"].unit == "J"
    assert figures["average_power"].value == pytest.approx(4.85)
    assert figures["average_power"].unit == "W"
    assert {figure.label for figure in figures.values()} == {"estimated"}
    assert figures["average_power"].format(2) == "4.85 W (estimated)"


def test_energy_figures_labels_are_only_measured_or_estimated() -> None:
    measured = energy_figures(10.0, requests=2, wall_seconds=5.0, label="measured")
    assert {figure.label for figure in measured.values()} == {"measured"}
    with pytest.raises(ValueError):
        energy_figures(10.0, requests=2, wall_seconds=5.0, label="projected")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        energy_figures(10.0, requests=0, wall_seconds=5.0, label="measured")
    assert energy_figures(10.0, requests=1, wall_seconds=0.0, label="measured")["average_power"].value is None


def test_power_figures_never_label_an_estimate_measured() -> None:
    power = PowerModel(idle_w=2.7, active_w=7.0)
    measured = power_figures(
        measured_joules=30.0, cpu_seconds=20.0, wall_seconds=10.0, requests=5, power=power, cores=4
    )
    assert measured["energy_total"].value == pytest.approx(30.0)
    assert {figure.label for figure in measured.values()} == {"measured"}
    estimated = power_figures(
        measured_joules=None, cpu_seconds=20.0, wall_seconds=10.0, requests=5, power=power, cores=4
    )
    assert estimated["energy_total"].value == pytest.approx(48.5)
    assert {figure.label for figure in estimated.values()} == {"estimated"}
    unknown = power_figures(measured_joules=None, cpu_seconds=1.0, wall_seconds=1.0, requests=1, power=None, cores=1)
    assert all(figure.value is None and figure.label == "estimated" for figure in unknown.values())
    assert unknown["average_power"].format() == "n/a"


def test_a_fake_namespace_works_as_nvml() -> None:
    fake = SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda index: index,
        nvmlDeviceGetTotalEnergyConsumption=lambda handle: 1234,
    )
    assert NvmlReader(nvml=fake).read_joules() == pytest.approx(1.234)
