"""The border-control benchmark: every use case for every model on every device, scored and decided.

Each (model, device, use case) is one evaluation run of the engine, in
``results/<benchmark-id>/<model>/<device>/<use-case>/``; the benchmark adds the overall score, the
verdict per device and one comparison report. A benchmark stopped part-way continues with
``--resume``: finished cells are kept, an interrupted one resumes from its records.

Example:
    slm-eval benchmark --model smollm2-135m-instruct --model gemma-3-270m --device docker-sim --limit 10
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slm_eval.devices.profiles import EvaluationConfig, get_profile
from slm_eval.errors import UserError
from slm_eval.evaluation.benchmark_settings import BenchmarkSettings
from slm_eval.evaluation.evaluate import execute
from slm_eval.evaluation.plan import LOCAL_ONLY_METRICS, RunSettings, select_metrics
from slm_eval.evaluation.summary import HostPerformanceSource, latest_scored
from slm_eval.evaluation.verdict import UseCaseResult, decide, latency_p90_for_device, overall_score
from slm_eval.models.catalogue import default_registry
from slm_eval.results.records import RunPaths, new_run_id, read_json, read_records, safe_name, write_json
from slm_eval.tasks.catalogue import check_use_cases, load_use_case

PLAN_FILE = "benchmark-plan.json"
SUMMARY_FILE = "benchmark.json"
BENCHMARK_METRICS = ["accuracy", "latency", "memory", "model_size", "inference_time", "power"]
CellProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BenchmarkRequest:
    """What the user asked for."""

    models: tuple[str, ...]
    devices: tuple[str, ...]
    use_cases: tuple[str, ...] | None
    limit: int | None
    seed: int
    robustness: bool
    threads: int | None
    context_length: int
    backend: str | None = None
    prefix_cache: bool = True
    models_dir: Path | None = None


@dataclass(frozen=True)
class Cell:
    """One evaluation run of the benchmark."""

    model: str
    device: str
    use_case: str
    settings: RunSettings

    def folder(self, root: Path) -> Path:
        return root / safe_name(self.model, keep="-._") / self.device / self.use_case


def plan_benchmark(request: BenchmarkRequest, config: EvaluationConfig) -> tuple[str, list[Cell]]:
    """Validate the request and lay out every cell.

    Raises:
        UserError: an unknown model, device or use case, or a bad limit.
    """
    if request.limit is not None and request.limit < 1:
        raise UserError(f"--limit must be at least 1 (got {request.limit}); leave it out to use every example")
    registry = default_registry()
    # Aliases of one model (smollm2, smollm2-135m-instruct) and repeated devices collapse to one each.
    cards = list(
        {card.name: card for card in (registry.resolve(model, request.models_dir) for model in request.models)}.values()
    )
    encoders = [card.name for card in cards if card.kind == "encoder"]
    if encoders:
        raise UserError(
            f"{encoders[0]} is an encoder: the use cases need generated text; run it with "
            "'slm-eval evaluate' on extractive QA instead"
        )
    profiles = list({p.name: p for p in (get_profile(config, device) for device in request.devices)}.values())
    use_cases = check_use_cases(list(request.use_cases or []))
    tasks = {name: load_use_case(name) for name in use_cases}
    benchmark_id = new_run_id("benchmark")
    cells = []
    for card in cards:
        wanted = [*BENCHMARK_METRICS, *(["robustness"] if request.robustness else [])]
        applicable = [m for m in wanted if not (card.kind == "api" and m in LOCAL_ONLY_METRICS)]
        metrics = select_metrics(applicable, card, config.metrics)
        for profile in profiles:
            for name in use_cases:
                settings = RunSettings(
                    run_id=f"{benchmark_id}/{card.name}/{profile.name}/{name}",
                    model=card.name,
                    backend=request.backend,
                    dataset=name,
                    task=name,
                    limit=request.limit,
                    seed=request.seed,
                    metrics=metrics,
                    device=profile,
                    max_new_tokens=tasks[name].max_new_tokens,
                    threads=request.threads,
                    context_length=request.context_length,
                    validity=config.validity,
                    robustness_rate=config.robustness.rate,
                    perturbations=tuple(config.robustness.perturbations),
                    bootstrap_confidence=config.bootstrap.confidence,
                    bootstrap_resamples=config.bootstrap.resamples,
                    prefix_cache=request.prefix_cache,
                    models_dir=None if request.models_dir is None else str(request.models_dir.resolve()),
                )
                cells.append(Cell(card.name, profile.name, name, settings))
    return benchmark_id, cells


def save_plan(root: Path, cells: Sequence[Cell], config: EvaluationConfig) -> None:
    """Write the plan first, so an interrupted benchmark can be resumed."""
    write_json(
        root / PLAN_FILE,
        {
            "cells": [
                {"model": c.model, "device": c.device, "use_case": c.use_case, "settings": c.settings.to_dict()}
                for c in cells
            ],
            "benchmark": config.benchmark.model_dump(mode="json"),
        },
    )


def load_plan(root: Path) -> tuple[list[Cell], BenchmarkSettings]:
    """The cells and benchmark settings of an earlier benchmark in ``root``.

    Raises:
        UserError: ``root`` holds no benchmark plan.
    """
    if not (root / PLAN_FILE).is_file():
        raise UserError(f"{root} is not a benchmark folder: it has no {PLAN_FILE}")
    data = read_json(root / PLAN_FILE)
    cells = [Cell(c["model"], c["device"], c["use_case"], RunSettings.from_dict(c["settings"])) for c in data["cells"]]
    return cells, BenchmarkSettings.model_validate(data["benchmark"])


def run_cells(
    root: Path,
    cells: Sequence[Cell],
    cache_dir: Path,
    on_cell: CellProgress | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    host: HostPerformanceSource | None = None,
) -> None:
    """Run every cell that has no summary yet (an interrupted one resumes from its records)."""
    registry = default_registry()
    measured_host = host
    for index, cell in enumerate(cells):
        paths = RunPaths(cell.folder(root))
        if on_cell is not None:
            on_cell(f"{cell.model} · {cell.device} · {cell.use_case}", index, len(cells))
        if paths.summary.exists():
            continue
        if measured_host is None and "latency" in cell.settings.metrics:
            measured_host = HostPerformanceSource.measure()
        execute(
            cell.settings,
            registry.resolve(cell.model, None if cell.settings.models_dir is None else Path(cell.settings.models_dir)),
            paths,
            cache_dir,
            on_progress=on_progress,
            write_report=False,
            host_capacity=measured_host,
        )


def use_case_result(cell: Cell, paths: RunPaths) -> UseCaseResult:
    """The figures of one finished cell that the verdict needs, read from its summary and records."""
    summary = read_json(paths.summary)
    task = summary.get("task", {})
    primary = str(task.get("primary_score") or "")
    scored = latest_scored(list(read_records(paths.records)))
    scores = tuple(
        float(record["scores"][primary])
        for (_, variant), record in scored.items()
        if variant == "clean" and primary in (record.get("scores") or {})
    )
    corpus = {
        name: float(figure["value"])
        for name, figure in task.get("corpus", {}).items()
        if figure.get("value") is not None
    }
    latency, label = latency_p90_for_device(summary, cell.device)
    fits = summary.get("fits", {})
    return UseCaseResult(
        use_case=cell.use_case,
        primary=primary,
        scores=scores,
        corpus=corpus,
        fits=bool(fits.get("fits", False)),
        fits_reason=fits.get("reason"),
        latency_p90_ms=latency,
        latency_label=label,
        valid=bool(summary.get("validity", {}).get("valid", False)),
    )


def summarize_benchmark(
    benchmark_id: str, root: Path, cells: Sequence[Cell], requirements: BenchmarkSettings
) -> dict[str, Any]:
    """``benchmark.json``: per model and device, the use cases' figures, the overall score and the verdict."""
    groups: dict[tuple[str, str], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.model, cell.device), []).append(cell)
    entries = []
    for (model, device), members in groups.items():
        results = [use_case_result(cell, RunPaths(cell.folder(root))) for cell in members]
        first = members[0].settings
        overall = overall_score(
            results, requirements, first.bootstrap_confidence, first.bootstrap_resamples, first.seed
        )
        verdict = decide(results, overall, requirements)
        entries.append(
            {
                "model": model,
                "device": device,
                "overall": overall.to_dict() if overall is not None else None,
                "verdict": verdict.to_dict(),
                "use_cases": [
                    {**_result_dict(result), "run": str(cell.folder(root).relative_to(root))}
                    for cell, result in zip(members, results, strict=True)
                ],
            }
        )
    return {
        "benchmark_id": benchmark_id,
        "models": list(dict.fromkeys(c.model for c in cells)),
        "devices": list(dict.fromkeys(c.device for c in cells)),
        "use_cases": list(dict.fromkeys(c.use_case for c in cells)),
        "limit": cells[0].settings.limit if cells else None,
        "seed": cells[0].settings.seed if cells else None,
        "prefix_cache": cells[0].settings.prefix_cache if cells else None,
        "requirements": requirements.model_dump(mode="json"),
        "results": entries,
    }


def _result_dict(result: UseCaseResult) -> dict[str, Any]:
    return {
        "use_case": result.use_case,
        "primary_score": result.primary,
        "mean": result.mean,
        "n": len(result.scores),
        "corpus": dict(result.corpus),
        "fits": result.fits,
        "latency_p90_ms": result.latency_p90_ms,
        "latency_label": result.latency_label,
        "valid": result.valid,
    }


def write_summary(root: Path, summary: dict[str, Any]) -> Path:
    """Write ``benchmark.json``."""
    write_json(root / SUMMARY_FILE, summary)
    return root / SUMMARY_FILE


def benchmark_root(results_dir: Path, benchmark_id: str) -> Path:
    """The folder of a benchmark, by id or path."""
    candidate = Path(benchmark_id)
    return candidate if candidate.is_dir() else results_dir / benchmark_id
