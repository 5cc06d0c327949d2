"""The accuracy gate: a quantized variant and its parent, evaluated on the same examples, side by side.

A decoder runs the border-control suite (every use case, ``limit`` examples each, the benchmark's
weighted overall score); an encoder, or any model given ``--dataset``, runs one evaluation on that task
(extractive QA on border-qa by default for encoders). Both models see the same examples, chosen by the
same seed, on the ``host`` profile, and each run also measures latency and peak memory, so the
trade-off report reads speed and memory from the very runs that gave the scores.

The gate passes when the variant keeps at least ``threshold`` of its parent's score (MLPerf holds
quantized submissions to 99% of the reference). A parent scoring zero leaves the ratio undefined: the
gate is then ``not applicable`` and says so.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slm_eval.devices.profiles import EvaluationConfig
from slm_eval.logs import get_logger
from slm_eval.models.registry import ModelCard
from slm_eval.results.records import RunPaths, read_json, safe_name

log = get_logger(__name__)

GATE_METRICS = ("accuracy", "latency", "memory", "model_size")
DEFAULT_THRESHOLD = 0.99
DEFAULT_LIMIT = 10


@dataclass(frozen=True)
class GateScore:
    """One model's side of the gate.

    Attributes:
        model: the model or variant name.
        score: the overall score (0..1): the suite's weighted mean, or the task's primary score.
        per_task: each task's primary score.
        examples: scored examples in all.
        decode_tokens_per_s: median decode speed over the runs (decoders), measured.
        latency_ms: median end-to-end latency per request over the runs, measured.
        peak_memory_mib: the highest peak resident memory of the runs, measured.
        size_mib: the weights' size on disk, measured.
        runs: the run folders, relative to the gate's folder.
    """

    model: str
    score: float | None
    per_task: Mapping[str, float | None]
    examples: int
    decode_tokens_per_s: float | None
    latency_ms: float | None
    peak_memory_mib: float | None
    size_mib: float | None
    runs: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, every figure with its unit and label."""
        return {
            "model": self.model,
            "score": {"value": self.score, "unit": "score (0-1)", "label": "measured"},
            "per_task": dict(self.per_task),
            "examples": self.examples,
            "decode_tokens_per_s": {"value": self.decode_tokens_per_s, "unit": "tokens/s", "label": "measured"},
            "latency_p50": {"value": self.latency_ms, "unit": "ms", "label": "measured"},
            "peak_memory": {"value": self.peak_memory_mib, "unit": "MiB", "label": "measured"},
            "size": {"value": self.size_mib, "unit": "MiB", "label": "measured"},
            "runs": list(self.runs),
        }


@dataclass(frozen=True)
class GateOutcome:
    """The verdict: the variant's score relative to its parent's, against the threshold."""

    parent: GateScore
    variant: GateScore
    threshold: float
    folder: Path

    @property
    def relative(self) -> float | None:
        """The variant's score over the parent's, or ``None`` when the parent scored zero."""
        if self.parent.score is None or self.variant.score is None or self.parent.score <= 0:
            return None
        return self.variant.score / self.parent.score

    @property
    def status(self) -> str:
        """``passed``, ``failed`` or ``not applicable``."""
        relative = self.relative
        if relative is None:
            return "not applicable"
        return "passed" if relative >= self.threshold else "failed"

    @property
    def reason(self) -> str:
        """One line saying why."""
        relative = self.relative
        if relative is None:
            return "the parent scored 0 on these examples, so the relative score is undefined"
        verb = "keeps" if relative >= self.threshold else "keeps only"
        return f"the variant {verb} {relative:.1%} of its parent's score (at least {self.threshold:.0%} required)"

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``gate`` section."""
        return {
            "status": self.status,
            "passed": self.status == "passed",
            "relative": {"value": self.relative, "unit": "ratio", "label": "measured"},
            "threshold": self.threshold,
            "reason": self.reason,
            "parent": self.parent.to_dict(),
            "variant": self.variant.to_dict(),
            "folder": str(self.folder),
        }


def run_gate(
    parent: ModelCard,
    variant: ModelCard,
    *,
    folder: Path,
    config: EvaluationConfig,
    cache_dir: Path,
    models_dir: Path,
    dataset: str | None = None,
    limit: int = DEFAULT_LIMIT,
    seed: int = 0,
    threshold: float = DEFAULT_THRESHOLD,
    on_step: Callable[[str], None] | None = None,
) -> GateOutcome:
    """Evaluate ``parent`` and ``variant`` on the same examples and compare their scores.

    ``folder`` holds one sub-folder per model; a model whose runs there are finished is not run again,
    so the parent is evaluated once for every variant gated on the same examples.

    Raises:
        UserError: the dataset is unknown, or a model cannot run (its one-line reason).
    """
    step = on_step or (lambda message: log.info("%s", message))
    scores = []
    for card in (parent, variant):
        root = folder / safe_name(card.name, keep="-._")
        if dataset is None and parent.kind == "decoder":
            step(f"accuracy gate: {card.name} on the border-control suite, {limit} examples per use case")
            scores.append(_suite(card, root, config, cache_dir, models_dir, limit, seed))
        else:
            step(f"accuracy gate: {card.name} on {dataset or 'border-qa'}, {limit} examples")
            scores.append(_single(card, dataset or "border-qa", root, config, cache_dir, models_dir, limit, seed))
    return GateOutcome(scores[0], scores[1], threshold, folder)


def _suite(
    card: ModelCard,
    root: Path,
    config: EvaluationConfig,
    cache_dir: Path,
    models_dir: Path,
    limit: int,
    seed: int,
) -> GateScore:
    from slm_eval.evaluation.benchmark import BenchmarkRequest, plan_benchmark, run_cells, summarize_benchmark

    request = BenchmarkRequest(
        models=(card.name,),
        devices=("host",),
        use_cases=None,
        limit=limit,
        seed=seed,
        robustness=False,
        threads=None,
        context_length=2048,
        models_dir=models_dir,
    )
    benchmark_id, cells = plan_benchmark(request, config)
    root.mkdir(parents=True, exist_ok=True)
    run_cells(root, cells, cache_dir)  # cells finished by an earlier gate are skipped
    (entry,) = summarize_benchmark(benchmark_id, root, cells, config.benchmark)["results"]
    overall = entry.get("overall") or {}
    runs = [cell.folder(root) for cell in cells]
    return _score(
        card.name,
        overall.get("mean"),
        {u["use_case"]: u["mean"] for u in entry["use_cases"]},
        sum(int(u["n"]) for u in entry["use_cases"]),
        [read_json(RunPaths(run).summary) for run in runs],
        [str(run.relative_to(root.parent)) for run in runs],
    )


def _single(
    card: ModelCard,
    dataset: str,
    root: Path,
    config: EvaluationConfig,
    cache_dir: Path,
    models_dir: Path,
    limit: int,
    seed: int,
) -> GateScore:
    from slm_eval.evaluation.evaluate import EvaluateRequest, execute, plan_run

    paths = RunPaths(root)
    if paths.summary.exists():
        summary = read_json(paths.summary)
    else:
        request = EvaluateRequest(
            model=card.name,
            device="host",
            metrics=GATE_METRICS,
            dataset=dataset,
            limit=limit,
            seed=seed,
            max_new_tokens=64,
            threads=None,
            context_length=2048 if card.kind == "decoder" else 512,
            backend=None,
            models_dir=models_dir,
        )
        settings, resolved = plan_run(request, config)
        root.mkdir(parents=True, exist_ok=True)
        summary = execute(settings, resolved, paths, cache_dir, measure_host=False, write_report=False).summary
    primary = str(summary.get("task", {}).get("primary_score") or "")
    accuracy = summary.get("metrics", {}).get("accuracy", {}).get(primary, {})
    score = accuracy.get("mean")
    task = str(summary.get("task", {}).get("name"))
    return _score(card.name, score, {task: score}, int(accuracy.get("n") or 0), [summary], [root.name])


def _score(
    model: str,
    score: float | None,
    per_task: Mapping[str, float | None],
    examples: int,
    summaries: Sequence[Mapping[str, Any]],
    runs: Sequence[str],
) -> GateScore:
    decode = [_p50(s, "decode_tokens_per_s") for s in summaries]
    latency = [_p50(s, "end_to_end") for s in summaries]
    peaks = [_value(s.get("metrics", {}).get("memory", {}).get("peak_rss_kernel")) for s in summaries]
    sizes = [_value(s.get("metrics", {}).get("model_size", {}).get("on_disk")) for s in summaries]
    return GateScore(
        model=model,
        score=None if score is None else float(score),
        per_task=dict(per_task),
        examples=examples,
        decode_tokens_per_s=_median(decode),
        latency_ms=_median(latency),
        peak_memory_mib=max((p for p in peaks if p is not None), default=None),
        size_mib=next((s for s in sizes if s is not None), None),
        runs=tuple(runs),
    )


def _p50(summary: Mapping[str, Any], name: str) -> float | None:
    figure = summary.get("metrics", {}).get("latency", {}).get(name) or {}
    value = figure.get("p50")
    return None if value is None else float(value)


def _value(figure: Any) -> float | None:
    if not isinstance(figure, Mapping) or figure.get("value") is None:
        return None
    return float(figure["value"])


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None
