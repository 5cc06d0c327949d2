"""Run a workload in a worker process with a device profile's limits, and measure its memory.

Limits: CPU affinity to the profile's number of cores, the backend's thread count set to match, and a
memory limit — a cgroup v1 memory limit where writable (what Docker's ``--memory`` does), else an
address-space limit (``RLIMIT_AS``). The worker applies them to itself before loading anything and
reads them back. Memory is measured twice: psutil samples the worker's resident size from the parent,
and the kernel's own high-water mark comes back from the worker (``VmHWM`` of its address space) or, where
that is not readable, as ``ru_maxrss`` from ``wait4`` when the worker exits. On Linux ``ru_maxrss`` of a
spawned child also counts the parent's pages it shared before ``exec``, so it is kept only as a fallback.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psutil

from slm_eval.devices.cgroup import MemoryCgroup

MemoryEnforcement = Literal["cgroup-v1", "rlimit-as", "docker", "none"]
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


@dataclass(frozen=True)
class SandboxLimits:
    """The limits to apply: CPUs (``None``: all), memory in bytes (``None``: none) and backend threads."""

    cpus: tuple[int, ...] | None
    memory_bytes: int | None
    threads: int
    note: str = ""


def limits_for(cores: int | None, memory_mib: int | None, usable_cpus: Sequence[int]) -> SandboxLimits:
    """Limits for a profile with ``cores`` and ``memory_mib`` on a host that allows ``usable_cpus``.

    A profile with more cores than the host allows gets all of them, and the note says so.
    """
    ordered = tuple(sorted(usable_cpus))
    note = ""
    cpus: tuple[int, ...] | None = None
    if cores is not None:
        if cores > len(ordered):
            note = f"the profile has {cores} cores but this host allows {len(ordered)}; all {len(ordered)} used"
        cpus = ordered[: min(cores, len(ordered))]
    memory = memory_mib * 1024 * 1024 if memory_mib is not None else None
    return SandboxLimits(cpus=cpus, memory_bytes=memory, threads=len(cpus) if cpus else len(ordered), note=note)


def docker_engine_reachable(socket_path: Path = Path("/var/run/docker.sock"), timeout_s: float = 0.5) -> bool:
    """True when a Docker engine answers on its Unix socket."""
    if not hasattr(socket, "AF_UNIX") or not socket_path.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(timeout_s)
            client.connect(str(socket_path))
            client.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return b"200" in client.recv(64)
    except OSError:
        return False


@dataclass
class WorkerOutcome:
    """What happened to one worker: its exit, its memory, what the kernel enforced, and its limits."""

    exit_code: int | None
    signal: int | None
    sandbox: str
    memory_enforcement: MemoryEnforcement
    limits: SandboxLimits
    read_back: dict[str, Any] = field(default_factory=dict)
    peak_rss_bytes: int | None = None
    peak_rss_source: str | None = None
    wait4_maxrss_bytes: int | None = None
    sampled_peak_rss_bytes: int | None = None
    memory_samples: list[tuple[float, int]] = field(default_factory=list)
    cpu_seconds: float | None = None
    hit_memory_limit: bool = False
    error: dict[str, Any] | None = None

    @property
    def out_of_memory(self) -> bool:
        """True when the worker died or failed for want of memory under the limit."""
        if self.error is not None and self.error.get("kind") == "memory":
            return True
        killed = self.signal is not None and self.signal == 9
        return self.hit_memory_limit and (killed or self.exit_code not in (0, None))


class MemorySampler:
    """Samples a process's resident size from outside, on a thread, every ``interval_s``."""

    def __init__(self, pid: int, interval_s: float = 0.05, clock: Callable[[], float] = time.perf_counter) -> None:
        self._process = psutil.Process(pid)
        self._interval = interval_s
        self._clock = clock
        self._stop = threading.Event()
        self.samples: list[tuple[float, int]] = []
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self._started = clock()

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._process.status() == psutil.STATUS_ZOMBIE:
                    return  # exited, not yet reaped: its RSS reads as 0
                rss = self._process.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                return
            if rss == 0:
                return
            self.samples.append((self._clock() - self._started, int(rss)))
            self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    @property
    def peak(self) -> int | None:
        return max((rss for _, rss in self.samples), default=None)


class WorkerProcess:
    """Starts ``python -m slm_eval.devices.worker`` under limits and streams its events."""

    def __init__(
        self,
        limits: SandboxLimits,
        *,
        python: str = sys.executable,
        stderr_path: Path | None = None,
        sample_interval_s: float = 0.05,
        use_cgroup: bool = True,
        container_command: Sequence[str] | None = None,
    ) -> None:
        """Prepare a worker.

        Args:
            limits: the CPUs, memory and threads to apply.
            python: the interpreter that runs the worker.
            stderr_path: where the worker's stderr goes (llama.cpp's messages, tracebacks).
            sample_interval_s: how often the parent samples the worker's resident memory.
            use_cgroup: enforce memory with a cgroup where writable (else ``RLIMIT_AS``).
            container_command: a ``docker run ... IMAGE`` command that starts the worker in a container,
                which then enforces the limits itself.
        """
        self.limits = limits
        self._container = list(container_command) if container_command else None
        self._python = python
        self._stderr_path = stderr_path
        self._sample_interval = sample_interval_s
        self._use_cgroup = use_cgroup

    def run(self, job: Mapping[str, Any], on_event: Callable[[dict[str, Any]], None]) -> WorkerOutcome:
        """Run one job to the end, calling ``on_event`` for each event; never raises for a failed worker."""
        cgroup = None
        enforcement: MemoryEnforcement = "none"
        job_limits: dict[str, Any] = {"cpus": list(self.limits.cpus) if self.limits.cpus else None}
        if self._container is not None:
            enforcement = "docker" if self.limits.memory_bytes is not None else "none"
            job_limits = {}
        elif self.limits.memory_bytes is not None:
            if self._use_cgroup:
                cgroup = MemoryCgroup.create(f"slm-eval-{os.getpid()}-{secrets.token_hex(3)}", self.limits.memory_bytes)
            if cgroup is not None:
                enforcement = "cgroup-v1"
                job_limits["cgroup"] = str(cgroup.path)
            elif sys.platform != "win32":
                enforcement = "rlimit-as"
                job_limits["rlimit_as"] = self.limits.memory_bytes
        env = {**os.environ, **{name: str(self.limits.threads) for name in THREAD_VARIABLES}}
        env["PYTHONUNBUFFERED"] = "1"
        sandbox = "docker" if self._container is not None else "process"
        outcome = WorkerOutcome(None, None, sandbox, enforcement, self.limits)
        command = self._container or [self._python, "-m", "slm_eval.devices.worker"]
        stderr = self._stderr_path.open("ab") if self._stderr_path else subprocess.DEVNULL
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
                text=True,
                encoding="utf-8",
            )
            # The container's processes are not children of ours; its memory comes from the worker's VmHWM.
            sampler = MemorySampler(process.pid, self._sample_interval)
            if self._container is None:
                sampler.start()
            assert process.stdin is not None and process.stdout is not None
            try:
                process.stdin.write(json.dumps({**job, "limits": job_limits}))
                process.stdin.close()
            except BrokenPipeError:
                pass
            for line in process.stdout:
                event = _parse_event(line)
                if event is None:
                    continue
                if event["event"] == "ready":
                    outcome.read_back = {k: v for k, v in event.items() if k not in ("event", "pid")}
                elif event["event"] == "error":
                    outcome.error = event
                elif event["event"] == "done" and event.get("peak_rss_bytes"):
                    outcome.peak_rss_bytes = int(event["peak_rss_bytes"])
                    outcome.peak_rss_source = "VmHWM of the worker (/proc/self/status)"
                on_event(event)
            self._reap(process, outcome)
            if self._container is None:
                sampler.stop()
            outcome.memory_samples = sampler.samples
            outcome.sampled_peak_rss_bytes = sampler.peak
        finally:
            if self._stderr_path and not isinstance(stderr, int):
                stderr.close()
            if cgroup is not None:
                outcome.hit_memory_limit = cgroup.hit_limit()
                cgroup.remove()
        return outcome

    @staticmethod
    def _reap(process: subprocess.Popen[str], outcome: WorkerOutcome) -> None:
        if hasattr(os, "wait4"):
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            scale = 1 if sys.platform == "darwin" else 1024
            outcome.wait4_maxrss_bytes = int(usage.ru_maxrss * scale)
            if outcome.peak_rss_bytes is None:
                # ru_maxrss also counts the parent's pages the child shared before exec, so it can overstate.
                outcome.peak_rss_bytes = outcome.wait4_maxrss_bytes
                outcome.peak_rss_source = "ru_maxrss from wait4 (includes memory shared with the parent at spawn)"
            outcome.cpu_seconds = usage.ru_utime + usage.ru_stime
        else:
            process.wait()
        code = process.returncode
        outcome.exit_code = code if code is not None and code >= 0 else None
        outcome.signal = -code if code is not None and code < 0 else None


def _parse_event(line: str) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and "event" in event else None
