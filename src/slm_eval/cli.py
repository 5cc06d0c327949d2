"""The ``slm-eval`` command line: each command is a thin call into the library.

Example:
    slm-eval models
    slm-eval quick-test --model smollm2-135m-instruct --input "What is a visa?"
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.console import Console

from slm_eval import __version__
from slm_eval.backends.base import LoadOptions
from slm_eval.errors import UserError
from slm_eval.logs import configure_logging, get_logger
from slm_eval.models.catalogue import default_registry
from slm_eval.prompt_files import read_prompts
from slm_eval.quicktest import QuickTestAnswer, QuickTestPlan, SilentListener, check_prompts, run_quick_test
from slm_eval.settings import Settings, load_settings

app = typer.Typer(
    name="slm-eval",
    help="Evaluate small language models for edge devices used at borders.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
log = get_logger(__name__)


@dataclass(frozen=True)
class AppState:
    """What every command receives from the global options."""

    settings: Settings
    debug: bool


def _state(ctx: typer.Context) -> AppState:
    state = ctx.obj
    if not isinstance(state, AppState):
        raise RuntimeError("the CLI callback did not run")
    return state


def _version(value: bool) -> None:
    if value:
        typer.echo(f"slm-eval {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", help="Config file (default: $SLM_EVAL_CONFIG or config/config.json)."
    ),
    debug: bool = typer.Option(False, "--debug", help="Debug logging, and tracebacks on errors."),
    log_level: str | None = typer.Option(
        None, "--log-level", help="Console log level: DEBUG, INFO, WARNING or ERROR (default: from config)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Evaluate small language models for edge devices used at borders."""
    settings = load_settings(config, os.environ)
    console_level = "DEBUG" if debug else (log_level.upper() if log_level else None)
    if console_level not in (None, "DEBUG", "INFO", "WARNING", "ERROR"):
        raise UserError(f"invalid --log-level '{log_level}': use DEBUG, INFO, WARNING or ERROR")
    configure_logging(settings.logging, settings.paths.logs, console_level=console_level)
    ctx.obj = AppState(settings=settings, debug=debug)


@app.command("models")
def models_command(
    as_json: bool = typer.Option(False, "--json", help="Print the catalogue as JSON."),
) -> None:
    """List the models in the catalogue, with their sources and backends."""
    from slm_eval.cli_output import models_json, models_table

    cards = default_registry().cards()
    if as_json:
        typer.echo(models_json(cards))
    else:
        _table_console().print(models_table(cards))


@app.command("info")
def info_command(
    name: str = typer.Argument(..., help="A model name or alias, or a path to a GGUF file or model folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the model card as JSON."),
) -> None:
    """Show one model's card: architecture, size, context, licence, backends and weights."""
    from slm_eval.cli_output import info_table

    card = default_registry().resolve(name)
    if as_json:
        typer.echo(json.dumps({**card.to_dict(), "installed": card.source.available()}, indent=2))
    else:
        _table_console().print(info_table(card))


def _table_console() -> Console:
    """A console for tables: the terminal's width, or a wide page when output is redirected."""
    return Console() if sys.stdout.isatty() else Console(width=160)


class _StreamingListener:
    """Streams answers to stdout, then one summary line per answer."""

    def __init__(self, console: Console, show_prompt: bool) -> None:
        self._console = console
        self._show_prompt = show_prompt

    def on_start(self, index: int, prompt: str) -> None:
        if self._show_prompt:
            self._console.print(f"> {prompt}", style="bold cyan", markup=False, highlight=False, soft_wrap=True)

    def on_token(self, index: int, piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    def on_answer(self, answer: QuickTestAnswer) -> None:
        from slm_eval.cli_output import answer_summary

        sys.stdout.write("\n")
        self._console.print(answer_summary(answer), style="dim", markup=False, highlight=False, soft_wrap=True)


@app.command("quick-test")
def quick_test_command(
    ctx: typer.Context,
    model: str | None = typer.Option(None, "--model", "-m", help="Model name, alias or path (default: from config)."),
    inputs: list[str] = typer.Option([], "--input", "-i", help="A prompt; repeat for several."),
    file: Path | None = typer.Option(None, "--file", "-f", help="Prompts from a text file (one per line) or JSONL."),
    max_new_tokens: int | None = typer.Option(
        None, "--max-new-tokens", min=1, help="Most tokens per answer (default: from config)."
    ),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads (default: all usable CPUs)."),
    backend: str | None = typer.Option(None, "--backend", help="Backend to run on (default: by weight format)."),
    system: str | None = typer.Option(None, "--system", help="System message for chat models."),
    context_length: int | None = typer.Option(
        None, "--context-length", min=128, help="Context window in tokens (default: from config)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON instead of streaming."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Use the fake backend: no model is loaded."),
) -> None:
    """Answer prompts with one model, streaming, then show tokens, TTFT, tokens/s and peak memory."""
    from slm_eval.devices.cpus import usable_cpu_count

    settings = _state(ctx).settings
    prompts = list(inputs) + (read_prompts(file) if file is not None else [])
    card = default_registry().resolve(model or settings.defaults.model)
    plan = QuickTestPlan(
        card=card,
        backend=backend,
        prompts=check_prompts(prompts),
        max_new_tokens=max_new_tokens or settings.defaults.max_new_tokens,
        system=system,
        load_options=LoadOptions(
            threads=threads or settings.defaults.threads or usable_cpu_count(),
            context_length=context_length or settings.defaults.context_length,
            seed=settings.defaults.seed,
        ),
        cache_dir=settings.paths.cache,
        dry_run=dry_run,
    )
    log.debug("quick-test on %s with %d prompt(s)", card.name, len(plan.prompts))
    listener = SilentListener() if as_json else _StreamingListener(Console(), show_prompt=True)
    result = run_quick_test(plan, listener)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))


@app.command("evaluate")
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
    resume: str | None = typer.Option(None, "--resume", help="Continue an interrupted run by its id."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Evaluate a model on a device profile: accuracy, latency, memory, size, time, power and robustness."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from slm_eval.cli_output import evaluation_table
    from slm_eval.devices.profiles import default_evaluation_config_path, load_evaluation_config
    from slm_eval.evaluation.evaluate import EvaluateRequest, execute, new_run, resumed_run

    settings = _state(ctx).settings
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
    _table_console().print(evaluation_table(outcome.summary))
    err.print(f"report: {outcome.report}", markup=False, highlight=False)


@app.command("benchmark")
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

    settings = _state(ctx).settings
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
        )
        benchmark_id, cells = plan_benchmark(request, config)
        registry = default_registry()
        for model in dict.fromkeys(cell.model for cell in cells):
            check_runnable(registry.resolve(model), backend, settings.paths.cache)
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
    _table_console().print(benchmark_table(summary))
    err.print(f"report: {page}\n        {markdown}", markup=False, highlight=False)


@app.command("report")
def report_command(
    ctx: typer.Context,
    run_ids: list[str] = typer.Argument(..., help="One run id (re-render its report) or several (compare them)."),
    out: Path | None = typer.Option(None, "--out", help="Folder for a comparison (default: results/compare-<time>)."),
) -> None:
    """Render a run's report again, or compare several runs in one table, CSV and plot."""
    from datetime import datetime, timezone

    from slm_eval.results.records import find_run
    from slm_eval.results.report import render_comparison, render_run_report

    results_dir = _state(ctx).settings.paths.results
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


# Options that take several values after one flag, as in ``--metrics accuracy latency model_size``.
MULTI_VALUE_OPTIONS = frozenset({"--metrics"})
# ``benchmark`` also takes several models, devices and use cases: ``--model a b --device c d``.
BENCHMARK_MULTI_VALUE_OPTIONS = frozenset({"--model", "-m", "--device", "-d", "--use-cases"})


def expand_multi_value_options(args: list[str]) -> list[str]:
    """``--metrics a b`` becomes ``--metrics a --metrics b``; values stop at the next ``-``-prefixed word."""
    expanded: list[str] = []
    current: str | None = None
    command = next((arg for arg in args if not arg.startswith("-")), None)
    multi = MULTI_VALUE_OPTIONS | (BENCHMARK_MULTI_VALUE_OPTIONS if command == "benchmark" else frozenset())
    for arg in args:
        if arg in multi:
            current = arg
            expanded.append(arg)
        elif current is not None and not arg.startswith("-"):
            if expanded[-1] != current:
                expanded.append(current)
            expanded.append(arg)
        else:
            current = None
            expanded.append(arg)
    return expanded


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and turn a user's mistake into one line on stderr and a non-zero exit.

    ``--debug`` may stand anywhere on the command line (or ``SLM_EVAL_DEBUG=1``); it shows tracebacks.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("SLM_EVAL_DEBUG", "").lower() in {"1", "true", "yes"}
    if "--debug" in args:
        args = ["--debug", *(arg for arg in args if arg != "--debug")]
    args = expand_multi_value_options(args)
    try:
        app(args=args, prog_name="slm-eval")
    except UserError as exc:
        _fail(str(exc), exc.exit_code, debug)
    except MemoryError as exc:
        _fail(f"out of memory: {exc}" if str(exc) else "out of memory", 1, debug)
    except Exception as exc:
        logging.getLogger("slm_eval").debug("unexpected error", exc_info=True)
        _fail(
            f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback; please report it)",
            1,
            debug,
        )


def _fail(message: str, code: int, debug: bool) -> None:
    if debug:
        import traceback

        traceback.print_exc()
    first_line = message.strip().splitlines()[0] if message.strip() else "failed"
    sys.stderr.write(f"error: {first_line}\n")
    sys.exit(code)
