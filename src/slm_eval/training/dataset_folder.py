"""The prepared dataset folder on disk: JSONL bytes, and an atomic write that reuses an identical folder.

The folder is written into a temporary sibling and renamed into place, so a reader never sees half of it; an
existing folder with the same bytes is left as it is, and one with other bytes (damaged, edited) is replaced.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from slm_eval.errors import UserError

PRIVATE_KEY_PREFIX = "_"


def jsonl_bytes(records: Sequence[Mapping[str, Any]]) -> bytes:
    """UTF-8 JSON Lines of ``records``, keys in their order, keys starting with ``_`` left out."""
    lines = [
        json.dumps({k: v for k, v in record.items() if not k.startswith(PRIVATE_KEY_PREFIX)}, ensure_ascii=False) + "\n"
        for record in records
    ]
    return "".join(lines).encode("utf-8")


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def holds(folder: Path, files: Mapping[str, bytes]) -> bool:
    """Whether ``folder`` has each of ``files`` (relative path -> bytes) with exactly those bytes."""
    try:
        return all((folder / name).read_bytes() == data for name, data in files.items())
    except OSError:
        return False


def write_folder(root: Path, name: str, files: Mapping[str, bytes]) -> Path:
    """Writes ``files`` into ``root/name`` through a temporary folder and a rename; reuses an identical folder.

    Raises:
        UserError: ``root`` cannot be created or written.
    """
    final = root / name
    if holds(final, files):
        return final
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=root))
    except OSError as exc:
        raise UserError(
            f"cannot write the prepared dataset under {root}: {exc.strerror or exc}; check the path"
        ) from None
    old = staging.with_suffix(".old")
    try:
        for relative, data in files.items():
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        staging.chmod(0o755)
        if final.exists():
            final.rename(old)
        try:
            staging.rename(final)
        except OSError:
            if not holds(final, files):  # another process wrote something else there meanwhile
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return final
