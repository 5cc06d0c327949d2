"""Where a model's weights come from: a package on disk, a hub id, a local path or an HTTP API.

Each source says whether it works offline, whether it is available now, and where its files are.
Locating never downloads: a hub source names the network it needs instead.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from slm_eval.errors import MissingDependencyError, UserError

WeightFormat = Literal["gguf", "transformers", "onnx", "api"]


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


@dataclass(frozen=True)
class HubSource:
    """Weights published under a Hugging Face hub id; needs a network the first time."""

    repo_id: str
    format: WeightFormat = "transformers"
    offline: bool = False

    def describe(self) -> str:
        return f"hub {self.repo_id}"

    def available(self) -> bool:
        return False

    def locate(self, cache_dir: Path) -> Path:
        raise UserError(
            f"the weights of {self.repo_id} come from the Hugging Face hub, which this command cannot reach "
            "from here; download them where a network exists and pass the local folder or file as --model"
        )


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
