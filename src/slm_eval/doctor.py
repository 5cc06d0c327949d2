"""``slm-eval doctor``: what this machine is, what is installed, and what to use and install here.

:func:`run_doctor` gathers the facts through injectable :class:`Probes`, derives concrete
:class:`Recommendation` s from them, and decides whether the core works. Nothing here imports an
optional backend library.

Example:
    slm-eval doctor --json
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slm_eval.doctor_probes import (
    CpuFacts,
    DiskFacts,
    GpuFacts,
    MemoryFacts,
    NetworkFacts,
    PackageFacts,
    PlatformFacts,
    ServiceFacts,
    probe_aws,
    probe_cpu,
    probe_disks,
    probe_docker,
    probe_gpu,
    probe_memory,
    probe_network,
    probe_packages,
    probe_platform,
)
from slm_eval.errors import UserError

GIB = 1024**3
LOW_DISK_BYTES = 5 * GIB
# The modules each local backend needs, by backend name (see slm_eval.models.registry.BACKEND_FOR_FORMAT).
BACKEND_MODULES: dict[str, tuple[str, ...]] = {
    "llamacpp": ("llama_cpp",),
    "transformers": ("torch", "transformers"),
    "onnx": ("onnxruntime",),
}


class CoreBrokenError(UserError):
    """Python is too old or a core dependency cannot be found."""

    exit_code = 3


class NoLocalBackendError(UserError):
    """The core works but no local backend (llama.cpp, PyTorch, ONNX Runtime) is installed."""

    exit_code = 4


@dataclass(frozen=True)
class ModelFacts:
    """One catalogued model: whether its weights are here without a network, and its backend."""

    name: str
    backend: str
    offline_source: bool
    available: bool


@dataclass(frozen=True)
class Facts:
    """Everything the probes found."""

    platform: PlatformFacts
    cpu: CpuFacts
    memory: MemoryFacts
    disks: tuple[DiskFacts, ...]
    gpu: GpuFacts
    docker: ServiceFacts
    aws: ServiceFacts
    network: NetworkFacts
    packages: tuple[PackageFacts, ...]
    models: tuple[ModelFacts, ...]

    def installed(self, module: str) -> bool:
        """True when the optional package that provides ``module`` is installed."""
        return any(item.installed for item in self.packages if item.package.module == module)

    def backend_ready(self, backend: str) -> bool:
        """True when every module a local backend needs is installed."""
        modules = BACKEND_MODULES.get(backend)
        return modules is not None and all(self.installed(module) for module in modules)

    def version(self, module: str) -> str | None:
        """The installed version of the package that provides ``module``."""
        return next((item.version for item in self.packages if item.package.module == module and item.installed), None)


def probe_models() -> tuple[ModelFacts, ...]:
    """The catalogue's models and whether their weights are on this machine (a look at the disk only)."""
    from slm_eval.models.catalogue import default_registry

    found = []
    for card in default_registry().cards():
        try:
            available = card.source.available()
        except Exception:  # a broken package install reads as not available
            available = False
        found.append(ModelFacts(card.name, card.default_backend, card.source.offline, available))
    return tuple(found)


@dataclass(frozen=True)
class Probes:
    """The probes :func:`collect_facts` calls; tests replace any of them with fakes."""

    platform: Callable[[], PlatformFacts] = probe_platform
    cpu: Callable[[], CpuFacts] = probe_cpu
    memory: Callable[[], MemoryFacts] = probe_memory
    disks: Callable[[Iterable[tuple[str, Path]]], tuple[DiskFacts, ...]] = probe_disks
    gpu: Callable[[], GpuFacts] = probe_gpu
    docker: Callable[[], ServiceFacts] = probe_docker
    aws: Callable[[], ServiceFacts] = probe_aws
    network: Callable[[], NetworkFacts] = probe_network
    packages: Callable[[], tuple[PackageFacts, ...]] = probe_packages
    models: Callable[[], tuple[ModelFacts, ...]] = probe_models


def collect_facts(probes: Probes, folders: Sequence[tuple[str, Path]]) -> Facts:
    """Run every probe; ``folders`` are the labelled places whose free disk space matters."""
    return Facts(
        platform=probes.platform(),
        cpu=probes.cpu(),
        memory=probes.memory(),
        disks=probes.disks(folders),
        gpu=probes.gpu(),
        docker=probes.docker(),
        aws=probes.aws(),
        network=probes.network(),
        packages=probes.packages(),
        models=probes.models(),
    )


@dataclass(frozen=True)
class Recommendation:
    """One concrete piece of advice, under a topic (backend, models, install, resources, services, platform)."""

    topic: str
    text: str


@dataclass(frozen=True)
class DoctorReport:
    """The facts, the advice, and whether the core works (``problem`` is None when it does)."""

    facts: Facts
    recommendations: tuple[Recommendation, ...]
    problem: UserError | None = field(default=None)

    @property
    def ok(self) -> bool:
        """True when the core works and at least one local backend is installed."""
        return self.problem is None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view; no credential value is ever part of the facts."""
        facts = asdict(self.facts)
        facts["network"]["online"] = self.facts.network.online
        for item, found in zip(facts["packages"], self.facts.packages, strict=True):
            package = found.package
            del item["package"]
            item.update(name=package.name, module=package.module, extra=package.extra, install=package.install_command)
        return {
            "ok": self.ok,
            "problem": None if self.problem is None else str(self.problem),
            "exit_code": 0 if self.problem is None else self.problem.exit_code,
            "facts": facts,
            "recommendations": [asdict(item) for item in self.recommendations],
        }


def check_core(facts: Facts) -> UserError | None:
    """The reason the core does not work here, or None when Python, core dependencies and a backend are fine."""
    if not facts.platform.python_ok:
        return CoreBrokenError(f"Python {facts.platform.python} is too old: slm-eval needs Python 3.10 or newer")
    if facts.platform.core_missing:
        missing = ", ".join(facts.platform.core_missing)
        return CoreBrokenError(f"core dependencies missing ({missing}): reinstall with pip install -e .")
    if not any(facts.backend_ready(backend) for backend in BACKEND_MODULES):
        return NoLocalBackendError(
            "no local backend is installed: pip install 'slm-eval[llama]' (GGUF, the default), "
            "'slm-eval[onnx]' or 'slm-eval[torch]'"
        )
    return None


def run_doctor(folders: Sequence[tuple[str, Path]], probes: Probes | None = None) -> DoctorReport:
    """Probe this machine and advise; the report's ``problem`` says why the core does not work, if it does not."""
    facts = collect_facts(probes or Probes(), folders)
    return DoctorReport(facts, tuple(recommend(facts)), check_core(facts))


def recommend(facts: Facts) -> list[Recommendation]:
    """Concrete advice derived from the facts: backend and format, offline models, installs, platform notes."""
    advice = [*_backend_advice(facts), *_model_advice(facts), *_install_advice(facts)]
    advice += [*_resource_advice(facts), *_service_advice(facts), *_platform_advice(facts)]
    return advice


def _install_commands(facts: Facts, backend: str) -> str:
    """What installs a backend's missing packages ("" when none is missing)."""
    packages = [item.package for item in facts.packages if item.package.module in BACKEND_MODULES[backend]]
    return " and ".join(sorted({p.install_command for p in packages if not facts.installed(p.module)}))


def _install_hint(facts: Facts, backend: str) -> str:
    commands = _install_commands(facts, backend)
    return f" (not installed: {commands})" if commands else ""


def _backend_advice(facts: Facts) -> list[Recommendation]:
    gpu = facts.gpu.gpus[0] if facts.gpu.gpus else None
    features = set(facts.cpu.features)
    if gpu is not None:
        bnb = (
            "4/8-bit through bitsandbytes"
            if facts.installed("bitsandbytes")
            else "4/8-bit through bitsandbytes (pip install bitsandbytes)"
        )
        text = (
            f"CUDA GPU ({gpu.name}): prefer PyTorch through transformers in fp16/bf16, {bnb}"
            f"{_install_hint(facts, 'transformers')}; or ONNX on the CUDA execution provider "
            "(onnxruntime-gpu; slm-eval convert --target cuda)."
        )
        return [Recommendation("backend", text)]
    if facts.platform.system == "Darwin" and facts.platform.machine in {"arm64", "aarch64"}:
        text = "Apple silicon: prefer GGUF Q4_K_M through llama.cpp, which runs on Metal"
        return [Recommendation("backend", text + _install_hint(facts, "llamacpp") + ".")]
    llama = _install_hint(facts, "llamacpp")
    genai = "" if facts.installed("onnxruntime_genai") else " (not installed: pip install 'slm-eval[onnx]')"
    if "avx512f" in features or "avx2" in features:
        simd = "AVX-512" if "avx512f" in features else "AVX2"
        extra = "; AVX-512 speeds up both llama.cpp's and ONNX Runtime's int4 kernels" if simd == "AVX-512" else ""
        text = (
            f"No GPU, {simd} CPU: prefer GGUF Q4_K_M through llama.cpp{llama} "
            f"(slm-eval quantize --format gguf --type Q4_K_M), or ONNX int4 through onnxruntime-genai{genai} "
            f"(slm-eval quantize --format onnx --bits 4){extra}."
        )
    elif "neon" in features:
        text = (
            f"No GPU, ARM CPU with NEON: prefer GGUF Q4_0 through llama.cpp{llama} (repacked for ARM at load; "
            f"slm-eval quantize --format gguf --type Q4_0), or ONNX int4 through onnxruntime-genai{genai}."
        )
    else:
        seen = "could not be read" if not facts.cpu.features_known else "were not found"
        text = (
            f"No GPU, and AVX2/NEON {seen}: prefer small GGUF models in Q8_0 or Q4_0 through llama.cpp{llama}; "
            "expect few tokens per second."
        )
    return [Recommendation("backend", text)]


def _model_advice(facts: Facts) -> list[Recommendation]:
    ready = [m.name for m in facts.models if m.available and facts.backend_ready(m.backend)]
    advice = []
    if ready:
        advice.append(Recommendation("models", f"Run offline here: {', '.join(ready)}."))
    else:
        advice.append(Recommendation("models", "No catalogued model runs offline here yet (see the lines below)."))
    for model in facts.models:
        if model.available and model.backend in BACKEND_MODULES and not facts.backend_ready(model.backend):
            hint = _install_commands(facts, model.backend)
            advice.append(Recommendation("models", f"{model.name} is here but its backend is missing: {hint}."))
        elif model.offline_source and not model.available:
            text = f"{model.name} is bundled but its weights package is missing: see slm-eval info {model.name}."
            advice.append(Recommendation("models", text))
    hub = [m.name for m in facts.models if not m.offline_source and not m.available and m.backend in BACKEND_MODULES]
    if hub:
        where = "reachable" if facts.network.reachable.get("huggingface.co") else "not reachable"
        text = f"Hub models ({', '.join(hub)}) download on first use; the hub is {where} now."
        advice.append(Recommendation("models", text))
    return advice


def _install_advice(facts: Facts) -> list[Recommendation]:
    missing: dict[str, list[str]] = {}
    advice = []
    for item in facts.packages:
        if item.package.module == "bitsandbytes" and not item.installed and not facts.gpu.gpus:
            text = (
                "bitsandbytes is CUDA only and this machine has no GPU: for 8/4-bit PyTorch use torchao "
                "(slm-eval quantize --format pytorch --method torchao), or GGUF/ONNX int4."
            )
            advice.append(Recommendation("install", text))
        elif not item.installed:
            missing.setdefault(item.package.install_command, []).append(f"{item.package.purpose} ({item.package.name})")
    found = [
        Recommendation("install", f"For {'; '.join(purposes)}: {command}") for command, purposes in missing.items()
    ]
    return found + advice


def _resource_advice(facts: Facts) -> list[Recommendation]:
    advice = []
    cpu = facts.cpu
    threads = f"Use {cpu.usable_cores} threads (--threads), the cores this process may use"
    if cpu.usable_cores < cpu.logical_cores:
        threads += f" ({cpu.logical_cores} exist, the affinity mask allows {cpu.usable_cores})"
    advice.append(Recommendation("resources", threads + "."))
    available = facts.memory.available_bytes / GIB
    # About 0.6 GiB per billion parameters in 4-bit, plus 0.5 GiB for the runtime and a short context.
    fits = max(0.0, (available - 0.5) / 0.6)
    text = (
        f"{available:.1f} GiB memory available: 4-bit models up to about {fits:.1f}B parameters fit (estimated)."
        if fits >= 0.1
        else f"Only {available:.1f} GiB memory available: close other programs before running a model."
    )
    advice.append(Recommendation("resources", text))
    for disk in facts.disks:
        if disk.free_bytes is not None and disk.free_bytes < LOW_DISK_BYTES:
            text = f"Only {disk.free_bytes / GIB:.1f} GiB free for {disk.label} ({disk.path}): variants need room."
            advice.append(Recommendation("resources", text))
    return advice


def _service_advice(facts: Facts) -> list[Recommendation]:
    advice = []
    if not facts.docker.available:
        text = (
            "No Docker engine: the docker-sim profile runs in a local worker process with the same limits; "
            "start Docker and build docker/worker.Dockerfile to run it in a container."
        )
        advice.append(Recommendation("services", text))
    if not facts.installed("boto3"):
        text = "SageMaker training needs boto3 and sagemaker-core: pip install 'slm-eval[sagemaker]'."
        advice.append(Recommendation("services", text))
    elif not facts.aws.available:
        text = (
            "No AWS credentials: configure them (aws configure, AWS_PROFILE or SSO) before train --backend sagemaker."
        )
        advice.append(Recommendation("services", text))
    if not facts.network.online:
        text = "Offline: use the bundled models; hub models and --dataset squad need a network or a cached copy."
        advice.append(Recommendation("services", text))
    elif facts.network.hf_offline:
        text = "HF_HUB_OFFLINE is set: Hugging Face downloads are off; unset it to fetch hub models."
        advice.append(Recommendation("services", text))
    return advice


def _platform_advice(facts: Facts) -> list[Recommendation]:
    system = facts.platform.system
    advice = []
    if system == "Windows":
        advice.append(Recommendation("platform", "Windows: run bitsandbytes (and CUDA training) under WSL 2."))
        text = "Windows: Docker needs Docker Desktop with the WSL 2 backend for the docker-sim profile."
        advice.append(Recommendation("platform", text))
    elif system == "Darwin":
        text = "macOS has no CUDA: bitsandbytes and the CUDA execution provider do not apply; torch runs on CPU/MPS."
        advice.append(Recommendation("platform", text))
    torch = facts.version("torch")
    if facts.gpu.gpus and torch is not None and "+cu" not in torch:
        text = (
            f"torch {torch} is not a CUDA build: install a CUDA build from the CUDA wheel index "
            "(pip install torch --index-url https://download.pytorch.org/whl/cu<version> for your driver)."
        )
        advice.append(Recommendation("platform", text))
    elif facts.gpu.gpus and torch is None:
        text = "For the GPU, install torch from the CUDA wheel index rather than the pinned CPU build of [torch]."
        advice.append(Recommendation("platform", text))
    elif not facts.gpu.gpus and system == "Linux" and torch is not None:
        advice.append(Recommendation("platform", f"No GPU: the CPU build of torch ({torch}) is the right one here."))
    return advice
