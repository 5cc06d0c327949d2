"""What ``slm-eval doctor`` looks at: this machine, its accelerators, services and installed packages.

Each probe is a small function that never raises: what it cannot tell is reported as unknown. Probes that
could wait on the outside world (network, Docker, AWS) take their connector or resolver as an argument, so
tests never touch the network. No optional package is imported to learn whether it is installed.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from slm_eval.devices.cpus import usable_cpu_count

Connector = Callable[[str, int, float], bool]
"""Opens a TCP connection to (host, port) within a timeout; True when it opened."""

CredentialMethod = Callable[[], "str | None"]
"""The provider method of the AWS credentials botocore's chain finds (e.g. ``env``), or None."""

NETWORK_HOSTS: tuple[tuple[str, int], ...] = (("huggingface.co", 443), ("pypi.org", 443))
NETWORK_TIMEOUT_S = 2.0
DOCKER_TIMEOUT_S = 0.5
SUBPROCESS_TIMEOUT_S = 5.0
CPU_FEATURES = ("avx2", "avx512f", "neon")
CORE_MODULES = ("typer", "rich", "pydantic", "psutil", "numpy", "matplotlib", "sacrebleu", "jsonschema")


@dataclass(frozen=True)
class PlatformFacts:
    """The operating system and the Python running slm-eval."""

    system: str
    release: str
    version: str
    machine: str
    python: str
    python_ok: bool
    core_missing: tuple[str, ...]


@dataclass(frozen=True)
class CpuFacts:
    """The CPU model, how many cores this process may use, and the instruction-set features that matter."""

    model: str
    logical_cores: int
    usable_cores: int
    features: tuple[str, ...]
    features_known: bool


@dataclass(frozen=True)
class MemoryFacts:
    """Physical memory, in bytes."""

    total_bytes: int
    available_bytes: int


@dataclass(frozen=True)
class DiskFacts:
    """Free space on the file system that holds one configured folder."""

    label: str
    path: str
    probed: str
    free_bytes: int | None
    total_bytes: int | None


@dataclass(frozen=True)
class Gpu:
    """One GPU as NVML or nvidia-smi reports it."""

    name: str
    memory_bytes: int | None


@dataclass(frozen=True)
class GpuFacts:
    """The NVIDIA GPUs, their driver, and how that was learned (``nvml``, ``nvidia-smi`` or ``none``)."""

    gpus: tuple[Gpu, ...]
    driver: str | None
    method: str
    detail: str = ""


@dataclass(frozen=True)
class ServiceFacts:
    """Whether a service (Docker engine, AWS credentials) is there, with a short non-secret detail."""

    available: bool
    detail: str


@dataclass(frozen=True)
class NetworkFacts:
    """Which hosts answered a TCP connect, and whether Hugging Face libraries are told to stay offline."""

    reachable: Mapping[str, bool]
    hf_offline: bool

    @property
    def online(self) -> bool:
        """True when any probed host answered."""
        return any(self.reachable.values())


@dataclass(frozen=True)
class OptionalPackage:
    """An optional dependency: the module it provides, the distributions that install it, and the fix."""

    name: str
    module: str
    distributions: tuple[str, ...]
    extra: str | None
    purpose: str
    install: str = ""

    @property
    def install_command(self) -> str:
        """The command that installs it: the project's extra, or the package itself when no extra has it."""
        return self.install or f"pip install 'slm-eval[{self.extra}]'"


OPTIONAL_PACKAGES: tuple[OptionalPackage, ...] = (
    OptionalPackage("llama-cpp-python", "llama_cpp", ("llama-cpp-python", "llama_cpp_python"), "llama", "GGUF models"),
    OptionalPackage("torch", "torch", ("torch",), "torch", "PyTorch models"),
    OptionalPackage("transformers", "transformers", ("transformers",), "torch", "PyTorch models, ONNX tokenizers"),
    OptionalPackage("onnxruntime", "onnxruntime", ("onnxruntime", "onnxruntime-gpu"), "onnx", "ONNX encoders"),
    OptionalPackage(
        "onnxruntime-genai",
        "onnxruntime_genai",
        ("onnxruntime-genai", "onnxruntime-genai-cuda"),
        "onnx",
        "ONNX decoders",
    ),
    OptionalPackage("peft", "peft", ("peft",), "train", "LoRA fine-tuning"),
    OptionalPackage("torchao", "torchao", ("torchao",), "quantize", "PyTorch int8/int4 quantization"),
    OptionalPackage("sagemaker-core", "sagemaker", ("sagemaker-core",), "sagemaker", "SageMaker jobs"),
    OptionalPackage("boto3", "boto3", ("boto3",), "sagemaker", "AWS calls"),
    OptionalPackage(
        "bitsandbytes",
        "bitsandbytes",
        ("bitsandbytes",),
        None,
        "4/8-bit PyTorch on CUDA",
        install="pip install bitsandbytes (CUDA only)",
    ),
)


@dataclass(frozen=True)
class PackageFacts:
    """Whether one optional package is installed, and its version."""

    package: OptionalPackage
    installed: bool
    version: str | None = field(default=None)


def probe_platform(python_version: tuple[int, int] | None = None) -> PlatformFacts:
    """The operating system, Python, and which core dependencies cannot be found (found, not imported)."""
    version = python_version or (sys.version_info.major, sys.version_info.minor)
    return PlatformFacts(
        system=platform.system() or "unknown",
        release=platform.release(),
        version=_os_version(),
        machine=platform.machine().lower() or "unknown",
        python=platform.python_version(),
        python_ok=version >= (3, 10),
        core_missing=tuple(name for name in CORE_MODULES if not module_found(name)),
    )


def _os_version() -> str:
    """A readable OS version: the distribution's pretty name on Linux, the product version on macOS."""
    system = platform.system()
    if system == "Linux":
        try:
            return platform.freedesktop_os_release().get("PRETTY_NAME", platform.version())
        except OSError:
            return platform.version()
    if system == "Darwin":
        return f"macOS {platform.mac_ver()[0]}".strip()
    if system == "Windows":
        release, build, _, _ = platform.win32_ver()
        return f"Windows {release} (build {build})"
    return platform.version()


def module_found(name: str) -> bool:
    """True when a top-level module can be imported, found without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """The CPU model and feature flags from Linux's ``/proc/cpuinfo`` (x86 ``flags``, ARM ``Features``).

    ARM's ``asimd`` is reported as ``neon``.
    """
    model = ""
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in {"model name", "hardware", "cpu model", "processor"} and not model and not value.strip().isdigit():
            model = value.strip()
        elif key in {"flags", "features"} and not flags:
            flags = set(value.split())
    if "asimd" in flags:
        flags.add("neon")
    return model, frozenset(flags)


def _sysctl(name: str) -> str:
    try:
        done = subprocess.run(
            ["sysctl", "-n", name], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _windows_features() -> frozenset[str]:
    """AVX2, AVX-512F and NEON through ``IsProcessorFeaturePresent`` (no registry)."""
    windll = getattr(ctypes, "windll", None)
    if windll is None:
        return frozenset()
    present = windll.kernel32.IsProcessorFeaturePresent
    codes = {"avx2": 40, "avx512f": 41, "neon": 19}
    return frozenset(name for name, code in codes.items() if present(code))


def probe_cpu(system: str | None = None, machine: str | None = None, cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuFacts:
    """The CPU model, logical and usable cores, and AVX2 / AVX-512F / NEON where the OS tells."""
    system = system or platform.system()
    machine = (machine or platform.machine()).lower()
    model, flags, known = "", frozenset[str](), False
    try:
        if system == "Linux" and cpuinfo.is_file():
            model, flags = parse_cpuinfo(cpuinfo.read_text(encoding="utf-8", errors="replace"))
            known = bool(flags)
        elif system == "Darwin":
            model = _sysctl("machdep.cpu.brand_string")
            words = f"{_sysctl('machdep.cpu.features')} {_sysctl('machdep.cpu.leaf7_features')}".lower().split()
            flags, known = frozenset(words), bool(words)
        elif system == "Windows":
            flags, known = _windows_features(), True
    except OSError:
        pass
    if machine in {"arm64", "aarch64"}:
        flags, known = flags | {"neon"}, True  # Advanced SIMD is mandatory on AArch64.
    return CpuFacts(
        model=model or platform.processor() or machine or "unknown",
        logical_cores=psutil.cpu_count(logical=True) or os.cpu_count() or 1,
        usable_cores=usable_cpu_count(),
        features=tuple(name for name in CPU_FEATURES if name in flags),
        features_known=known,
    )


def probe_memory() -> MemoryFacts:
    """Total and available physical memory."""
    memory = psutil.virtual_memory()
    return MemoryFacts(total_bytes=int(memory.total), available_bytes=int(memory.available))


def nearest_existing(path: Path) -> Path:
    """The path itself when it exists, else its nearest existing parent (the working directory at worst)."""
    candidate = path.absolute()
    for folder in (candidate, *candidate.parents):
        if folder.exists():
            return folder
    return Path.cwd()


def probe_disks(paths: Iterable[tuple[str, Path]]) -> tuple[DiskFacts, ...]:
    """Free space where each labelled folder lives (or would be created)."""
    found = []
    for label, path in paths:
        probed = nearest_existing(path)
        free: int | None = None
        total: int | None = None
        with contextlib.suppress(OSError):
            usage = shutil.disk_usage(probed)
            free, total = int(usage.free), int(usage.total)
        found.append(DiskFacts(label, str(path), str(probed), free, total))
    return tuple(found)


def probe_gpu(nvml_module: str = "pynvml", smi: str = "nvidia-smi") -> GpuFacts:
    """NVIDIA GPUs through NVML when ``pynvml`` is installed, else ``nvidia-smi``; no GPU when neither answers."""
    detail = ""
    if module_found(nvml_module):
        try:
            return _nvml_gpus(nvml_module)
        except Exception as exc:  # NVML raises its own errors when no driver is loaded.
            detail = f"NVML: {type(exc).__name__}"
    executable = shutil.which(smi)
    if executable is None:
        return GpuFacts((), None, "none", detail or "no NVML library and no nvidia-smi")
    try:
        done = subprocess.run(
            [executable, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return GpuFacts((), None, "none", f"nvidia-smi: {type(exc).__name__}")
    if done.returncode != 0:
        return GpuFacts((), None, "none", "nvidia-smi found no GPU")
    return parse_nvidia_smi(done.stdout)


def parse_nvidia_smi(text: str) -> GpuFacts:
    """GPUs from ``nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader,nounits``."""
    gpus, driver = [], None
    for line in text.strip().splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) < 3:
            continue
        memory = int(float(parts[1]) * 1024 * 1024) if parts[1].replace(".", "", 1).isdigit() else None
        gpus.append(Gpu(parts[0], memory))
        driver = parts[2]
    return GpuFacts(tuple(gpus), driver, "nvidia-smi")


def _nvml_gpus(module: str) -> GpuFacts:
    nvml = importlib.import_module(module)
    nvml.nvmlInit()
    try:
        driver = nvml.nvmlSystemGetDriverVersion()
        gpus = []
        for index in range(int(nvml.nvmlDeviceGetCount())):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = nvml.nvmlDeviceGetName(handle)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle).total
            gpus.append(Gpu(name.decode() if isinstance(name, bytes) else str(name), int(memory)))
    finally:
        nvml.nvmlShutdown()
    return GpuFacts(tuple(gpus), driver.decode() if isinstance(driver, bytes) else str(driver), "nvml")


def tcp_connect(host: str, port: int, timeout_s: float) -> bool:
    """True when a TCP connection to (host, port) opens within ``timeout_s`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def unix_socket_answers(path: str, timeout_s: float) -> bool:
    """True when a Unix socket accepts a connection within ``timeout_s`` seconds."""
    family = getattr(socket, "AF_UNIX", None)
    if family is None or not Path(path).exists():
        return False
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(path)
            return True
    except OSError:
        return False


def probe_docker(
    environ: Mapping[str, str] | None = None,
    connector: Connector | None = None,
    unix_connector: Callable[[str, float], bool] | None = None,
) -> ServiceFacts:
    """Whether a Docker engine accepts connections at ``$DOCKER_HOST`` or the platform's default socket."""
    environ = os.environ if environ is None else environ
    connect = connector or tcp_connect
    unix = unix_connector or unix_socket_answers
    host = environ.get("DOCKER_HOST", "").strip()
    if not host:
        host = "npipe:////./pipe/docker_engine" if platform.system() == "Windows" else "unix:///var/run/docker.sock"
    scheme, _, rest = host.partition("://")
    if scheme == "unix":
        reachable = unix(rest, DOCKER_TIMEOUT_S)
    elif scheme == "npipe":
        reachable = Path(rest.replace("/", "\\")).exists()
    elif scheme in {"tcp", "http", "https"}:
        address, _, port = rest.partition("/")[0].rpartition(":")
        reachable = port.isdigit() and connect(address, int(port), DOCKER_TIMEOUT_S)
    else:
        return ServiceFacts(False, f"unsupported DOCKER_HOST scheme '{scheme}'")
    return ServiceFacts(reachable, f"{'reachable' if reachable else 'not reachable'} at {host}")


def botocore_credential_method() -> str | None:
    """The provider method (``env``, ``shared-credentials-file``, ``iam-role``...) of botocore's chain, or None."""
    session = importlib.import_module("botocore.session")  # comes with boto3; imported only for this probe
    credentials = session.Session().get_credentials()
    return None if credentials is None else str(getattr(credentials, "method", "unknown"))


def probe_aws(resolver: CredentialMethod | None = None, installed: bool | None = None) -> ServiceFacts:
    """Whether AWS credentials are configured; only the provider's method name is kept, never a value."""
    if installed is None:
        installed = module_found("boto3") and module_found("botocore")
    if not installed:
        return ServiceFacts(False, "boto3 not installed")
    try:
        method = (resolver or botocore_credential_method)()
    except Exception as exc:  # a broken config file is reported, not raised
        return ServiceFacts(False, f"credential chain failed ({type(exc).__name__})")
    if method is None:
        return ServiceFacts(False, "no credentials found")
    return ServiceFacts(True, f"found (provider: {method})")


def probe_network(
    connector: Connector | None = None,
    environ: Mapping[str, str] | None = None,
    hosts: tuple[tuple[str, int], ...] = NETWORK_HOSTS,
) -> NetworkFacts:
    """A short TCP connect to each host; the hub is not tried when ``$HF_HUB_OFFLINE`` says offline."""
    environ = os.environ if environ is None else environ
    connect = connector or tcp_connect
    hf_offline = any(environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"} for name in _OFFLINE_VARS)
    reachable = {}
    for host, port in hosts:
        if hf_offline and host == "huggingface.co":
            reachable[host] = False
            continue
        with contextlib.suppress(Exception):
            reachable[host] = bool(connect(host, port, NETWORK_TIMEOUT_S))
        reachable.setdefault(host, False)
    return NetworkFacts(reachable, hf_offline)


_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def probe_package(package: OptionalPackage) -> PackageFacts:
    """Whether an optional package is installed and its version, read from its metadata (never imported)."""
    version = None
    for distribution in package.distributions:
        try:
            version = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
        break
    return PackageFacts(package, version is not None and module_found(package.module), version)


def probe_packages(packages: Iterable[OptionalPackage] = OPTIONAL_PACKAGES) -> tuple[PackageFacts, ...]:
    """Every optional package, installed or not."""
    return tuple(probe_package(package) for package in packages)
