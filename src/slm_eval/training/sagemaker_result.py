"""A finished SageMaker training job's ``model.tar.gz``: downloaded from S3 and unpacked safely.

The archive is SageMaker's tarball of ``/opt/ml/model``. It is unpacked into a hidden folder beside the
destination and renamed into place only when complete; a member with an absolute path, a ``..`` part, a
link leaving the folder or a device file is refused (``tarfile``'s ``data`` filter where this Python has
it, and the same rules checked here first on every Python).
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from slm_eval.errors import UserError, first_line

MODEL_ARCHIVE = "model.tar.gz"


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> ``("bucket", "some/key")``.

    Raises:
        UserError: not an ``s3://`` URI with a bucket and a key.
    """
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not key:
        raise UserError(f"'{uri}' is not an S3 object URI (s3://bucket/key)")
    return bucket, key


def download_model(s3: Any, uri: str, dest: Path, *, echo: Callable[[str], None]) -> list[str]:
    """Download the model archive at ``uri`` and unpack it into ``dest``.

    Args:
        s3: a boto3 S3 client.
        uri: ``ModelArtifacts.S3ModelArtifacts`` of the training job.
        dest: the folder to create; it must not exist or be empty.
        echo: prints one line.

    Returns:
        The unpacked files, relative to ``dest``, sorted.

    Raises:
        UserError: ``dest`` is not empty, or the archive is not a safe tar.gz.
    """
    _check_destination(dest)
    bucket, key = split_s3_uri(uri)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".download-") as scratch:
        archive = Path(scratch) / MODEL_ARCHIVE
        echo(f"downloading {uri}")
        s3.download_file(bucket, key, str(archive))
        echo(f"unpacking {archive.stat().st_size / 1e6:.1f} MB into {dest}")
        return unpack_model_archive(archive, dest)


def unpack_model_archive(archive: Path, dest: Path) -> list[str]:
    """Unpack a ``model.tar.gz`` into ``dest`` (created; it must not exist or be empty), all or nothing.

    Returns:
        The unpacked files, relative to ``dest``, sorted.

    Raises:
        UserError: ``dest`` is not empty, the archive cannot be read, or a member would land outside
            ``dest`` or is a device file.
    """
    _check_destination(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.parent / f".tmp-{dest.name}-{uuid.uuid4().hex[:8]}"
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member)
            staging.mkdir()
            if hasattr(tarfile, "data_filter"):
                tar.extractall(staging, members=members, filter="data")
            else:  # Python before 3.10.12 / 3.11.4: links were refused by _check_member
                tar.extractall(staging, members=members)  # every member was checked above
        files = sorted(path.relative_to(staging).as_posix() for path in staging.rglob("*") if path.is_file())
        if dest.exists():
            dest.rmdir()
        staging.rename(dest)
        return files
    except (tarfile.TarError, OSError) as exc:
        raise UserError(f"cannot unpack the model archive {archive}: {first_line(exc)}") from exc
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _check_destination(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UserError(f"{dest} already exists and is not an empty folder: choose another destination")


def _check_member(member: tarfile.TarInfo) -> None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts or member.name.startswith("\\"):
        raise UserError(f"the model archive holds '{member.name}', a path outside its folder: refusing to unpack it")
    if member.isdev() or member.isfifo():
        raise UserError(f"the model archive holds the device or pipe '{member.name}': refusing to unpack it")
    if member.issym() or member.islnk():
        target = PurePosixPath(member.linkname)
        escapes = target.is_absolute() or ".." in target.parts
        if escapes or not hasattr(tarfile, "data_filter"):
            raise UserError(f"the model archive holds the link '{member.name}' -> '{member.linkname}': refusing it")
