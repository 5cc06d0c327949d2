"""The cgroup v1 memory limit: parsing /proc/self/cgroup, a fake cgroup tree, and the real controller."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from slm_eval.devices import cgroup
from slm_eval.devices.cgroup import MEMORY_ROOT, MemoryCgroup, cgroup_limit_of, join_cgroup, own_memory_cgroup

MIB = 1024 * 1024
PROC_CGROUP_V1 = """\
9:name=systemd:/
5:devices:/
4:memory:/process_api/00b88aaf
3:cpuset:/
0::/
"""


def test_own_memory_cgroup_from_a_v1_file(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    proc.write_text(PROC_CGROUP_V1, encoding="utf-8")
    assert own_memory_cgroup(proc) == "/process_api/00b88aaf"


def test_own_memory_cgroup_with_joined_controllers(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    proc.write_text("7:cpu,cpuacct:/a\n6:memory,hugetlb:/b/c\n", encoding="utf-8")
    assert own_memory_cgroup(proc) == "/b/c"


@pytest.mark.parametrize("content", ["0::/user.slice\n", "", "garbage line\n"], ids=["v2-only", "empty", "garbage"])
def test_no_memory_cgroup(tmp_path: Path, content: str) -> None:
    proc = tmp_path / "cgroup"
    proc.write_text(content, encoding="utf-8")
    assert own_memory_cgroup(proc) is None


def test_no_proc_file(tmp_path: Path) -> None:
    assert own_memory_cgroup(tmp_path / "absent") is None


@pytest.fixture
def fake_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cgroup v1 memory tree made of plain files, with this process in ``/parent``."""
    root = tmp_path / "memory"
    (root / "parent").mkdir(parents=True)
    (root / "memory.limit_in_bytes").write_text("9223372036854771712\n", encoding="ascii")
    monkeypatch.setattr(cgroup, "own_memory_cgroup", lambda: "/parent")
    return root


def test_create_writes_the_limit_under_the_own_group(fake_root: Path) -> None:
    group = MemoryCgroup.create("worker-1", 300 * MIB, root=fake_root)
    assert group is not None
    assert group.path == fake_root / "parent" / "worker-1"
    assert (group.path / "memory.limit_in_bytes").read_text(encoding="ascii") == str(300 * MIB)
    assert group.limit_bytes() == 300 * MIB == cgroup_limit_of(group.path)
    assert group.max_usage_bytes() is None
    assert group.hit_limit() is False


def test_hit_limit_from_failcnt_or_oom_kills(fake_root: Path) -> None:
    group = MemoryCgroup.create("worker-2", 64 * MIB, root=fake_root)
    assert group is not None
    (group.path / "memory.failcnt").write_text("0\n", encoding="ascii")
    (group.path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n", encoding="ascii")
    assert group.hit_limit() is False
    (group.path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n", encoding="ascii")
    assert group.hit_limit() is True
    (group.path / "memory.oom_control").write_text("oom_kill 0\n", encoding="ascii")
    (group.path / "memory.failcnt").write_text("12\n", encoding="ascii")
    assert group.hit_limit() is True


def test_create_without_the_controller_returns_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroup, "own_memory_cgroup", lambda: "/parent")
    assert MemoryCgroup.create("w", 64 * MIB, root=tmp_path / "no-memory-controller") is None
    monkeypatch.setattr(cgroup, "own_memory_cgroup", lambda: None)
    assert MemoryCgroup.create("w", 64 * MIB, root=tmp_path) is None


def test_create_under_a_missing_parent_returns_none(fake_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroup, "own_memory_cgroup", lambda: "/gone/away")
    assert MemoryCgroup.create("w", 64 * MIB, root=fake_root) is None
    assert not (fake_root / "gone").exists()


def test_join_writes_the_pid(tmp_path: Path) -> None:
    join_cgroup(tmp_path, pid=4242)
    assert (tmp_path / "cgroup.procs").read_text(encoding="ascii") == "4242"
    join_cgroup(tmp_path)
    assert (tmp_path / "cgroup.procs").read_text(encoding="ascii") == str(os.getpid())


def test_remove_ignores_errors(tmp_path: Path) -> None:
    group = MemoryCgroup(tmp_path / "never-created")
    group.remove()
    assert group.limit_bytes() is None
    assert group.hit_limit() is False


# --- the real controller (root with cgroup v1 memory mounted read-write) -----------------------------


def _real_group(name: str, limit: int) -> MemoryCgroup:
    group = MemoryCgroup.create(f"slm-eval-test-{name}-{os.getpid()}", limit)
    if group is None:
        pytest.skip(f"no writable cgroup v1 memory controller at {MEMORY_ROOT}")
    return group


def test_a_real_group_holds_its_limit_and_is_removed() -> None:
    group = _real_group("limit", 96 * MIB)
    try:
        assert group.path.is_dir()
        assert group.limit_bytes() == 96 * MIB
        assert group.hit_limit() is False
    finally:
        group.remove()
    assert not group.path.exists()


def test_a_real_group_kills_an_allocation_above_its_limit() -> None:
    group = _real_group("kill", 64 * MIB)
    # The child moves itself in, then touches 256 MiB; with no swap beyond the limit the kernel kills it.
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from slm_eval.devices.cgroup import join_cgroup\n"
        "join_cgroup(Path(sys.argv[1]))\n"
        "block = bytearray(256 * 1024 * 1024)\n"
        "block[::4096] = b'\\x01' * len(block[::4096])\n"
        "print('survived')\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script, str(group.path)], capture_output=True, text=True, timeout=60
        )
        assert "survived" not in done.stdout
        assert done.returncode == -9, done.stderr
        assert group.hit_limit() is True
        usage = group.max_usage_bytes()
        assert usage is not None and usage <= 64 * MIB
    finally:
        group.remove()
