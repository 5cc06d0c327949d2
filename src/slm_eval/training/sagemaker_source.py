"""The entry script's source bundle for SageMaker: ``sourcedir.tar.gz`` with ``train.py``, ``slm_eval`` and pins.

The Hugging Face training container unpacks the bundle named by ``sagemaker_submit_directory``, installs
its ``requirements.txt`` and runs ``python train.py --key value ...``. The bundle holds:

- ``train.py``: a copy of ``slm_eval/training/scripts/train.py``, the same entry script a local run uses;
- ``slm_eval/``: a copy of this package (no ``__pycache__``), so ``train.py`` imports it from its folder;
- ``requirements.txt``: transformers, peft, accelerate, safetensors and gguf pinned to the versions
  installed here, so the container trains with the libraries a local run uses (torch stays the image's
  CUDA build).

The tarball is deterministic: entries sorted, fixed owner, modes and times, and a gzip header without a
time, so the same sources give the same bytes (and the same S3 ETag).
"""

from __future__ import annotations

import gzip
import importlib.metadata
import io
import os
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import slm_eval
from slm_eval.errors import UserError

SOURCE_TARBALL = "sourcedir.tar.gz"
ENTRY_POINT = "train.py"
REQUIREMENTS = "requirements.txt"
# The libraries the entry script trains with; torch is the training image's own build.
PINNED_PACKAGES = ("transformers", "peft", "accelerate", "safetensors", "gguf")
_FIXED_MTIME = 315532800  # 1980-01-01, the oldest time every archive format stores
_SKIPPED_PARTS = frozenset({"__pycache__"})
_SKIPPED_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class StagedSource:
    """A written source bundle.

    Attributes:
        tarball: the ``sourcedir.tar.gz`` file.
        members: the files in it, in archive order.
        requirements: the lines of its ``requirements.txt``.
    """

    tarball: Path
    members: tuple[str, ...]
    requirements: tuple[str, ...]


def package_folder() -> Path:
    """The folder of the installed ``slm_eval`` package (``src/slm_eval`` in a checkout)."""
    return Path(slm_eval.__file__).resolve().parent


def entry_script(package: Path | None = None) -> Path:
    """The entry script inside the package: ``slm_eval/training/scripts/train.py``."""
    return (package or package_folder()) / "training" / "scripts" / ENTRY_POINT


def installed_versions(packages: tuple[str, ...] = PINNED_PACKAGES) -> dict[str, str | None]:
    """The installed version of each package, ``None`` where it is not installed."""
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def requirement_lines(versions: Mapping[str, str | None]) -> tuple[str, ...]:
    """``name==version`` per package; a package not installed here is left unpinned."""
    return tuple(f"{name}=={version}" if version else name for name, version in versions.items())


def stage_source(
    folder: Path,
    *,
    package: Path | None = None,
    versions: Mapping[str, str | None] | None = None,
) -> StagedSource:
    """Write ``folder/sourcedir.tar.gz`` for the SageMaker container.

    Args:
        folder: where the tarball goes (created when missing).
        package: the ``slm_eval`` package folder to copy (default: the installed one).
        versions: package -> version for ``requirements.txt`` (default: :func:`installed_versions`).

    Raises:
        UserError: the entry script is missing from the package.
    """
    package = package or package_folder()
    script = entry_script(package)
    if not script.is_file():
        raise UserError(f"the entry script {script} is missing: reinstall slm-eval (pip install -e .)")
    requirements = requirement_lines(installed_versions() if versions is None else versions)
    files: dict[str, bytes | Path] = {
        ENTRY_POINT: script,
        REQUIREMENTS: ("\n".join(requirements) + "\n").encode("utf-8"),
    }
    for path in _package_files(package):
        files["slm_eval/" + path.relative_to(package).as_posix()] = path
    folder.mkdir(parents=True, exist_ok=True)
    tarball = folder / SOURCE_TARBALL
    partial = folder / f".{SOURCE_TARBALL}.{os.getpid()}.part"
    try:
        with partial.open("wb") as raw:
            _write_tarball(raw, files)
        partial.replace(tarball)
    finally:
        partial.unlink(missing_ok=True)
    return StagedSource(tarball=tarball, members=tuple(sorted(files)), requirements=requirements)


def _package_files(package: Path) -> Iterator[Path]:
    for path in sorted(package.rglob("*")):
        relative = path.relative_to(package)
        if any(part in _SKIPPED_PARTS or part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and not path.name.endswith(_SKIPPED_SUFFIXES):
            yield path


def _write_tarball(raw: io.BufferedWriter, files: Mapping[str, bytes | Path]) -> None:
    directories = sorted({parent for name in files for parent in _parents(name)})
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for name in directories:
            archive.addfile(_info(name, tarfile.DIRTYPE, 0o755, 0))
        for name in sorted(files):
            content = files[name]
            data = content if isinstance(content, bytes) else content.read_bytes()
            archive.addfile(_info(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))


def _parents(name: str) -> list[str]:
    parts = name.split("/")[:-1]
    return ["/".join(parts[: index + 1]) for index in range(len(parts))]


def _info(name: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = _FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
