"""Turn a run's records and its last session into ``summary.json``: every metric with unit and label.

Accuracy and robustness use the scored outputs of every session (a resumed run reuses finished
outputs); latency, memory, inference time and power use only the last session's measurements (a
resumed run never reuses old timings).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from slm_eval.backends.encoder_heads import UNTRAINED_HEAD_WARNING
from slm_eval.devices.fingerprint import host_fingerprint
from slm_eval.devices.projection import HostPerformance, project_to_profile
from slm_eval.evaluation.plan import CLEAN, RunSettings
from slm_eval.evaluation.runner import SessionResult
from slm_eval.evaluation.validity import check_validity
from slm_eval.metrics.energy import power_figures
from slm_eval.metrics.figures import Figure, FigureLabel
from slm_eval.metrics.quality import summarize_scores
from slm_eval.metrics.robustness import RobustnessResult
from slm_eval.metrics.timing import distribution
from slm_eval.models.registry import ModelCard
from slm_eval.results.records import SCHEMA_VERSION
from slm_eval.tasks.base import Example, Task

MIB = 1024 * 1024
Record = Mapping[str, Any]
# Said of every latency figure of a model behind a network API, so it is never taken for an on-device one.
REMOTE_WHERE = (
    "remote API: every time includes the network and the server's queue; not comparable with "
    "figures measured on a device"
)
NETWORK_METHOD = (
    "round trip: median of light HEAD requests to the endpoint at load (request headers written to response "
    "headers read, connection set-up excluded); per request: from sending the request to receiving the "
    "response headers (connection set-up when none is kept alive, TLS, upload, the server's queue before "
    "its headers), a part of end to end"
)
NOT_APPLICABLE_REMOTE = "not applicable: the model runs on a remote server, whose memory and energy are not seen here"


def latest_scored(records: Sequence[Record]) -> dict[tuple[str, str], Record]:
    """The last scored record of each (example, perturbation): one per question, whatever the sessions."""
    table: dict[tuple[str, str], Record] = {}
    for record in records:
        if record.get("kind") == "eval" and record.get("scores") is not None:
            table[(str(record["example_id"]), str(record["perturbation"]))] = record
    return table


def accuracy_metric(scored: Mapping[tuple[str, str], Record], settings: RunSettings) -> dict[str, Any]:
    """Mean of each score over the clean examples with a bootstrap confidence interval."""
    clean = [record for (_, variant), record in scored.items() if variant == CLEAN]
    if not clean:
        return {}
    names = list(clean[0]["scores"])
    result: dict[str, Any] = {}
    for name in names:
        summary = summarize_scores(
            [float(record["scores"][name]) for record in clean],
            confidence=settings.bootstrap_confidence,
            resamples=settings.bootstrap_resamples,
            seed=settings.seed,
        )
        result[name] = {**summary.to_dict(), "unit": "score (0-1)", "label": "measured"}
    return result


def robustness_metric(scored: Mapping[tuple[str, str], Record], settings: RunSettings) -> dict[str, Any]:
    """For each perturbation, the primary score on perturbed inputs against the same clean examples."""
    clean = {example: record for (example, variant), record in scored.items() if variant == CLEAN}
    if not clean:
        return {}
    primary = next(iter(next(iter(clean.values()))["scores"]))
    results: dict[str, Any] = {"rate": settings.robustness_rate, "score": primary, "perturbations": {}}
    for name in settings.perturbations:
        pairs = [
            (float(clean[example]["scores"][primary]), float(record["scores"][primary]))
            for (example, variant), record in scored.items()
            if variant == name and example in clean
        ]
        if not pairs:
            continue
        outcome = RobustnessResult(
            perturbation=name,
            rate=settings.robustness_rate,
            clean_score=sum(c for c, _ in pairs) / len(pairs),
            perturbed_score=sum(p for _, p in pairs) / len(pairs),
        )
        results["perturbations"][name] = {**outcome.to_dict(), "n": len(pairs), "label": "measured"}
    return results


def _timed(records: Sequence[Record], session: int) -> list[Record]:
    return [
        r
        for r in records
        if r.get("session") == session and r.get("kind") in ("eval", "timing") and r.get("perturbation") == CLEAN
    ]


def latency_metric(timed: Sequence[Record], label: FigureLabel = "measured") -> dict[str, Any]:
    """Distributions of TTFT, time per output token, end-to-end time and tokens/s, in ms and tokens/s."""
    series = {
        "time_to_first_token": ("ttft_ms", "ms"),
        "time_per_output_token": ("tpot_ms", "ms"),
        "end_to_end": ("e2e_ms", "ms"),
        "prompt_tokens_per_s": ("prompt_tps", "tokens/s"),
        "decode_tokens_per_s": ("decode_tps", "tokens/s"),
    }
    result: dict[str, Any] = {"requests": len(timed)}
    for name, (key, unit) in series.items():
        spread = distribution([float(r[key]) for r in timed if r.get(key) is not None])
        result[name] = spread.to_dict(unit, label) if spread is not None else None
    return result


def network_metric(
    timed: Sequence[Record], round_trip_s: float | None, label: FigureLabel = "measured"
) -> dict[str, Any]:
    """A network API's own latency: the round trip measured at load and each request's time to response headers.

    Args:
        timed: the timed records; their ``network_ms`` (send to response headers) is summarised.
        round_trip_s: the median round trip of the load-time probe, in seconds (``None`` when it failed).
        label: how the figures were obtained.
    """
    per_request = distribution([float(r["network_ms"]) for r in timed if r.get("network_ms") is not None])
    round_trip = None if round_trip_s is None else float(round_trip_s) * 1000
    return {
        "round_trip_p50": {**Figure(round_trip, "ms", label).to_dict(), "over_network": True},
        "per_request": {**per_request.to_dict("ms", label), "over_network": True} if per_request is not None else None,
        "method": NETWORK_METHOD,
    }


def corpus_metric(scored: Mapping[tuple[str, str], Record], task: Task, examples: Sequence[Example]) -> dict[str, Any]:
    """The task's corpus-level scores over the clean outputs, and how many outputs failed to parse."""
    by_id = {example.id: example for example in examples}
    clean = [r for (example_id, variant), r in scored.items() if variant == CLEAN and example_id in by_id]
    pairs = [(by_id[str(r["example_id"])], str(r["output"])) for r in clean]
    corpus = task.corpus_scores(pairs) if pairs else {}
    return {
        "corpus": {
            name: {"value": value, "unit": "score (0-1)", "label": "measured"} for name, value in corpus.items()
        },
        "parse_errors": sum(1 for r in clean if r.get("parse_error")),
    }


def summarize(
    settings: RunSettings,
    card: ModelCard,
    records: Sequence[Record],
    session: SessionResult,
    host_capacity: HostPerformanceSource | None = None,
    task: Task | None = None,
    examples: Sequence[Example] = (),
) -> dict[str, Any]:
    """The whole ``summary.json`` of a run after its latest session."""
    outcome = session.outcome
    summary: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": settings.run_id,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "name": card.name,
            "kind": card.kind,
            "format": card.source.format,
            "backend": session.loaded.get("backend", settings.backend),
            "parameters": session.loaded.get("parameters") or card.parameters,
            "load_time": Figure(session.loaded.get("load_s"), "s", "measured").to_dict(),
        },
        "task": {
            "name": settings.task,
            "dataset": settings.dataset,
            "limit": settings.limit,
            "seed": settings.seed,
            "prefix_cache": settings.prefix_cache,
        },
        "device": _device_section(settings, session),
        "fits": {"fits": session.fits, "reason": session.fits_reason or None},
        "sessions": session.session + 1,
        "host": host_fingerprint(),
        "config": settings.to_dict(),
        "metrics": {},
    }
    if session.loaded.get("encoder_task"):
        summary["model"]["encoder_task"] = session.loaded["encoder_task"]
        summary["model"]["head_trained"] = bool(session.loaded.get("head_trained"))
        if not summary["model"]["head_trained"]:
            summary["warnings"] = [UNTRAINED_HEAD_WARNING.format(task=session.loaded["encoder_task"], model=card.name)]
    metrics: dict[str, Any] = summary["metrics"]
    if "model_size" in settings.metrics:
        metrics["model_size"] = _model_size(session, summary["model"]["parameters"])
    if not session.fits or outcome is None:
        summary["validity"] = {"valid": False, "reasons": [session.fits_reason or "the model did not run"]}
        return summary

    scored = latest_scored(records)
    timed = _timed(records, session.session)
    summary["task"]["examples"] = len({example for example, variant in scored if variant == CLEAN})
    from slm_eval.evaluation.training_overlap import overlap_warning

    overlap = overlap_warning(card, (example for example, variant in scored if variant == CLEAN))
    if overlap is not None:
        summary.setdefault("warnings", []).append(overlap)
    validity = check_validity(
        settings.validity,
        [float(r["e2e_ms"]) / 1000 for r in timed if r.get("e2e_ms") is not None],
        [float(r["tpot_ms"]) / 1000 for r in timed if r.get("tpot_ms") is not None],
    )
    summary["validity"] = validity.to_dict()
    # The fake backend's timings are set by its script, not read from a clock.
    timing_label: FigureLabel = "scripted" if summary["model"]["backend"] == "fake" else "measured"
    if "accuracy" in settings.metrics:
        metrics["accuracy"] = accuracy_metric(scored, settings)
        if task is not None:
            summary["task"].update(corpus_metric(scored, task, examples))
            summary["task"]["primary_score"] = task.metric_names[0]
    if "latency" in settings.metrics:
        metrics["latency"] = latency_metric(timed, timing_label)
        if session.loaded.get("local") is False:
            for figure in metrics["latency"].values():
                if isinstance(figure, dict):
                    figure["over_network"] = True
            metrics["latency"]["where"] = REMOTE_WHERE
            metrics["latency"]["network"] = network_metric(timed, session.loaded.get("network_rtt_s"), timing_label)
        if host_capacity is not None:
            metrics["latency"]["projection"] = _projection(settings, session, timed, host_capacity)
    if "memory" in settings.metrics:
        metrics["memory"] = _memory(session)
    if "inference_time" in settings.metrics:
        metrics["inference_time"] = _inference_time(records, session.session, timing_label)
    if "power" in settings.metrics:
        metrics["power"] = _power(settings, session, timed)
    if "robustness" in settings.metrics:
        metrics["robustness"] = robustness_metric(scored, settings)
    if session.loaded.get("local") is False:
        metrics["not_applicable"] = {"memory": NOT_APPLICABLE_REMOTE, "power": NOT_APPLICABLE_REMOTE}
        if "inference_time" in metrics:
            metrics["inference_time"]["where"] = REMOTE_WHERE
    return summary


class HostPerformanceSource:
    """This machine's memory bandwidth and peak compute, measured once and reused."""

    def __init__(self, bandwidth_gbs: float, peak_gflops: float) -> None:
        self.bandwidth_gbs = bandwidth_gbs
        self.peak_gflops = peak_gflops

    @classmethod
    def measure(cls) -> HostPerformanceSource:
        """Measure both with numpy (about a second)."""
        from slm_eval.devices.host_capacity import measure_memory_bandwidth_gbs, measure_peak_gflops

        bandwidth = measure_memory_bandwidth_gbs().value
        gflops = measure_peak_gflops().value
        return cls(float(bandwidth or 0), float(gflops or 0))


def _device_section(settings: RunSettings, session: SessionResult) -> dict[str, Any]:
    outcome = session.outcome
    section: dict[str, Any] = {"profile": settings.device.model_dump(mode="json")}
    if outcome is None:
        section["sandbox"] = None
        return section
    section.update(
        {
            "sandbox": outcome.sandbox,
            "sandbox_note": session.sandbox_note,
            "memory_enforcement": outcome.memory_enforcement,
            "limits": {
                "cpus": list(outcome.limits.cpus) if outcome.limits.cpus else None,
                "memory_bytes": outcome.limits.memory_bytes,
                "threads": outcome.limits.threads,
                "note": outcome.limits.note or None,
            },
            "read_back_in_worker": outcome.read_back,
            "memory_limit_hit": outcome.hit_memory_limit,
        }
    )
    return section


def _model_size(session: SessionResult, parameters: int | None) -> dict[str, Any]:
    size = session.weights_bytes
    return {
        "on_disk": Figure(None if size is None else size / MIB, "MiB", "measured").to_dict(),
        "on_disk_bytes": size,
        "parameters": parameters,
    }


def _memory(session: SessionResult) -> dict[str, Any]:
    outcome = session.outcome
    assert outcome is not None
    loaded = session.loaded
    load_delta = None
    if loaded.get("rss_after") is not None and loaded.get("rss_before") is not None:
        load_delta = (int(loaded["rss_after"]) - int(loaded["rss_before"])) / MIB
    return {
        "peak_rss_kernel": Figure(_mib(outcome.peak_rss_bytes), "MiB", "measured").to_dict(),
        "peak_rss_sampled": Figure(_mib(outcome.sampled_peak_rss_bytes), "MiB", "measured").to_dict(),
        "load_memory": Figure(load_delta, "MiB", "measured").to_dict(),
        "rss_after_load": Figure(_mib(loaded.get("rss_after")), "MiB", "measured").to_dict(),
        "samples": len(outcome.memory_samples),
        "wait4_maxrss": Figure(_mib(outcome.wait4_maxrss_bytes), "MiB", "measured").to_dict(),
        "method": f"kernel peak: {outcome.peak_rss_source}; sampled: psutil from the parent",
    }


def _mib(value: object) -> float | None:
    return None if value is None else int(value) / MIB  # type: ignore[call-overload]


def _inference_time(records: Sequence[Record], session: int, label: FigureLabel) -> dict[str, Any]:
    clean = [
        r for r in records if r.get("session") == session and r.get("kind") == "eval" and r.get("perturbation") == CLEAN
    ]
    per_example = distribution([float(r["e2e_ms"]) for r in clean if r.get("e2e_ms") is not None])
    total = sum(float(r["e2e_ms"]) for r in clean if r.get("e2e_ms") is not None) / 1000
    return {
        "task_total": Figure(total, "s", label).to_dict(),
        "examples": len(clean),
        "per_example": per_example.to_dict("ms", label) if per_example is not None else None,
    }


def _power(settings: RunSettings, session: SessionResult, timed: Sequence[Record]) -> dict[str, Any]:
    outcome = session.outcome
    assert outcome is not None
    requests = max(1, len(timed))
    wall = sum(float(r["e2e_ms"]) for r in timed if r.get("e2e_ms") is not None) / 1000
    cpu = sum(float(r["cpu_s"]) for r in timed if r.get("cpu_s") is not None)
    on_host = settings.device.name == "host"
    measured = None
    if on_host and session.measured_joules is not None and session.energy_wall_s:
        # The counter covers the whole worker session; scale it to the timed requests' share of the wall time.
        measured = session.measured_joules * min(1.0, wall / session.energy_wall_s)
    figures = power_figures(
        measured_joules=measured,
        cpu_seconds=cpu,
        wall_seconds=wall,
        requests=requests,
        power=settings.device.power,
        cores=outcome.limits.threads,
    )
    method = (
        "RAPL/NVML energy counter"
        if measured is not None
        else "estimated from CPU time and the profile's power model (idle + (active - idle) x utilisation)"
        if settings.device.power is not None
        else "not available: no energy counter is readable and the profile has no power model"
    )
    return {**{name: figure.to_dict() for name, figure in figures.items()}, "method": method, "cpu_s": cpu}


def _projection(
    settings: RunSettings, session: SessionResult, timed: Sequence[Record], host: HostPerformanceSource
) -> dict[str, Any] | None:
    decode = distribution([float(r["decode_tps"]) for r in timed if r.get("decode_tps")])
    prompt = distribution([float(r["prompt_tps"]) for r in timed if r.get("prompt_tps")])
    parameters = session.loaded.get("parameters")
    if decode is None or prompt is None or not session.weights_bytes or not parameters:
        return None
    if host.bandwidth_gbs <= 0 or host.peak_gflops <= 0:
        return None
    prompt_tokens = round(sum(int(r["prompt_tokens"]) for r in timed) / len(timed))
    output_tokens = round(sum(int(r["output_tokens"]) for r in timed) / len(timed))
    performance = HostPerformance(decode.p50, prompt.p50, host.bandwidth_gbs, host.peak_gflops)
    projection = project_to_profile(
        performance,
        settings.device,
        model_bytes=session.weights_bytes,
        parameters=float(parameters),
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
    )
    return {
        **projection.to_dict(),
        "host_memory_bandwidth": Figure(host.bandwidth_gbs, "GB/s", "measured").to_dict(),
        "host_peak_compute": Figure(host.peak_gflops, "GFLOPS", "measured").to_dict(),
    }
