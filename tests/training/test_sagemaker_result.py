"""model.tar.gz unpacking: all or nothing, and nothing lands outside the destination."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from slm_eval.errors import UserError
from slm_eval.training.sagemaker_result import split_s3_uri, unpack_model_archive
from tests.training.sagemaker_fakes import model_archive


def _archive(tmp_path: Path, *members: tarfile.TarInfo) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        ok = tarfile.TarInfo("config.json")
        ok.size = 2
        archive.addfile(ok, io.BytesIO(b"{}"))
        for member in members:
            archive.addfile(member, io.BytesIO(b"x" * member.size))
    path = tmp_path / "model.tar.gz"
    path.write_bytes(buffer.getvalue())
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = 1 if kind == tarfile.REGTYPE else 0
    return info


def test_a_model_archive_unpacks_into_a_new_folder(tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(model_archive({"config.json": b"{}", "adapter/adapter_config.json": b"{}"}))
    files = unpack_model_archive(archive, tmp_path / "out" / "variant")
    assert files == ["adapter/adapter_config.json", "config.json"]
    assert (tmp_path / "out" / "variant" / "adapter" / "adapter_config.json").read_bytes() == b"{}"
    assert [path.name for path in (tmp_path / "out").iterdir()] == ["variant"]


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (_member("../escaped.txt"), r"'../escaped.txt', a path outside its folder"),
        (_member("/etc/cron.d/evil"), r"'/etc/cron.d/evil', a path outside its folder"),
        (_member("weights/../../escaped.txt"), r"a path outside its folder"),
        (_member("passwd", tarfile.SYMTYPE, "/etc/passwd"), r"the link 'passwd' -> '/etc/passwd'"),
        (_member("up", tarfile.SYMTYPE, "../../x"), r"the link 'up' -> '../../x'"),
        (_member("null", tarfile.CHRTYPE), r"the device or pipe 'null'"),
    ],
)
def test_unsafe_members_are_refused_and_nothing_is_left(tmp_path: Path, member: tarfile.TarInfo, message: str) -> None:
    archive = _archive(tmp_path, member)
    dest = tmp_path / "out" / "variant"
    with pytest.raises(UserError, match=message):
        unpack_model_archive(archive, dest)
    assert not dest.exists()
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "out" / "escaped.txt").exists()
    assert not list(tmp_path.glob("out/.tmp-*"))


def test_without_the_data_filter_every_link_is_refused_and_plain_files_still_unpack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(tarfile, "data_filter")
    with pytest.raises(UserError, match=r"the link 'alias.json' -> 'config.json'"):
        unpack_model_archive(_archive(tmp_path, _member("alias.json", tarfile.SYMTYPE, "config.json")), tmp_path / "a")
    plain = tmp_path / "plain.tar.gz"
    plain.write_bytes(model_archive({"config.json": b"{}"}))
    assert unpack_model_archive(plain, tmp_path / "b") == ["config.json"]


def test_a_non_empty_destination_and_a_broken_archive_are_refused(tmp_path: Path) -> None:
    dest = tmp_path / "variant"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine", encoding="utf-8")
    archive = _archive(tmp_path)
    with pytest.raises(UserError, match=r"already exists and is not an empty folder"):
        unpack_model_archive(archive, dest)
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(b"not a tarball")
    with pytest.raises(UserError, match=r"cannot unpack the model archive .*broken.tar.gz"):
        unpack_model_archive(broken, tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_s3_uris_split_into_bucket_and_key() -> None:
    assert split_s3_uri("s3://bucket/a/b/model.tar.gz") == ("bucket", "a/b/model.tar.gz")
    with pytest.raises(UserError, match="not an S3 object URI"):
        split_s3_uri("https://bucket/key")
