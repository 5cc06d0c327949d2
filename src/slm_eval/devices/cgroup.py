"""A cgroup v1 memory limit for the worker process (what Docker's ``--memory`` does), where writable.

The parent creates a child cgroup under its own memory cgroup and sets the limit; the worker moves
itself in before it loads anything. Where cgroup v1 is absent or read-only the sandbox falls back to
an address-space limit (``RLIMIT_AS``) and says so.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

MEMORY_ROOT = Path("/sys/fs/cgroup/memory")


def own_memory_cgroup(proc_cgroup: Path = Path("/proc/self/cgroup")) -> str | None:
    """This process's memory cgroup path (``/a/b``) from ``/proc/self/cgroup``, or ``None``."""
    try:
        lines = proc_cgroup.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3 and "memory" in parts[1].split(","):
            return parts[2]
    return None


class MemoryCgroup:
    """One child memory cgroup with a hard limit."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, name: str, limit_bytes: int, root: Path = MEMORY_ROOT) -> MemoryCgroup | None:
        """Create ``<own cgroup>/<name>`` with ``limit_bytes``; ``None`` where cgroup v1 is not writable."""
        own = own_memory_cgroup()
        if own is None or not (root / "memory.limit_in_bytes").exists():
            return None
        parent = root / own.lstrip("/")
        sweep_stale_groups(parent)
        path = parent / name
        try:
            path.mkdir(parents=False, exist_ok=True)
            (path / "memory.limit_in_bytes").write_text(str(limit_bytes), encoding="ascii")
            _try_write(path / "memory.move_charge_at_immigrate", "3")  # charges move in with the worker
            swap_limit = path / "memory.memsw.limit_in_bytes"
            if swap_limit.exists():
                swap_limit.write_text(str(limit_bytes), encoding="ascii")
        except OSError:
            cls(path).remove()
            return None
        return cls(path)

    def limit_bytes(self) -> int | None:
        """The limit as the kernel holds it."""
        return _read_int(self.path / "memory.limit_in_bytes")

    def max_usage_bytes(self) -> int | None:
        """The most memory the group has used (resident pages and page cache charged to it)."""
        return _read_int(self.path / "memory.max_usage_in_bytes")

    def hit_limit(self) -> bool:
        """True when the kernel refused memory to the group or killed a process for it."""
        failcnt = _read_int(self.path / "memory.failcnt") or 0
        oom_kills = 0
        try:
            for line in (self.path / "memory.oom_control").read_text(encoding="ascii").splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    oom_kills = int(value)
        except (OSError, ValueError):
            pass
        return failcnt > 0 or oom_kills > 0

    def remove(self) -> None:
        """Remove the group (its processes must have exited); errors are ignored."""
        with contextlib.suppress(OSError):
            self.path.rmdir()


def sweep_stale_groups(parent: Path, prefix: str = "slm-eval-") -> list[Path]:
    """Remove empty groups named ``slm-eval-<pid>-*`` whose creating process is gone (a killed evaluate).

    Returns:
        The groups removed.
    """
    removed: list[Path] = []
    try:
        children = [child for child in parent.iterdir() if child.is_dir() and child.name.startswith(prefix)]
    except OSError:
        return removed
    for child in children:
        owner = child.name[len(prefix) :].split("-", 1)[0]
        if owner.isdigit() and _pid_alive(int(owner)):
            continue
        with contextlib.suppress(OSError):
            child.rmdir()  # the kernel refuses while processes remain in it
            removed.append(child)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def join_cgroup(path: Path, pid: int | None = None) -> None:
    """Move a process (default: this one) into the cgroup at ``path``."""
    (path / "cgroup.procs").write_text(str(pid or os.getpid()), encoding="ascii")


def cgroup_limit_of(path: Path) -> int | None:
    """The memory limit of the cgroup at ``path``, read back from the kernel."""
    return _read_int(path / "memory.limit_in_bytes")


def _try_write(path: Path, value: str) -> None:
    with contextlib.suppress(OSError):
        path.write_text(value, encoding="ascii")


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None
