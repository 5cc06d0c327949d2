"""``slm-eval doctor``: recommendations and exit codes from faked probes, and the real command on this machine."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path

import pytest

from slm_eval import doctor_probes
from slm_eval.doctor import (
    CoreBrokenError,
    Facts,
    ModelFacts,
    NoLocalBackendError,
    Probes,
    check_core,
    recommend,
    run_doctor,
)
from slm_eval.doctor_probes import (
    OPTIONAL_PACKAGES,
    CpuFacts,
    DiskFacts,
    Gpu,
    GpuFacts,
    MemoryFacts,
    NetworkFacts,
    PackageFacts,
    PlatformFacts,
    ServiceFacts,
)
from tests.conftest import RunCli
from tests.support import clean_environ

GIB = 1024**3
ALL_MODULES = frozenset(package.module for package in OPTIONAL_PACKAGES)


def packages(installed: Iterable[str] = ALL_MODULES - {"bitsandbytes"}) -> tuple[PackageFacts, ...]:
    wanted = set(installed)
    return tuple(
        PackageFacts(package, package.module in wanted, "1.0" if package.module in wanted else None)
        for package in OPTIONAL_PACKAGES
    )


def make_facts(
    *,
    system: str = "Linux",
    machine: str = "x86_64",
    features: tuple[str, ...] = ("avx2",),
    gpus: tuple[Gpu, ...] = (),
    docker: bool = False,
    online: bool = False,
    installed: Iterable[str] = ALL_MODULES - {"bitsandbytes"},
    python_ok: bool = True,
    core_missing: tuple[str, ...] = (),
) -> Facts:
    """Facts of a machine with no GPU, no Docker and no network unless told otherwise."""
    return Facts(
        platform=PlatformFacts(system, "1.0", "Test OS", machine, "3.11.7", python_ok, core_missing),
        cpu=CpuFacts("Test CPU", 8, 4, features, True),
        memory=MemoryFacts(16 * GIB, 8 * GIB),
        disks=(DiskFacts("models", "data/models", "/", 2 * GIB, 100 * GIB),),
        gpu=GpuFacts(gpus, "550.54" if gpus else None, "nvml" if gpus else "none"),
        docker=ServiceFacts(docker, "reachable" if docker else "not reachable"),
        aws=ServiceFacts(False, "no credentials found"),
        network=NetworkFacts({"huggingface.co": online, "pypi.org": online}, hf_offline=False),
        packages=packages(installed),
        models=(
            ModelFacts("smollm2-135m-instruct", "llamacpp", True, True),
            ModelFacts("all-minilm-l6-v2", "transformers", True, True),
            ModelFacts("gemma-3-270m", "llamacpp", True, False),
            ModelFacts("phi-3-mini", "transformers", False, False),
        ),
    )


def texts(facts: Facts, topic: str) -> list[str]:
    return [item.text for item in recommend(facts) if item.topic == topic]


def test_no_gpu_avx2_prefers_gguf_q4_through_llama_cpp_or_onnx_int4() -> None:
    (backend,) = texts(make_facts(), "backend")
    assert backend.startswith("No GPU, AVX2 CPU: prefer GGUF Q4_K_M through llama.cpp")
    assert "ONNX int4 through onnxruntime-genai" in backend
    assert "AVX-512" not in backend


def test_avx512_is_named_in_the_backend_advice() -> None:
    (backend,) = texts(make_facts(features=("avx2", "avx512f")), "backend")
    assert backend.startswith("No GPU, AVX-512 CPU")
    assert "AVX-512 speeds up" in backend


def test_arm_with_neon_prefers_q4_0() -> None:
    (backend,) = texts(make_facts(machine="aarch64", features=("neon",)), "backend")
    assert "ARM CPU with NEON: prefer GGUF Q4_0" in backend


def test_cuda_gpu_prefers_transformers_and_flags_a_cpu_build_of_torch() -> None:
    facts = make_facts(gpus=(Gpu("NVIDIA H200", 141 * GIB),))
    facts = dataclasses.replace(
        facts,
        packages=tuple(
            dataclasses.replace(item, version="2.13.0+cpu") if item.package.module == "torch" else item
            for item in facts.packages
        ),
    )
    (backend,) = texts(facts, "backend")
    assert "CUDA GPU (NVIDIA H200): prefer PyTorch through transformers" in backend
    assert "pip install bitsandbytes" in backend
    assert any("CUDA wheel index" in text for text in texts(facts, "platform"))
    assert not any("bitsandbytes is CUDA only" in text for text in texts(facts, "install"))


def test_missing_backend_says_what_to_install() -> None:
    facts = make_facts(installed=ALL_MODULES - {"llama_cpp", "bitsandbytes"})
    (backend,) = texts(facts, "backend")
    assert "llama.cpp (not installed: pip install 'slm-eval[llama]')" in backend
    models = texts(facts, "models")
    assert "smollm2-135m-instruct is here but its backend is missing: pip install 'slm-eval[llama]'." in models
    assert "For GGUF models (llama-cpp-python): pip install 'slm-eval[llama]'" in texts(facts, "install")


def test_offline_models_are_those_available_with_their_backend_installed() -> None:
    models = texts(make_facts(), "models")
    assert models[0] == "Run offline here: smollm2-135m-instruct, all-minilm-l6-v2."
    assert any(text.startswith("gemma-3-270m is bundled but its weights package is missing") for text in models)
    assert any("Hub models (phi-3-mini)" in text and "not reachable" in text for text in models)


def test_missing_extras_are_grouped_by_install_command() -> None:
    facts = make_facts(installed={"llama_cpp"})
    install = texts(facts, "install")
    assert (
        "For PyTorch models (torch); PyTorch models, ONNX tokenizers (transformers): pip install 'slm-eval[torch]'"
        in (install)
    )
    assert any(text.endswith("pip install 'slm-eval[sagemaker]'") for text in install)
    assert any("bitsandbytes is CUDA only and this machine has no GPU" in text for text in install)


def test_no_docker_and_offline_are_explained() -> None:
    services = texts(make_facts(docker=False, online=False), "services")
    assert any(text.startswith("No Docker engine") for text in services)
    assert any(text.startswith("Offline: use the bundled models") for text in services)
    online = texts(make_facts(docker=True, online=True), "services")
    assert not any("Docker" in text or "Offline" in text for text in online)


def test_windows_notes_wsl_and_docker_desktop() -> None:
    platform = texts(make_facts(system="Windows", machine="amd64"), "platform")
    assert any("WSL 2" in text and "bitsandbytes" in text for text in platform)
    assert any("Docker Desktop with the WSL 2 backend" in text for text in platform)


def test_macos_says_no_cuda() -> None:
    facts = make_facts(system="Darwin", machine="arm64", features=("neon",))
    assert any("macOS has no CUDA" in text for text in texts(facts, "platform"))
    assert texts(facts, "backend")[0].startswith("Apple silicon: prefer GGUF Q4_K_M through llama.cpp")


def test_low_disk_and_affinity_are_reported() -> None:
    resources = texts(make_facts(), "resources")
    assert (
        resources[0]
        == "Use 4 threads (--threads), the cores this process may use (8 exist, the affinity mask allows 4)."
    )
    assert any(text.startswith("Only 2.0 GiB free for models") for text in resources)


def test_exit_rules() -> None:
    assert check_core(make_facts()) is None
    assert check_core(make_facts(installed={"onnxruntime"})) is None
    no_backend = check_core(make_facts(installed={"peft", "torch"}))
    assert isinstance(no_backend, NoLocalBackendError)
    assert no_backend.exit_code == 4
    old = check_core(make_facts(python_ok=False))
    assert isinstance(old, CoreBrokenError)
    assert old.exit_code == 3
    missing = check_core(make_facts(core_missing=("sacrebleu",)))
    assert isinstance(missing, CoreBrokenError)
    assert "sacrebleu" in str(missing)


def test_run_doctor_uses_the_probes_it_is_given(tmp_path: Path) -> None:
    fake = make_facts(installed=())
    probes = Probes(
        platform=lambda: fake.platform,
        cpu=lambda: fake.cpu,
        memory=lambda: fake.memory,
        disks=lambda folders: tuple(DiskFacts(label, str(path), str(path), GIB, GIB) for label, path in folders),
        gpu=lambda: fake.gpu,
        docker=lambda: fake.docker,
        aws=lambda: fake.aws,
        network=lambda: fake.network,
        packages=lambda: fake.packages,
        models=lambda: fake.models,
    )
    report = run_doctor([("results", tmp_path)], probes)
    assert not report.ok
    data = report.to_dict()
    assert data["exit_code"] == 4
    assert data["facts"]["disks"][0]["path"] == str(tmp_path)
    assert data["facts"]["packages"][0]["install"] == "pip install 'slm-eval[llama]'"
    json.dumps(data)


def _no_network(host: str, port: int, timeout_s: float) -> bool:
    return host == "pypi.org"


@pytest.fixture
def offline_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real probes, but the TCP connector is a fake (PyPI only) and no AWS metadata service is asked."""
    monkeypatch.setattr(doctor_probes, "tcp_connect", _no_network)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("DOCKER_HOST", raising=False)


@pytest.mark.usefixtures("offline_probes")
def test_doctor_json_on_this_machine(run_cli: RunCli) -> None:
    result = run_cli("doctor", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    facts = data["facts"]
    assert data["ok"] is True
    assert facts["platform"]["python_ok"] is True
    assert facts["platform"]["core_missing"] == []
    assert facts["cpu"]["usable_cores"] >= 1
    assert facts["memory"]["total_bytes"] >= facts["memory"]["available_bytes"] > 0
    assert {disk["label"] for disk in facts["disks"]} == {"models", "results"}
    assert all(disk["free_bytes"] > 0 for disk in facts["disks"])
    assert facts["network"]["reachable"] == {"huggingface.co": False, "pypi.org": True}
    assert facts["network"]["hf_offline"] is True
    installed = {item["name"]: item for item in facts["packages"]}
    assert installed["llama-cpp-python"]["installed"] is True
    assert installed["bitsandbytes"]["extra"] is None
    assert any(item["topic"] == "backend" for item in data["recommendations"])


@pytest.mark.usefixtures("offline_probes")
def test_doctor_text_fits_100_columns(run_cli: RunCli) -> None:
    result = run_cli("doctor")
    assert result.code == 0, result.err
    assert "Recommendations" in result.out
    assert "slm-eval[llama]" in result.out
    assert max(len(line) for line in result.out.splitlines()) <= 100


@pytest.mark.usefixtures("offline_probes")
def test_credentials_are_never_printed(run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASENTINELKEYID0000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sentinel-secret-value-9f8e7d")
    for argv in (("doctor", "--json"), ("doctor",)):
        result = run_cli(*argv)
        assert result.code == 0, result.err
        for output in (result.out, result.err):
            assert "SENTINEL" not in output.upper()
    data = json.loads(run_cli("doctor", "--json").out)
    assert data["facts"]["aws"] == {"available": True, "detail": "found (provider: env)"}


@pytest.mark.usefixtures("offline_probes")
def test_no_local_backend_fails_with_one_line(run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor_probes, "tcp_connect", _no_network)
    monkeypatch.setattr(doctor_probes, "probe_package", lambda package: PackageFacts(package, False))
    result = run_cli("doctor", "--json")
    assert result.code == 4
    assert result.error_line().startswith("error: no local backend is installed")
    assert json.loads(result.out)["ok"] is False


SCRIPT = textwrap.dedent(
    """
    import json, sys
    from slm_eval import doctor_probes
    doctor_probes.tcp_connect = lambda host, port, timeout_s: False
    from slm_eval.cli import main
    try:
        main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
    watched = ("torch", "transformers", "onnxruntime", "onnxruntime_genai", "llama_cpp", "boto3", "pynvml")
    print("LOADED=" + json.dumps({"code": code, "loaded": sorted(n for n in watched if n in sys.modules)}))
    """
)


def test_doctor_imports_no_heavy_library(tmp_path: Path) -> None:
    environ = clean_environ() | {"AWS_EC2_METADATA_DISABLED": "true", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, "doctor", "--json"],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1].removeprefix("LOADED="))
    assert report == {"code": 0, "loaded": []}, done.stderr
