"""The commands that run models on tasks and report on them: ``evaluate``, ``benchmark`` and ``report``.

Each is a thin call into :mod:`slm_eval.evaluation`; :mod:`slm_eval.cli` registers them on the app.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from slm_eval.cli_context import app_state, table_console
from slm_eval.errors import UserError
from slm_eval.models.catalogue import default_registry


def evaluate_command(
    ctx: typer.Context,
    model: str | None = typer.Option(None, "--model", "-m", help="Model name, alias or path (default: from config)."),
    device: str | None = typer.Option(None, "--device", "-d", help="Device profile (default: from config)."),
    metrics: list[str] = typer.Option(
        [],
        "--metrics",
        help="Metrics, space- or comma-separated: accuracy latency memory model_size inference_time "
        "power robustness (default: all that apply).",
    ),
    dataset: str | None = typer.Option(
        None, "--dataset", help="border-qa (built-in, default), squad (needs a network), or a SQuAD JSON/JSONL path."
    ),
    limit: int | None = typer.Option(None, "--limit", help="Evaluate a seeded sample of N examples."),
    seed: int | None = typer.Option(None, "--seed", help="Seed for sampling and perturbations (default: from config)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1, help="Most tokens per answer."),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="Backend threads (default: the profile's cores)."
    ),
    context_length: int | None = typer.Option(None, "--context-length", min=128, help="Context window in tokens."),
    backend: str | None = typer.Option(None, "--backend", help="Backend to run on (default: by weight format)."),
    robustness_rate: float | None = typer.Option(
        None, "--robustness-rate", min=0.0, max=1.0, help="Share of characters or words perturbed (default: config)."
    ),
    eval_config: Path | None = typer.Option(
        None, "--eval-config", help="Device profiles and evaluation rules (default: config/evaluation.json)."
    ),
    dtype: str = typer.Option("float32", "--dtype", help="Weights' dtype on the transformers backend."),
    trust_remote_code: bool = typer.Option(
        False, "--trust-remote-code", help="Let the transformers backend run code shipped with the model."
    ),
    resume: str | None = typer.Option(None, "--resume", help="Continue an interrupted run by its id."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Evaluate a model on a device profile: accuracy, latency, memory, size, time, power and robustness."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from slm_eval.cli_output import evaluation_table
    from slm_eval.devices.profiles import default_evaluation_config_path, load_evaluation_config
    from slm_eval.evaluation.evaluate import EvaluateRequest, execute, new_run, resumed_run

    settings = app_state(ctx).settings
    results_dir = settings.paths.results
    if resume is not None:
        run_settings, card, paths = resumed_run(resume, results_dir)
    else:
        config = load_evaluation_config(eval_config or default_evaluation_config_path())
        request = EvaluateRequest(
            model=model or settings.defaults.model,
            device=device or settings.defaults.device,
            metrics=metrics or None,
            dataset=dataset,
            limit=limit,
            seed=settings.defaults.seed if seed is None else seed,
            max_new_tokens=max_new_tokens,
            threads=threads,
            context_length=context_length or settings.defaults.context_length,
            backend=backend,
            robustness_rate=robustness_rate,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            models_dir=settings.paths.models,
        )
        run_settings, card, paths = new_run(request, config, results_dir, settings.paths.cache)
    err = Console(stderr=True)
    err.print(f"run {run_settings.run_id} -> {paths.root}", markup=False, highlight=False)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True, disable=as_json) as progress:
        bar = progress.add_task(f"{card.name} on {run_settings.device.name}", total=None)
        outcome = execute(
            run_settings,
            card,
            paths,
            settings.paths.cache,
            on_progress=lambda done, total: progress.update(bar, completed=done, total=total),
        )
    if as_json:
        typer.echo(json.dumps(outcome.summary, indent=2, ensure_ascii=False))
        return
    table_console().print(evaluation_table(outcome.summary))
    for warning in outcome.summary.get("warnings", []):
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    err.print(f"report: {outcome.report}", markup=False, highlight=False)


def benchmark_command(
    ctx: typer.Context,
    models: list[str] = typer.Option([], "--model", "-m", help="Models to compare; several allowed (default: config)."),
    devices: list[str] = typer.Option([], "--device", "-d", help="Device profiles; several allowed (default: config)."),
    use_cases: list[str] = typer.Option(
        [],
        "--use-cases",
        help="A subset of: document-verification multilingual-triage entity-threat-detection "
        "customs-help report-generation (default: all).",
    ),
    limit: int | None = typer.Option(None, "--limit", help="Examples per use case (a seeded sample)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed for sampling and perturbations (default: config)."),
    robustness: bool = typer.Option(False, "--robustness", help="Also re-score on perturbed inputs (OCR noise, ...)."),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="Backend threads (default: the profile's cores)."
    ),
    context_length: int | None = typer.Option(None, "--context-length", min=128, help="Context window in tokens."),
    backend: str | None = typer.Option(None, "--backend", help="Backend to run on (default: by weight format)."),
    prefix_cache: bool = typer.Option(
        True, "--prefix-cache/--no-prefix-cache", help="Reuse the KV cache of the shared prompt prefix."
    ),
    eval_config: Path | None = typer.Option(
        None, "--eval-config", help="Profiles, weights, budgets and thresholds (default: config/evaluation.json)."
    ),
    resume: str | None = typer.Option(None, "--resume", help="Continue an interrupted benchmark by its id."),
    as_json: bool = typer.Option(False, "--json", help="Print benchmark.json instead of the verdict table."),
) -> None:
    """Run the five border-control use cases and decide PASS / FAIL per model and device, with one report."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from slm_eval.cli_output import benchmark_table
    from slm_eval.devices.profiles import default_evaluation_config_path, load_evaluation_config
    from slm_eval.evaluation.benchmark import (
        BenchmarkRequest,
        benchmark_root,
        load_plan,
        plan_benchmark,
        run_cells,
        save_plan,
        summarize_benchmark,
        write_summary,
    )
    from slm_eval.evaluation.evaluate import check_runnable
    from slm_eval.results.benchmark_report import render_benchmark_report

    settings = app_state(ctx).settings
    results_dir = settings.paths.results
    if resume is not None:
        root = benchmark_root(results_dir, resume)
        cells, requirements = load_plan(root)
        benchmark_id = root.name
    else:
        config = load_evaluation_config(eval_config or default_evaluation_config_path())
        request = BenchmarkRequest(
            models=tuple(models or [settings.defaults.model]),
            devices=tuple(devices or [settings.defaults.device]),
            use_cases=tuple(use_cases) or None,
            limit=limit,
            seed=settings.defaults.seed if seed is None else seed,
            robustness=robustness,
            threads=threads,
            context_length=context_length or settings.defaults.context_length,
            backend=backend,
            prefix_cache=prefix_cache,
            models_dir=settings.paths.models,
        )
        benchmark_id, cells = plan_benchmark(request, config)
        registry = default_registry()
        for model in dict.fromkeys(cell.model for cell in cells):
            check_runnable(registry.resolve(model, settings.paths.models), backend, settings.paths.cache)
        root = results_dir / benchmark_id
        root.mkdir(parents=True, exist_ok=False)
        save_plan(root, cells, config)
        requirements = config.benchmark
    err = Console(stderr=True)
    err.print(f"benchmark {benchmark_id} -> {root}", markup=False, highlight=False)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True, disable=as_json) as progress:
        bar = progress.add_task("starting", total=None)

        def on_cell(name: str, index: int, count: int) -> None:
            progress.update(bar, description=f"[{index + 1}/{count}] {name}", completed=0, total=None)

        run_cells(
            root,
            cells,
            settings.paths.cache,
            on_cell,
            lambda done, total: progress.update(bar, completed=done, total=total),
        )
    summary = summarize_benchmark(benchmark_id, root, cells, requirements)
    write_summary(root, summary)
    markdown, page, _ = render_benchmark_report(root)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    table_console().print(benchmark_table(summary))
    err.print(f"report: {page}\n        {markdown}", markup=False, highlight=False)


def report_command(
    ctx: typer.Context,
    run_ids: list[str] = typer.Argument(..., help="One run id (re-render its report) or several (compare them)."),
    out: Path | None = typer.Option(None, "--out", help="Folder for a comparison (default: results/compare-<time>)."),
) -> None:
    """Render a run's report again, or compare several runs in one table, CSV and plot."""
    from datetime import datetime, timezone

    from slm_eval.results.records import find_run
    from slm_eval.results.report import render_comparison, render_run_report

    results_dir = app_state(ctx).settings.paths.results
    runs = [find_run(results_dir, run_id) for run_id in run_ids]
    for run in runs:
        if not run.summary.exists():
            raise UserError(f"run {run.root.name} has no summary yet; finish it with --resume {run.root.name}")
    if len(runs) == 1:
        markdown, page = render_run_report(runs[0])
        typer.echo(f"{markdown}\n{page}")
        return
    folder = out or results_dir / f"compare-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}"
    for path in render_comparison(runs, folder):
        typer.echo(str(path))
