"""The doctor's probes: parsers on canned text, and each probe with its outside world faked."""

from __future__ import annotations

import importlib.machinery
import sys
import types
from pathlib import Path

import pytest

from slm_eval import doctor_probes
from slm_eval.doctor_probes import (
    OptionalPackage,
    parse_cpuinfo,
    parse_nvidia_smi,
    probe_aws,
    probe_cpu,
    probe_disks,
    probe_docker,
    probe_gpu,
    probe_memory,
    probe_network,
    probe_package,
    probe_platform,
)

X86_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9654 96-Core Processor
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw

processor\t: 1
model name\t: AMD EPYC 9654 96-Core Processor
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw
"""
ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid
CPU implementer\t: 0x41
"""


def test_parse_cpuinfo_x86_and_arm() -> None:
    model, flags = parse_cpuinfo(X86_CPUINFO)
    assert model == "AMD EPYC 9654 96-Core Processor"
    assert {"avx2", "avx512f"} <= flags
    model, flags = parse_cpuinfo(ARM_CPUINFO)
    assert model == ""
    assert "neon" in flags


def test_probe_cpu_reads_the_given_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(X86_CPUINFO, encoding="utf-8")
    cpu = probe_cpu("Linux", "x86_64", cpuinfo)
    assert cpu.model == "AMD EPYC 9654 96-Core Processor"
    assert cpu.features == ("avx2", "avx512f")
    assert cpu.features_known
    assert 1 <= cpu.usable_cores <= cpu.logical_cores


def test_probe_cpu_arm_without_cpuinfo_has_neon(tmp_path: Path) -> None:
    cpu = probe_cpu("Linux", "aarch64", tmp_path / "absent")
    assert cpu.features == ("neon",)


def test_probe_cpu_on_macos_intel_reads_sysctl(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {"machdep.cpu.brand_string": "Intel Core i9", "machdep.cpu.leaf7_features": "AVX2 BMI2"}
    monkeypatch.setattr(doctor_probes, "_sysctl", lambda name: answers.get(name, ""))
    cpu = probe_cpu("Darwin", "x86_64")
    assert (cpu.model, cpu.features) == ("Intel Core i9", ("avx2",))


def test_probe_cpu_elsewhere_never_fails() -> None:
    cpu = probe_cpu("Plan9", "mips")
    assert cpu.features == ()
    assert not cpu.features_known


def test_this_machine_platform_memory_and_cpu_are_sane() -> None:
    platform = probe_platform()
    assert platform.python_ok and platform.core_missing == ()
    assert platform.system == "Linux"
    assert not probe_platform(python_version=(3, 9)).python_ok
    memory = probe_memory()
    assert memory.total_bytes >= memory.available_bytes > 0
    cpu = probe_cpu()
    assert cpu.usable_cores >= 1
    assert cpu.features_known


def test_disk_is_probed_at_the_nearest_existing_parent(tmp_path: Path) -> None:
    (disk,) = probe_disks([("models", tmp_path / "data" / "models")])
    assert disk.probed == str(tmp_path)
    assert disk.free_bytes is not None and disk.free_bytes > 0


def test_no_nvml_and_no_nvidia_smi_is_no_gpu() -> None:
    gpu = probe_gpu(nvml_module="no_such_nvml_module", smi="no-such-nvidia-smi")
    assert gpu.gpus == ()
    assert gpu.method == "none"


def test_gpu_through_a_fake_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("fake_pynvml")
    fake.__spec__ = importlib.machinery.ModuleSpec("fake_pynvml", None)
    fake.nvmlInit = lambda: None  # type: ignore[attr-defined]
    fake.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    fake.nvmlSystemGetDriverVersion = lambda: b"550.54.15"  # type: ignore[attr-defined]
    fake.nvmlDeviceGetCount = lambda: 1  # type: ignore[attr-defined]
    fake.nvmlDeviceGetHandleByIndex = lambda index: index  # type: ignore[attr-defined]
    fake.nvmlDeviceGetName = lambda handle: "NVIDIA H200"  # type: ignore[attr-defined]
    fake.nvmlDeviceGetMemoryInfo = lambda handle: types.SimpleNamespace(total=141 * 1024**3)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_pynvml", fake)
    gpu = probe_gpu(nvml_module="fake_pynvml", smi="no-such-nvidia-smi")
    assert gpu.method == "nvml"
    assert gpu.driver == "550.54.15"
    assert [item.name for item in gpu.gpus] == ["NVIDIA H200"]


def test_a_failing_nvml_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("broken_pynvml")
    fake.__spec__ = importlib.machinery.ModuleSpec("broken_pynvml", None)

    def fail() -> None:
        raise RuntimeError("NVML Shared Library Not Found")

    fake.nvmlInit = fail  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "broken_pynvml", fake)
    gpu = probe_gpu(nvml_module="broken_pynvml", smi="no-such-nvidia-smi")
    assert gpu.gpus == ()
    assert gpu.detail == "NVML: RuntimeError"


def test_parse_nvidia_smi() -> None:
    gpu = parse_nvidia_smi("NVIDIA A10G, 23028, 535.104.05\n")
    assert gpu.driver == "535.104.05"
    assert gpu.gpus[0].name == "NVIDIA A10G"
    assert gpu.gpus[0].memory_bytes == 23028 * 1024 * 1024


def test_docker_at_docker_host_tcp_uses_the_connector() -> None:
    calls: list[tuple[str, int, float]] = []

    def connector(host: str, port: int, timeout_s: float) -> bool:
        calls.append((host, port, timeout_s))
        return True

    docker = probe_docker({"DOCKER_HOST": "tcp://10.0.0.5:2375"}, connector)
    assert docker.available
    assert calls == [("10.0.0.5", 2375, doctor_probes.DOCKER_TIMEOUT_S)]


def test_docker_default_socket_and_bad_scheme() -> None:
    seen: list[str] = []

    def unix(path: str, timeout_s: float) -> bool:
        seen.append(path)
        return False

    docker = probe_docker({}, unix_connector=unix)
    assert not docker.available
    assert seen == ["/var/run/docker.sock"]
    assert probe_docker({"DOCKER_HOST": "ssh://box"}).detail == "unsupported DOCKER_HOST scheme 'ssh'"


def test_docker_on_this_machine_is_not_reachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert not probe_docker().available


def test_aws_reports_only_the_provider_method() -> None:
    assert probe_aws(lambda: "env", installed=True).detail == "found (provider: env)"
    assert not probe_aws(lambda: None, installed=True).available
    assert probe_aws(installed=False).detail == "boto3 not installed"

    def broken() -> str | None:
        raise ValueError("bad config")

    assert probe_aws(broken, installed=True).detail == "credential chain failed (ValueError)"


def test_aws_real_chain_never_shows_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASENTINEL00000000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sentinel-secret")
    aws = probe_aws()
    assert aws.available
    assert "sentinel" not in aws.detail.lower()


def test_network_uses_the_connector_and_respects_hf_hub_offline() -> None:
    calls: list[str] = []

    def connector(host: str, port: int, timeout_s: float) -> bool:
        calls.append(host)
        assert timeout_s == doctor_probes.NETWORK_TIMEOUT_S
        return True

    network = probe_network(connector, {"HF_HUB_OFFLINE": "1"})
    assert calls == ["pypi.org"]
    assert network.reachable == {"huggingface.co": False, "pypi.org": True}
    assert network.online and network.hf_offline
    assert probe_network(connector, {}).reachable == {"huggingface.co": True, "pypi.org": True}


def test_a_failing_connector_reads_as_offline() -> None:
    def connector(host: str, port: int, timeout_s: float) -> bool:
        raise OSError("no route")

    assert not probe_network(connector, {}).online


def test_packages_are_read_from_metadata() -> None:
    present = probe_package(OptionalPackage("psutil", "psutil", ("psutil",), None, "test", "pip install psutil"))
    assert present.installed and present.version
    absent = probe_package(OptionalPackage("nope", "no_such_module_xyz", ("no-such-dist-xyz",), "llama", "test"))
    assert not absent.installed and absent.version is None
    assert absent.package.install_command == "pip install 'slm-eval[llama]'"
