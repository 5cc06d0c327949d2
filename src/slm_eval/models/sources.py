"""Where a model's weights come from: a package on disk, a hub id, a local path or an HTTP API.

Each source says whether it works offline, whether it is available now, and where its files are.
Only a hub source ever downloads, and only when its model is not in the Hugging Face cache and the hub
can be reached; offline it fails at once with one line. ``huggingface_hub`` is imported only then.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import urlsplit

from slm_eval.errors import MissingDependencyError, UserError, extra_install_hint

WeightFormat = Literal["gguf", "transformers", "onnx", "api"]

# What a hub model is downloaded as: safetensors weights, configs and tokenizer files. Never pickles
# (``*.bin``, ``*.pt``...), which can run code when they are loaded.
HUB_ALLOW_PATTERNS = ("*.safetensors", "*.json", "*.txt", "*.model", "*.tiktoken", "tokenizer*")
HUB_IGNORE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt", "*.h5", "*.msgpack", "*.npz")
HUB_WEIGHT_SUFFIXES = (".safetensors", ".gguf")
HUB_PROBE_TIMEOUT_S = 3.0
_TRUE = frozenset({"1", "true", "yes", "on"})


class WeightSource(Protocol):
    """Where one model's weights live."""

    @property
    def format(self) -> WeightFormat:
        """The file format the weights are in."""
        ...

    @property
    def offline(self) -> bool:
        """True when no network is needed once the source is installed."""
        ...

    def describe(self) -> str:
        """One line for tables: where the weights come from."""
        ...

    def available(self) -> bool:
        """True when :meth:`locate` can succeed now, without a network. Does no heavy work."""
        ...

    def locate(self, cache_dir: Path) -> Path:
        """The file or folder that holds the weights.

        Raises:
            UserError: the weights are not on this machine; the message says how to get them.
        """
        ...


def _package_dir(module: str) -> Path | None:
    """The folder of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class PackageData:
    """Weights shipped as files inside an installed Python package (no import needed to find them)."""

    distribution: str
    module: str
    relative_path: str
    install: str
    format: WeightFormat = "gguf"
    offline: bool = True

    def describe(self) -> str:
        return f"package {self.distribution} (offline)"

    def available(self) -> bool:
        folder = _package_dir(self.module)
        return folder is not None and (folder / self.relative_path).exists()

    def locate(self, cache_dir: Path) -> Path:
        folder = _package_dir(self.module)
        if folder is None:
            raise MissingDependencyError(self.distribution, "this bundled model", self.install)
        path = folder / self.relative_path
        if not path.exists():
            raise UserError(f"package {self.distribution} is installed but lacks {path}; reinstall it: {self.install}")
        return path


@dataclass(frozen=True)
class AssembledPackageGGUF:
    """A GGUF file split across packages, joined once into the cache by the package's ``assemble()``."""

    distribution: str
    module: str
    file_name: str
    install: str
    format: WeightFormat = "gguf"
    offline: bool = True

    def describe(self) -> str:
        return f"package {self.distribution} (offline, assembled on first use)"

    def available(self) -> bool:
        return _package_dir(self.module) is not None

    def locate(self, cache_dir: Path) -> Path:
        if _package_dir(self.module) is None:
            raise MissingDependencyError(self.distribution, "this bundled model", self.install)
        target = cache_dir / self.module / self.file_name
        package = importlib.import_module(self.module)
        try:
            # assemble() joins the chunks and checks the published sha256; on later calls it re-checks
            # the joined file and returns it.
            return Path(package.assemble(output_path=target))
        except (OSError, ValueError) as exc:
            raise UserError(
                f"cannot assemble {self.file_name} from {self.distribution} into {target.parent}: {exc}; "
                f"delete {target} and retry, or reinstall: {self.install}"
            ) from exc


def hub_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The Hugging Face hub cache, read from the standard variables each time (never cached at import).

    ``$HF_HUB_CACHE``, else ``$HUGGINGFACE_HUB_CACHE``, else ``$HF_HOME/hub``, else
    ``$XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``.
    """
    env = os.environ if environ is None else environ
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(name):
            return Path(env[name]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    return Path(env.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "huggingface" / "hub"


def hub_offline_flagged(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``$HF_HUB_OFFLINE`` or ``$TRANSFORMERS_OFFLINE`` tells Hugging Face libraries to stay offline."""
    env = os.environ if environ is None else environ
    return any(env.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub_address(environ: Mapping[str, str] | None = None) -> tuple[str, int]:
    """Where a connection to the hub goes first: the HTTPS proxy when one is set, else the hub's host."""
    env = os.environ if environ is None else environ
    target = env.get("HTTPS_PROXY") or env.get("https_proxy") or env.get("HF_ENDPOINT") or "https://huggingface.co"
    parts = urlsplit(target if "://" in target else f"http://{target}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "huggingface.co", port


def hub_reachable(timeout_s: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """True when a TCP connection to the hub (``huggingface.co:443``, ``$HF_ENDPOINT`` or the proxy) opens in time.

    The name look-up is bounded too: the attempt runs in a daemon thread that is given ``timeout_s`` seconds.
    """
    host, port = _hub_address()
    opened: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                opened.append(True)
        except OSError:
            opened.append(False)

    thread = threading.Thread(target=attempt, name="slm-eval-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return bool(opened) and opened[0]


def _snapshot_folder(repo_id: str, hub_cache: Path) -> Path | None:
    """The cached snapshot of the repository's main branch, found from ``refs/main`` without any import."""
    storage = hub_cache / f"models--{repo_id.replace('/', '--')}"
    try:
        commit = (storage / "refs" / "main").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    folder = storage / "snapshots" / commit
    return folder if commit and folder.is_dir() else None


def _has_weights(folder: Path) -> bool:
    return any(path.name.endswith(HUB_WEIGHT_SUFFIXES) for path in folder.rglob("*"))


@dataclass(frozen=True)
class HubSource:
    """Weights published under a Hugging Face hub id: from the local Hugging Face cache, else downloaded.

    Attributes:
        repo_id: the hub id, e.g. ``microsoft/Phi-3-mini-128k-instruct``.
        probe: tells whether the hub can be reached now (default: a TCP connect with a 3 s timeout);
            injected by tests, which never touch the network.
    """

    repo_id: str
    format: WeightFormat = "transformers"
    offline: bool = False
    probe: Callable[[], bool] = field(default=hub_reachable, repr=False, compare=False)

    def describe(self) -> str:
        return f"hub {self.repo_id}"

    def available(self) -> bool:
        """True when the model is in the Hugging Face cache (a look at the disk, no network, no import)."""
        return _snapshot_folder(self.repo_id, hub_cache_dir()) is not None

    def locate(self, cache_dir: Path) -> Path:
        """The cached snapshot folder; else, when the hub can be reached, the folder just downloaded.

        ``cache_dir`` is not used: hub models live in the Hugging Face cache (:func:`hub_cache_dir`), shared
        with every other tool. Only safetensors, configs and tokenizer files are downloaded.

        Raises:
            UserError: offline (``$HF_HUB_OFFLINE``, ``$TRANSFORMERS_OFFLINE``, or the hub cannot be reached)
                and not cached, said at once without retrying; or the download fails.
        """
        if importlib.util.find_spec("huggingface_hub") is None:
            raise MissingDependencyError("huggingface_hub", f"hub model {self.repo_id}", extra_install_hint("torch"))
        hub_cache = hub_cache_dir()
        cached = self._cached(hub_cache)
        if cached is not None and _has_weights(cached):
            return cached
        if hub_offline_flagged() or _hub_library_offline() or not self.probe():
            if cached is not None:
                return cached  # configs without weights: the backend says what is missing
            raise UserError(f"{self.repo_id} is not available offline: download it first or give a local path")
        return self._download(hub_cache)

    def _cached(self, hub_cache: Path) -> Path | None:
        from huggingface_hub import snapshot_download

        try:
            folder = snapshot_download(
                self.repo_id,
                cache_dir=hub_cache,
                local_files_only=True,
                allow_patterns=list(HUB_ALLOW_PATTERNS),
                ignore_patterns=list(HUB_IGNORE_PATTERNS),
            )
        except (OSError, ValueError):  # not cached, an incomplete snapshot, or a malformed id
            return None
        return Path(str(folder))

    def _download(self, hub_cache: Path) -> Path:
        from huggingface_hub import errors, snapshot_download

        http_error: type[Exception] = getattr(errors, "HTTPError", OSError)
        try:
            downloaded = snapshot_download(
                self.repo_id,
                cache_dir=hub_cache,
                allow_patterns=list(HUB_ALLOW_PATTERNS),
                ignore_patterns=list(HUB_IGNORE_PATTERNS),
            )
        except (OSError, ValueError, http_error) as exc:
            text = str(exc).strip()
            reason = text.splitlines()[0] if text else type(exc).__name__
            raise UserError(
                f"cannot download {self.repo_id} from the Hugging Face hub ({reason}); retry, or give a local path"
            ) from exc
        folder = Path(str(downloaded))
        if not _has_weights(folder):
            raise UserError(
                f"{self.repo_id} publishes no safetensors weights (only pickled files, which are never loaded); "
                "convert them to safetensors elsewhere and give the local folder as --model"
            )
        return folder


def _hub_library_offline() -> bool:
    """True when ``huggingface_hub`` itself was started offline (it reads its variables once, at import)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


@dataclass(frozen=True)
class LocalPath:
    """A file or folder on this machine: a ``.gguf`` file, an ONNX folder or a transformers folder."""

    path: Path
    format: WeightFormat
    offline: bool = True

    def describe(self) -> str:
        return f"local {self.format} {self.path}"

    def available(self) -> bool:
        return self.path.exists()

    def locate(self, cache_dir: Path) -> Path:
        if not self.path.exists():
            raise UserError(f"model path {self.path} does not exist")
        return self.path


@dataclass(frozen=True)
class ApiEndpoint:
    """A model served over an OpenAI-compatible HTTP API; the key is read from an environment variable."""

    base_url: str
    model: str
    key_env: str
    format: WeightFormat = "api"
    offline: bool = False

    def describe(self) -> str:
        return f"api {self.base_url} (key from ${self.key_env})"

    def available(self) -> bool:
        return False

    def locate(self, cache_dir: Path) -> Path:
        raise UserError(f"{self.model} is served over HTTP at {self.base_url}; it has no local weights")
