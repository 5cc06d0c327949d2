"""Evaluate one model on one device profile: plan, run (or resume), summarise, report.

Example:
    slm-eval evaluate --model smollm2-135m-instruct --device docker-sim --metrics accuracy latency --limit 20
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from slm_eval.backends.catalogue import choose_backend
from slm_eval.devices.profiles import EvaluationConfig, get_profile
from slm_eval.errors import UserError
from slm_eval.evaluation.plan import RunSettings, encoder_task_for, select_metrics
from slm_eval.evaluation.runner import ProgressCallback, RunContext, SessionResult, run_session
from slm_eval.evaluation.summary import HostPerformanceSource, summarize
from slm_eval.logs import get_logger
from slm_eval.metrics.energy import detect_energy_reader
from slm_eval.models.catalogue import default_registry
from slm_eval.models.registry import ModelCard
from slm_eval.results.records import RunPaths, find_run, new_run_id, read_json, read_records, write_json
from slm_eval.tasks.catalogue import resolve_task
from slm_eval.tasks.squad import select_examples

log = get_logger(__name__)


@dataclass(frozen=True)
class EvaluateRequest:
    """What the user asked for on the command line."""

    model: str
    device: str
    metrics: Sequence[str] | None
    dataset: str | None
    limit: int | None
    seed: int
    max_new_tokens: int
    threads: int | None
    context_length: int
    backend: str | None
    robustness_rate: float | None = None
    dtype: str = "float32"
    trust_remote_code: bool = False
    models_dir: Path | None = None


@dataclass(frozen=True)
class EvaluateOutcome:
    """Where the run lives and what it found."""

    paths: RunPaths
    summary: dict[str, Any]
    report: Path | None


def plan_run(request: EvaluateRequest, config: EvaluationConfig) -> tuple[RunSettings, ModelCard]:
    """Validate the request and turn it into run settings.

    Raises:
        UserError: an unknown model, device, metric or dataset, or a bad ``--limit``.
    """
    card = default_registry().resolve(request.model, request.models_dir)
    profile = get_profile(config, request.device)
    metrics = select_metrics(request.metrics, card, config.metrics)
    if request.limit is not None and request.limit < 1:
        raise UserError(f"--limit must be at least 1 (got {request.limit}); leave it out to use every example")
    rate = config.robustness.rate if request.robustness_rate is None else request.robustness_rate
    if not 0 < rate <= 1:
        raise UserError(f"--robustness-rate must be above 0 and at most 1 (got {rate:g})")
    dataset = request.dataset
    if dataset is not None and Path(dataset).expanduser().exists():
        dataset = str(Path(dataset).expanduser().resolve())  # so --resume works from any folder
    task = resolve_task(dataset)
    encoder_task = encoder_task_for(card, task)
    settings = RunSettings(
        run_id=new_run_id(card.name),
        model=card.name,
        backend=request.backend,
        dataset=dataset,
        task=task.name,
        limit=request.limit,
        seed=request.seed,
        metrics=metrics,
        device=profile,
        max_new_tokens=request.max_new_tokens,
        threads=request.threads,
        context_length=request.context_length,
        validity=config.validity,
        robustness_rate=rate,
        perturbations=tuple(config.robustness.perturbations),
        bootstrap_confidence=config.bootstrap.confidence,
        bootstrap_resamples=config.bootstrap.resamples,
        dtype=request.dtype,
        trust_remote_code=request.trust_remote_code,
        encoder_task=encoder_task,
        models_dir=None if request.models_dir is None else str(request.models_dir.resolve()),
    )
    return settings, card


def execute(
    settings: RunSettings,
    card: ModelCard,
    paths: RunPaths,
    cache_dir: Path,
    *,
    on_progress: ProgressCallback | None = None,
    measure_host: bool = True,
    write_report: bool = True,
    host_capacity: HostPerformanceSource | None = None,
) -> EvaluateOutcome:
    """Run (or continue) the evaluation in ``paths`` and write its summary and report.

    ``host_capacity`` reuses this machine's measured bandwidth and compute for the projection (a benchmark
    measures them once); otherwise they are measured here when ``measure_host`` is set.
    """
    task = resolve_task(settings.dataset)
    examples = select_examples(task.examples(), settings.limit, settings.seed)
    context = RunContext(
        paths=paths,
        cache_dir=cache_dir,
        energy_reader=detect_energy_reader() if settings.device.name == "host" else None,
        on_progress=on_progress,
    )
    session: SessionResult = run_session(settings, card, task, examples, context)
    host = host_capacity
    if host is None and measure_host and session.fits and "latency" in settings.metrics:
        host = HostPerformanceSource.measure()
    summary = summarize(settings, card, list(read_records(paths.records)), session, host, task, examples)
    write_json(paths.summary, summary)
    report = None
    if write_report:
        from slm_eval.results.report import render_run_report

        report, _ = render_run_report(paths)
    return EvaluateOutcome(paths=paths, summary=summary, report=report)


def new_run(
    request: EvaluateRequest, config: EvaluationConfig, results_dir: Path, cache_dir: Path | None = None
) -> tuple[RunSettings, ModelCard, RunPaths]:
    """Plan a fresh run and claim a new folder for it (never one that another run holds).

    With ``cache_dir``, the backend and the weights are checked first, so a run that cannot start
    leaves no folder behind.
    """
    settings, card = plan_run(request, config)
    if cache_dir is not None:
        check_runnable(card, settings.backend, cache_dir)
    for _ in range(5):
        root = results_dir / settings.run_id
        try:
            root.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            settings = replace(settings, run_id=new_run_id(card.name))
            continue
        return settings, card, RunPaths(root)
    raise UserError(f"could not find a free run folder in {results_dir}; try again")


def check_runnable(card: ModelCard, backend: str | None, cache_dir: Path) -> None:
    """Fail now, with one line, when no backend can run the model or its weights are not on this machine."""
    entry = choose_backend(card, backend)
    if entry.needs_weights:
        card.source.locate(cache_dir)


def resumed_run(run_id: str, results_dir: Path) -> tuple[RunSettings, ModelCard, RunPaths]:
    """The settings and folder of an interrupted run, to continue it."""
    paths = find_run(results_dir, run_id)
    settings = RunSettings.from_dict(read_json(paths.run_file))
    card = default_registry().resolve(settings.model, _models_dir(settings))
    return settings, card, paths


def _models_dir(settings: RunSettings) -> Path | None:
    return None if settings.models_dir is None else Path(settings.models_dir)
