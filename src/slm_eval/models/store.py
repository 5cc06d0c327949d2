"""The model store: variants of catalogued models (ONNX exports, quantized files), each with its manifest.

Layout, under ``paths.models`` of the config (``data/models`` by default)::

    data/models/<model>/<variant>/          e.g. data/models/smollm2-135m-instruct/onnx-int4/
        manifest.json                       source, parent sha256, method, sizes, tool versions, checks
        model.onnx, tokenizer.json, ...     the variant's own files

A variant is written into a hidden temporary folder beside its final place and renamed into place only
when complete, so an interrupted or failed conversion never leaves a half-written variant. Any variant is
a model name: ``<model>@<variant>``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from slm_eval.errors import UserError
from slm_eval.logs import get_logger

log = get_logger(__name__)

MANIFEST = "manifest.json"
MANIFEST_SCHEMA = 1
VARIANT_SEPARATOR = "@"
_VARIANT_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_TEMPORARY_PREFIX = ".tmp-"
_CHUNK = 1 << 20


def check_variant_name(name: str) -> str:
    """``name`` when it is a valid variant name (lower-case letters, digits, ``.``, ``_``, ``-``).

    Raises:
        UserError: an empty or malformed name.
    """
    if not _VARIANT_NAME.match(name):
        raise UserError(
            f"variant name '{name}' is not valid: use lower-case letters, digits, '.', '_' and '-' (e.g. onnx-int4)"
        )
    return name


def split_reference(reference: str) -> tuple[str, str | None]:
    """``"smollm2@onnx-int4"`` -> ``("smollm2", "onnx-int4")``; a plain name has no variant."""
    model, separator, variant = reference.partition(VARIANT_SEPARATOR)
    return (model, variant) if separator else (reference, None)


def sha256_file(path: Path) -> str:
    """The sha256 of one file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_tree(path: Path) -> str:
    """The sha256 of a file, or of a folder: over each file's relative path and sha256, in sorted order.

    A folder's manifest is left out, so a variant's digest covers its model files only.
    """
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file() and p.name != MANIFEST):
        digest.update(f"{item.relative_to(path).as_posix()}\0{sha256_file(item)}\n".encode())
    return digest.hexdigest()


def file_table(folder: Path) -> dict[str, dict[str, Any]]:
    """Every file under ``folder`` (the manifest excepted) with its size in bytes and sha256."""
    return {
        item.relative_to(folder).as_posix(): {"bytes": item.stat().st_size, "sha256": sha256_file(item)}
        for item in sorted(folder.rglob("*"))
        if item.is_file() and item.name != MANIFEST
    }


@dataclass(frozen=True)
class Variant:
    """One variant in the store.

    Attributes:
        model: the catalogued model it was made from, e.g. ``smollm2-135m-instruct``.
        name: the variant's name, e.g. ``onnx-int4``.
        path: its folder.
        manifest: its ``manifest.json``.
    """

    model: str
    name: str
    path: Path
    manifest: Mapping[str, Any]

    @property
    def reference(self) -> str:
        """The name to pass as ``--model``: ``<model>@<variant>``."""
        return f"{self.model}{VARIANT_SEPARATOR}{self.name}"

    @property
    def format(self) -> str:
        """The weights' format: ``onnx``, ``gguf`` or ``transformers``."""
        return str(self.manifest.get("format", "unknown"))

    @property
    def size_bytes(self) -> int:
        """Bytes of the variant's files, from its manifest."""
        return int(self.manifest.get("size_bytes", 0))

    @property
    def weights(self) -> Path:
        """The file or folder a backend loads: the folder, or the single weights file it names."""
        entry = self.manifest.get("entry")
        return self.path / str(entry) if entry else self.path

    def verify(self) -> list[str]:
        """Files that are missing or whose size or sha256 differs from the manifest (empty when intact)."""
        problems = []
        for name, facts in dict(self.manifest.get("files", {})).items():
            item = self.path / name
            if not item.is_file():
                problems.append(f"{name} is missing")
            elif item.stat().st_size != int(facts.get("bytes", -1)) or sha256_file(item) != facts.get("sha256"):
                problems.append(f"{name} differs from its manifest")
        return problems


class ModelStore:
    """The variants under one root folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, model: str, variant: str) -> Path:
        """Where ``model@variant`` lives (whether or not it exists)."""
        return self.root / model / check_variant_name(variant)

    def variants(self, model: str | None = None) -> list[Variant]:
        """Every complete variant (of ``model`` only, when given), sorted by model then name.

        Folders without a readable manifest are skipped with a warning in the log; temporary folders of
        conversions in progress are ignored.
        """
        if not self.root.is_dir():
            return []
        models = [self.root / model] if model is not None else sorted(p for p in self.root.iterdir() if p.is_dir())
        found = []
        for model_dir in models:
            if not model_dir.is_dir():
                continue
            for folder in sorted(p for p in model_dir.iterdir() if p.is_dir()):
                if folder.name.startswith(_TEMPORARY_PREFIX):
                    continue
                manifest = _read_manifest(folder / MANIFEST)
                if manifest is None:
                    log.warning("skipping %s: it has no readable %s", folder, MANIFEST)
                    continue
                found.append(Variant(model_dir.name, folder.name, folder, manifest))
        return found

    def get(self, model: str, variant: str) -> Variant:
        """The variant ``model@variant``.

        Raises:
            UserError: no such variant; the message lists the model's variants.
        """
        folder = self.folder(model, variant)
        manifest = _read_manifest(folder / MANIFEST)
        if manifest is None:
            present = [v.name for v in self.variants(model)]
            listed = f"its variants: {', '.join(present)}" if present else "it has no variants yet"
            raise UserError(
                f"no variant '{variant}' of {model} in {self.root} ({listed}); make one with "
                f"slm-eval convert --model {model}"
            )
        return Variant(model, variant, folder, manifest)

    @contextmanager
    def writing(self, model: str, variant: str, *, replace: bool = False) -> Iterator[Path]:
        """A temporary folder to write ``model@variant`` into; renamed into place when the block succeeds.

        Raises:
            UserError: the variant exists and ``replace`` is false.
        """
        final = self.folder(model, variant)
        if final.exists() and not replace:
            raise UserError(f"{model}@{variant} already exists in {final.parent}; pass --force to replace it")
        final.parent.mkdir(parents=True, exist_ok=True)
        temporary = final.parent / f"{_TEMPORARY_PREFIX}{variant}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        temporary.mkdir()
        try:
            yield temporary
            if not (temporary / MANIFEST).is_file():
                raise RuntimeError(f"{temporary} was finished without a {MANIFEST}")
            if final.exists():
                retired = final.parent / f"{_TEMPORARY_PREFIX}old-{variant}-{uuid.uuid4().hex[:8]}"
                final.rename(retired)
                temporary.rename(final)
                shutil.rmtree(retired, ignore_errors=True)
            else:
                temporary.rename(final)
        finally:
            if temporary.exists():
                shutil.rmtree(temporary, ignore_errors=True)


def write_manifest(folder: Path, facts: Mapping[str, Any], *, entry: str | None = None) -> dict[str, Any]:
    """Write ``manifest.json`` into ``folder``: ``facts`` plus every file's size and sha256, and the total size.

    Args:
        folder: the variant's (temporary) folder, with every file already written.
        facts: what made it: model, variant, format, kind, method, source, tool versions, checks.
        entry: the file a backend loads when it is one file (a GGUF), else ``None`` (the folder).
    """
    files = file_table(folder)
    manifest = {
        "schema_version": MANIFEST_SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **facts,
        "entry": entry,
        "files": files,
        "size_bytes": sum(int(item["bytes"]) for item in files.values()),
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def update_manifest(variant: Variant, updates: Mapping[str, Any]) -> Variant:
    """Merge ``updates`` into a stored variant's manifest (its files are untouched); the file is replaced whole."""
    manifest = {**variant.manifest, **updates}
    path = variant.path / MANIFEST
    partial = path.with_name(f"{_TEMPORARY_PREFIX}{MANIFEST}")
    partial.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    partial.replace(path)
    return Variant(variant.model, variant.name, variant.path, manifest)
