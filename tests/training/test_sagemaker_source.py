"""sourcedir.tar.gz: train.py at the root, an importable slm_eval copy, pinned requirements, same bytes each time."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from slm_eval.errors import UserError
from slm_eval.training.sagemaker_source import installed_versions, stage_source

VERSIONS = {"transformers": "5.24.0", "peft": "0.21.2", "accelerate": None}


def _package(root: Path) -> Path:
    package = root / "slm_eval"
    (package / "training" / "scripts").mkdir(parents=True)
    (package / "__pycache__").mkdir()
    (package / "__init__.py").write_text('"""stand-in"""\n', encoding="utf-8")
    (package / "errors.py").write_text("class UserError(Exception):\n    pass\n", encoding="utf-8")
    (package / "training" / "__init__.py").write_text("", encoding="utf-8")
    (package / "training" / "scripts" / "train.py").write_text("print('training')\n", encoding="utf-8")
    (package / "__pycache__" / "errors.cpython-311.pyc").write_bytes(b"\0")
    (package / "stale.pyc").write_bytes(b"\0")
    (package / ".hidden").write_text("x", encoding="utf-8")
    return package


def _members(tarball: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(tarball) as archive:
        return {member.name: member for member in archive.getmembers()}


def test_the_bundle_holds_the_entry_script_the_package_and_the_pins(tmp_path: Path) -> None:
    staged = stage_source(tmp_path / "work", package=_package(tmp_path), versions=VERSIONS)
    members = _members(staged.tarball)
    assert list(members) == [
        "slm_eval",
        "slm_eval/training",
        "slm_eval/training/scripts",
        "requirements.txt",
        "slm_eval/__init__.py",
        "slm_eval/errors.py",
        "slm_eval/training/__init__.py",
        "slm_eval/training/scripts/train.py",
        "train.py",
    ]
    assert staged.members == tuple(sorted(name for name, info in members.items() if info.isfile()))
    assert staged.requirements == ("transformers==5.24.0", "peft==0.21.2", "accelerate")
    with tarfile.open(staged.tarball) as archive:
        assert archive.extractfile("train.py").read() == b"print('training')\n"  # type: ignore[union-attr]
        assert archive.extractfile("requirements.txt").read() == b"transformers==5.24.0\npeft==0.21.2\naccelerate\n"  # type: ignore[union-attr]
    assert {(info.mtime, info.uid, info.gid, info.uname) for info in members.values()} == {(315532800, 0, 0, "")}


def test_the_same_sources_give_the_same_bytes(tmp_path: Path) -> None:
    package = _package(tmp_path)
    first = stage_source(tmp_path / "one", package=package, versions=VERSIONS).tarball.read_bytes()
    os.utime(package / "errors.py", (1_000_000_000, 1_000_000_000))
    second = stage_source(tmp_path / "two", package=package, versions=VERSIONS).tarball.read_bytes()
    assert first == second
    assert not list((tmp_path / "two").glob(".*part"))


def test_a_package_without_the_entry_script_is_refused(tmp_path: Path) -> None:
    package = _package(tmp_path)
    (package / "training" / "scripts" / "train.py").unlink()
    with pytest.raises(UserError, match=r"entry script .*train.py is missing"):
        stage_source(tmp_path / "work", package=package, versions=VERSIONS)


def test_the_real_bundle_runs_train_py_from_its_own_slm_eval_copy(tmp_path: Path) -> None:
    staged = stage_source(tmp_path / "work")
    assert "slm_eval/training/job.py" in staged.members
    assert not any("__pycache__" in name for name in staged.members)
    installed = installed_versions()
    assert f"transformers=={installed['transformers']}" in staged.requirements
    assert [line.split("==")[0] for line in staged.requirements] == [
        "transformers",
        "peft",
        "accelerate",
        "safetensors",
        "gguf",
    ]
    code = tmp_path / "opt-ml-code"
    with tarfile.open(staged.tarball) as archive:
        archive.extractall(code, filter="data")
    # As the container runs it: `python train.py ...` from the unpacked folder.
    where = subprocess.run(
        [sys.executable, "-c", "import slm_eval.training.job as job; print(job.__file__)"],
        cwd=code,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(code)
    helped = subprocess.run(
        [sys.executable, "train.py", "--help"], cwd=code, capture_output=True, text=True, check=False, timeout=120
    )
    assert helped.returncode == 0, helped.stderr
    assert "--checkpoint-dir" in helped.stdout and "--resume" in helped.stdout
