"""The worker process: applies its limits to itself, loads one model, answers requests, reports events.

The parent (:mod:`slm_eval.devices.sandbox`) starts ``python -m slm_eval.devices.worker``, writes one JSON
job on its stdin and reads JSON events, one per line, from its stdout:

- ``ready``: the limits as read back inside the worker (CPU affinity, address-space limit, cgroup limit);
- ``loaded``: load time, resident memory before and after loading, parameter count (and, for a network
  API, ``network_rtt_s``, the round trip measured at load);
- ``result``: one per request, with its output, token counts, timings (``network_s`` for a network API)
  and CPU seconds;
- ``error``: a one-line reason, with ``kind`` ``user``, ``memory`` or ``internal``;
- ``done``: the worker's total CPU seconds.

Anything else the process prints (llama.cpp included) goes to stderr, never among the events.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

if TYPE_CHECKING:
    from slm_eval.backends.base import Backend, EncoderBackend

EXIT_USER_ERROR = 3
EXIT_MEMORY = 4


def apply_limits(limits: Mapping[str, Any]) -> dict[str, Any]:
    """Apply CPU affinity, the cgroup and the address-space limit to this process; read them back."""
    cpus = limits.get("cpus")
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cpus))
    cgroup = limits.get("cgroup")
    cgroup_limit = None
    if cgroup:
        from slm_eval.devices.cgroup import cgroup_limit_of, join_cgroup

        join_cgroup(Path(cgroup))
        cgroup_limit = cgroup_limit_of(Path(cgroup))
    rlimit_as = None
    if limits.get("rlimit_as"):
        import resource

        value = int(limits["rlimit_as"])
        resource.setrlimit(resource.RLIMIT_AS, (value, value))
    if sys.platform != "win32":
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        rlimit_as = None if soft == resource.RLIM_INFINITY else soft
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"affinity": affinity, "rlimit_as": rlimit_as, "cgroup_memory_limit": cgroup_limit}


def own_peak_rss_bytes(status: Path = Path("/proc/self/status")) -> int | None:
    """This process's resident high-water mark (``VmHWM``) as the kernel keeps it, in bytes.

    Unlike ``ru_maxrss`` seen through ``wait4``, ``VmHWM`` belongs to the worker's own address space: it does
    not include the parent's memory that a freshly spawned child shares until it execs.
    """
    try:
        for line in status.read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when its parent dies (no orphaned workers after a SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


class EventStream:
    """Writes events as JSON lines to the parent, flushing each."""

    def __init__(self, handle: TextIO) -> None:
        self._handle = handle

    def emit(self, event: str, **fields: Any) -> None:
        self._handle.write(json.dumps({"event": event, **fields}, ensure_ascii=False) + "\n")
        self._handle.flush()


def run_job(job: Mapping[str, Any], events: EventStream) -> None:
    """Load the model named in the job and answer its requests, emitting events."""
    import psutil

    from slm_eval.backends.base import LoadOptions, is_encoder_backend
    from slm_eval.backends.catalogue import choose_backend, load_backend
    from slm_eval.models.catalogue import default_registry

    models_dir = job.get("models_dir")
    card = default_registry().resolve(job["model"], Path(models_dir) if models_dir else None)
    entry = choose_backend(card, job.get("backend"))
    load = job.get("load", {})
    options = LoadOptions(
        threads=load.get("threads"),
        context_length=int(load.get("context_length", 2048)),
        seed=int(load.get("seed", 0)),
        chat=load.get("chat"),
        prefix_cache=bool(load.get("prefix_cache", False)),
        dtype=str(load.get("dtype", "float32")),
        trust_remote_code=bool(load.get("trust_remote_code", False)),
        **({"encoder_task": load["encoder_task"]} if load.get("encoder_task") else {}),
    )
    process = psutil.Process()
    rss_before = process.memory_info().rss
    started = time.perf_counter()
    backend = load_backend(entry, card, options, Path(job.get("cache_dir", "data/cache")))
    load_seconds = time.perf_counter() - started
    events.emit(
        "loaded",
        backend=entry.name,
        load_s=load_seconds,
        rss_before=rss_before,
        rss_after=process.memory_info().rss,
        parameters=backend.parameter_count,
        local=backend.capabilities.local,
        **_encoder_facts(backend),
        # A network API's round trip, measured at load, so its latency can be read apart from the model's.
        **({"network_rtt_s": getattr(backend, "network_rtt_s", None)} if hasattr(backend, "network_rtt_s") else {}),
    )
    answer = (
        _encoder_answerer(cast("EncoderBackend", backend))
        if is_encoder_backend(backend)
        else _generation_answerer(cast("Backend", backend))
    )
    try:
        timed_s = 0.0
        for item in job["requests"]:
            fields = answer(item)
            events.emit("result", key=item["key"], **fields)
            if is_timed_key(str(item["key"])):
                timed_s += float(fields["e2e_s"])
        if job.get("top_up"):
            _top_up(answer, job["top_up"], timed_s, events)
    finally:
        backend.close()
    events.emit("done", cpu_s=time.process_time(), peak_rss_bytes=own_peak_rss_bytes())


def _encoder_facts(backend: object) -> dict[str, Any]:
    """The head an encoder was loaded with, and whether it was trained (nothing for a generating backend)."""
    if not callable(getattr(backend, "predict", None)):
        return {}
    return {
        "encoder_task": getattr(backend, "task", None),
        "head_trained": bool(getattr(backend, "head_trained", False)),
    }


Answer = Callable[[Mapping[str, Any]], dict[str, Any]]
TOP_UP_PREFIX = "top"


def is_timed_key(key: str) -> bool:
    """Whether a request counts towards the validity rules: clean evaluations and timing requests."""
    kind, _, rest = key.partition("|")
    return kind == "timing" or (kind == "eval" and rest.endswith("|clean"))


def _generation_answerer(backend: Backend) -> Answer:
    """Answers one job item with a generating backend: the result event's fields."""
    from slm_eval.backends.base import GenerationRequest

    def answer(item: Mapping[str, Any]) -> dict[str, Any]:
        request = GenerationRequest(
            prompt=item["prompt"],
            max_new_tokens=int(item.get("max_new_tokens", 128)),
            ignore_eos=bool(item.get("ignore_eos", False)),
        )
        cpu_started = time.process_time()
        (generation,) = backend.generate([request])
        return {
            "text": generation.text,
            "prompt_tokens": generation.prompt_tokens,
            "output_tokens": generation.output_tokens,
            "ttft_s": generation.time_to_first_token_s,
            "tpot_s": generation.time_per_output_token_s,
            "e2e_s": generation.end_to_end_s,
            "decode_tps": generation.decode_tokens_per_s,
            "prompt_tps": generation.prompt_tokens_per_s,
            "finish_reason": generation.finish_reason,
            "network_s": generation.network_s,
            "cpu_s": time.process_time() - cpu_started,
        }

    return answer


def _encoder_answerer(backend: EncoderBackend) -> Answer:
    """Answers one job item with an encoder's head: latency, and no token timings."""
    from slm_eval.backends.base import EncoderRequest

    def answer(item: Mapping[str, Any]) -> dict[str, Any]:
        cpu_started = time.process_time()
        (prediction,) = backend.predict([EncoderRequest(text=item["prompt"], context=item.get("context"))])
        seconds = prediction.end_to_end_s
        return {
            "text": prediction.text,
            "prompt_tokens": prediction.input_tokens,
            "output_tokens": 0,
            "ttft_s": None,
            "tpot_s": None,
            "e2e_s": seconds,
            "decode_tps": None,
            "prompt_tps": prediction.input_tokens / seconds if seconds > 0 else None,
            "finish_reason": "stop",
            "confidence": prediction.confidence,
            "cpu_s": time.process_time() - cpu_started,
        }

    return answer


def _top_up(answer: Answer, top_up: Mapping[str, Any], timed_s: float, events: EventStream) -> None:
    """Repeat timing requests from the pool until the timed requests last the minimum duration.

    A fast model (an encoder head answers in milliseconds) meets the minimum request count long before
    the minimum duration; these requests, keyed ``timing|<example id>|top<n>``, are timed and not scored.
    """
    pool = list(top_up.get("pool", []))
    wanted = float(top_up.get("min_seconds", 0))
    most = int(top_up.get("max_requests", 10_000))
    count = 0
    while pool and timed_s < wanted and count < most:
        item = pool[count % len(pool)]
        fields = answer(item)
        events.emit("result", key=f"timing|{item['example_id']}|{TOP_UP_PREFIX}{count}", **fields)
        timed_s += float(fields["e2e_s"])
        count += 1


def main() -> None:
    """Entry point of ``python -m slm_eval.devices.worker``."""
    events = EventStream(os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8"))
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    _die_with_parent()
    job = json.loads(sys.stdin.read())
    try:
        events.emit("ready", pid=os.getpid(), **apply_limits(job.get("limits", {})))
        run_job(job, events)
    except MemoryError:
        events.emit("error", kind="memory", message="the worker ran out of memory (MemoryError)")
        sys.exit(EXIT_MEMORY)
    except Exception as exc:
        from slm_eval.errors import UserError

        kind = "user" if isinstance(exc, UserError) else "internal"
        events.emit("error", kind=kind, message=f"{exc}" if kind == "user" else f"{type(exc).__name__}: {exc}")
        sys.exit(EXIT_USER_ERROR if kind == "user" else 1)


if __name__ == "__main__":
    main()
