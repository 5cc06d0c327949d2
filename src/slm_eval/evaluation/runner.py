"""The one wiring point of an evaluation: card -> worker with limits -> records -> summary -> report.

Example:
    slm-eval evaluate --model smollm2-135m-instruct --device docker-sim --metrics accuracy latency --limit 20
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from slm_eval.backends.catalogue import choose_backend
from slm_eval.devices.cpus import usable_cpus
from slm_eval.devices.docker_sandbox import choose_docker, docker_command
from slm_eval.devices.sandbox import SandboxLimits, WorkerOutcome, WorkerProcess, limits_for
from slm_eval.errors import UserError
from slm_eval.evaluation.plan import CLEAN, RequestSpec, RunSettings, build_requests
from slm_eval.logs import get_logger
from slm_eval.metrics.energy import EnergyReader
from slm_eval.metrics.robustness import perturb_example
from slm_eval.models.registry import ModelCard
from slm_eval.results.records import SCHEMA_VERSION, RecordWriter, RunPaths, read_records, write_json
from slm_eval.tasks.base import Example, Task

log = get_logger(__name__)
ProgressCallback = Callable[[int, int], None]


@dataclass
class RunContext:
    """What the runner needs from outside: paths, the energy counter, the worker's Python, progress."""

    paths: RunPaths
    cache_dir: Path
    energy_reader: EnergyReader | None = None
    python: str | None = None
    on_progress: ProgressCallback | None = None
    use_cgroup: bool = True
    allow_docker: bool = True
    sample_interval_s: float = 0.05


@dataclass
class SessionResult:
    """What one session of a run produced, beside its records."""

    session: int
    outcome: WorkerOutcome | None
    loaded: dict[str, Any] = field(default_factory=dict)
    measured_joules: float | None = None
    energy_wall_s: float | None = None
    fits: bool = True
    fits_reason: str = ""
    weights_bytes: int | None = None
    sandbox_note: str = ""


def weights_size_bytes(path: Path | None) -> int | None:
    """Bytes on disk of everything the model needs: a file, or every file under a folder."""
    if path is None or not path.exists():
        return None
    if path.is_file():
        return path.stat().st_size
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def perturbed_examples(settings: RunSettings, examples: Sequence[Example]) -> dict[str, list[Example]]:
    """Each perturbation applied to every example (deterministic for the run's seed)."""
    if "robustness" not in settings.metrics:
        return {}
    return {
        name: [perturb_example(example, name, settings.robustness_rate, settings.seed) for example in examples]
        for name in settings.perturbations
    }


def previous_sessions(paths: RunPaths) -> tuple[set[str], int]:
    """Keys of finished scored outputs, and the next session number."""
    finished: set[str] = set()
    last_session = -1
    for record in read_records(paths.records):
        last_session = max(last_session, int(record.get("session", 0)))
        if record.get("kind") == "eval" and record.get("output") is not None:
            finished.add(str(record["key"]))
    return finished, last_session + 1


def run_session(
    settings: RunSettings,
    card: ModelCard,
    task: Task,
    examples: Sequence[Example],
    context: RunContext,
) -> SessionResult:
    """Run what is left of an evaluation in one worker, appending a record per request.

    Raises:
        UserError: the worker failed for a reason the user can fix (a corrupt file, a missing package).
    """
    paths = context.paths
    if not paths.run_file.exists():
        write_json(paths.run_file, settings.to_dict())
    finished, session = previous_sessions(paths)
    entry = choose_backend(card, settings.backend)
    location = card.source.locate(context.cache_dir) if entry.needs_weights else None
    result = SessionResult(session=session, outcome=None, weights_bytes=weights_size_bytes(location))
    memory_mib = settings.device.memory_mib
    if memory_mib is not None and result.weights_bytes is not None and result.weights_bytes > memory_mib * 1024 * 1024:
        result.fits = False
        result.fits_reason = (
            f"the weights alone take {result.weights_bytes / 2**20:.0f} MiB, more than the "
            f"{memory_mib} MiB of {settings.device.name}"
        )
        return result

    perturbed = perturbed_examples(settings, examples)
    by_key = _examples_by_key(examples, perturbed)
    requests = build_requests(settings, task, examples, finished, perturbed)
    limits = limits_for(settings.device.cores, memory_mib, usable_cpus())
    if settings.threads is not None:
        limits = SandboxLimits(limits.cpus, limits.memory_bytes, settings.threads, limits.note)
    job = {
        "model": card.name,
        "backend": entry.name,
        "cache_dir": str(context.cache_dir),
        "models_dir": settings.models_dir,
        "load": {
            "threads": limits.threads,
            "context_length": settings.context_length,
            "seed": settings.seed,
            "prefix_cache": settings.prefix_cache,
            "dtype": settings.dtype,
            "trust_remote_code": settings.trust_remote_code,
            "encoder_task": settings.encoder_task,
        },
        "requests": [_job_request(r, settings.max_new_tokens) for r in requests],
    }
    if "latency" in settings.metrics and entry.name != "fake":  # scripted timings need no more samples
        job["top_up"] = _top_up_plan(settings, requests)
    specs = {r.key: r for r in requests}
    pool = {r.example_id: r for r in requests if r.kind != "warmup" and r.perturbation == CLEAN}
    docker = choose_docker(settings.device.name) if context.allow_docker else None
    result.sandbox_note = docker.reason if docker else "limits applied to a local worker process"
    container = None
    if docker is not None and docker.use_docker:
        # Packaged weights live in the image; a local model or the cache is mounted at the same path.
        mounts = [context.cache_dir]
        if location is not None and not location.resolve().is_relative_to(Path(sys.prefix).resolve()):
            mounts.append(location)
        container = docker_command(limits, docker.image, [m for m in mounts if m.exists()])
    worker = WorkerProcess(
        limits,
        python=context.python or _python(),
        stderr_path=paths.root / "worker.log",
        sample_interval_s=context.sample_interval_s,
        use_cgroup=context.use_cgroup,
        container_command=container,
    )
    energy_start: tuple[float, float] | None = None
    done = 0
    with RecordWriter(paths.records) as writer:

        def on_event(event: dict[str, Any]) -> None:
            nonlocal energy_start, done
            kind = event["event"]
            if kind == "loaded":
                result.loaded = {k: v for k, v in event.items() if k != "event"}
                energy_start = _read_energy(context.energy_reader)
            elif kind == "result":
                spec = specs.get(event["key"]) or _top_up_spec(str(event["key"]), pool)
                writer.append(_record(settings, session, spec, event, task, by_key))
                done += 1
                if context.on_progress is not None:
                    context.on_progress(done, len(requests))
            elif kind == "done" and energy_start is not None:
                energy_end = _read_energy(context.energy_reader)
                if energy_end is not None:
                    result.measured_joules = energy_end[0] - energy_start[0]
                    result.energy_wall_s = energy_end[1] - energy_start[1]

        outcome = worker.run(job, on_event)
    result.outcome = outcome
    _append_memory_samples(paths, session, outcome)
    if outcome.out_of_memory:
        result.fits = False
        limit = f"{memory_mib} MiB" if memory_mib is not None else "the host's memory"
        result.fits_reason = f"the worker ran out of memory under the limit of {limit} ({outcome.memory_enforcement})"
        return result
    if outcome.error is not None:
        message = str(outcome.error.get("message", "the worker failed"))
        if outcome.error.get("kind") == "user":
            raise UserError(message)
        raise RuntimeError(f"the evaluation worker failed: {message} (see {paths.root / 'worker.log'})")
    if outcome.exit_code != 0:
        reason = f"signal {outcome.signal}" if outcome.signal else f"exit code {outcome.exit_code}"
        raise RuntimeError(f"the evaluation worker stopped with {reason} (see {paths.root / 'worker.log'})")
    return result


TOP_UP_POOL = 50


def _top_up_plan(settings: RunSettings, requests: Sequence[RequestSpec]) -> dict[str, Any]:
    """What the worker repeats, untimed by score, when the timed requests end before the minimum duration."""
    clean = [r for r in requests if r.kind != "warmup" and r.perturbation == CLEAN][:TOP_UP_POOL]
    return {
        "min_seconds": settings.validity.min_duration_s,
        "max_requests": max(settings.validity.min_requests, 10_000),
        "pool": [{**_job_request(r, settings.max_new_tokens), "example_id": r.example_id} for r in clean],
    }


def _top_up_spec(key: str, pool: Mapping[str, RequestSpec]) -> RequestSpec:
    """The spec of a timing request the worker added (``timing|<example id>|top<n>``)."""
    kind, example_id, _ = key.split("|", 2)
    base = pool.get(example_id)
    if kind != "timing" or base is None:
        raise RuntimeError(f"the worker answered a request it was not given: {key}")
    return RequestSpec(key, "timing", example_id, CLEAN, base.prompt, base.context)


def _job_request(spec: RequestSpec, max_new_tokens: int) -> dict[str, Any]:
    item: dict[str, Any] = {"key": spec.key, "prompt": spec.prompt, "max_new_tokens": max_new_tokens}
    if spec.context is not None:
        item["context"] = spec.context
    return item


def _record(
    settings: RunSettings,
    session: int,
    spec: RequestSpec,
    event: Mapping[str, Any],
    task: Task,
    by_key: Mapping[tuple[str, str], Example],
) -> dict[str, Any]:
    scores = None
    parse_error = None
    if spec.kind == "eval":
        example = by_key[(spec.example_id, spec.perturbation)]
        scores = task.score(example, str(event["text"]))
        parse_error = task.parse_error(example, str(event["text"]))
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": settings.run_id,
        "session": session,
        "kind": spec.kind,
        "key": spec.key,
        "example_id": spec.example_id,
        "perturbation": spec.perturbation,
        "prompt": spec.prompt,
        "output": event["text"],
        "scores": scores,
        "parse_error": parse_error,
        "prompt_tokens": event["prompt_tokens"],
        "output_tokens": event["output_tokens"],
        "finish_reason": event["finish_reason"],
        "ttft_ms": _ms(event.get("ttft_s")),
        "tpot_ms": _ms(event.get("tpot_s")),
        "e2e_ms": _ms(event.get("e2e_s")),
        "prompt_tps": event.get("prompt_tps"),
        "decode_tps": event.get("decode_tps"),
        "cpu_s": event.get("cpu_s"),
        **({"confidence": event["confidence"]} if "confidence" in event else {}),
        # A network API's send-to-response-headers time, part of e2e_ms, kept apart from the model's time.
        **({"network_ms": _ms(event["network_s"])} if event.get("network_s") is not None else {}),
        "recorded_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
    }


def _ms(seconds: object) -> float | None:
    return None if seconds is None else float(seconds) * 1000  # type: ignore[arg-type]


def _examples_by_key(
    examples: Sequence[Example], perturbed: Mapping[str, Sequence[Example]]
) -> dict[tuple[str, str], Example]:
    table = {(example.id, CLEAN): example for example in examples}
    for name, variants in perturbed.items():
        table.update({(example.id, name): example for example in variants})
    return table


def _append_memory_samples(paths: RunPaths, session: int, outcome: WorkerOutcome) -> None:
    with RecordWriter(paths.memory) as writer:
        for seconds, rss in outcome.memory_samples:
            writer.append({"session": session, "t_s": round(seconds, 4), "rss_bytes": rss})


def _read_energy(reader: EnergyReader | None) -> tuple[float, float] | None:
    if reader is None:
        return None
    joules = reader.read_joules()
    return None if joules is None else (joules, time.perf_counter())


def _python() -> str:
    return sys.executable
