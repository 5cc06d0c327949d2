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
from pathlib import Path

import typer
from rich.console import Console

from slm_eval import __version__
from slm_eval.backends.base import LoadOptions
from slm_eval.cli_context import AppState, app_state, table_console
from slm_eval.cli_doctor import doctor_command
from slm_eval.cli_runs import benchmark_command, evaluate_command, report_command
from slm_eval.cli_train import train_command
from slm_eval.cli_variants import convert_command, quantize_command
from slm_eval.errors import UserError
from slm_eval.logs import configure_logging, get_logger
from slm_eval.models.catalogue import default_registry
from slm_eval.prompt_files import read_prompts
from slm_eval.quicktest import QuickTestAnswer, QuickTestPlan, SilentListener, check_prompts, run_quick_test
from slm_eval.settings import load_settings

app = typer.Typer(
    name="slm-eval",
    help="Evaluate small language models for edge devices used at borders.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
log = get_logger(__name__)


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
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print the catalogue as JSON."),
) -> None:
    """List the models in the catalogue, with their sources, backends and the variants in the model store."""
    from slm_eval.cli_output import models_json, models_table
    from slm_eval.models.store import ModelStore

    cards = default_registry().cards()
    variants = ModelStore(app_state(ctx).settings.paths.models).variants()
    if as_json:
        typer.echo(models_json(cards, variants))
    else:
        table_console().print(models_table(cards, variants))


@app.command("info")
def info_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A model name or alias, or a path to a GGUF file or model folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the model card as JSON."),
) -> None:
    """Show one model's card: architecture, size, context, licence, backends and weights."""
    from slm_eval.cli_output import info_table

    card = default_registry().resolve(name, app_state(ctx).settings.paths.models)
    if as_json:
        typer.echo(json.dumps({**card.to_dict(), "installed": card.source.available()}, indent=2))
    else:
        table_console().print(info_table(card))


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
    dtype: str = typer.Option(
        "float32", "--dtype", help="Weights' dtype on the transformers backend: float32, bfloat16."
    ),
    trust_remote_code: bool = typer.Option(
        False, "--trust-remote-code", help="Let the transformers backend run code shipped with the model."
    ),
    task: str | None = typer.Option(
        None, "--task", help="Encoders: the task head, qa (needs --context), ner or classify (default: qa)."
    ),
    context: str | None = typer.Option(None, "--context", help="Encoders, --task qa: the passage to answer from."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON instead of streaming."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Use the fake backend: no model is loaded."),
) -> None:
    """Answer prompts with one model, streaming, then show tokens, TTFT, tokens/s and peak memory.

    An encoder runs its task head instead: extractive QA over --context, entities (ner) or a label (classify).
    """
    from slm_eval.devices.cpus import usable_cpu_count

    settings = app_state(ctx).settings
    prompts = list(inputs) + (read_prompts(file) if file is not None else [])
    card = default_registry().resolve(model or settings.defaults.model, settings.paths.models)
    if card.kind == "encoder":
        from slm_eval.backends.encoder_heads import parse_encoder_task
        from slm_eval.cli_output import print_encoder_quick_test
        from slm_eval.quicktest_encoder import EncoderQuickTestPlan, run_encoder_quick_test

        encoder_plan = EncoderQuickTestPlan(
            card=card,
            backend=backend,
            task=parse_encoder_task(task or "qa"),
            texts=tuple(prompts),
            context=context,
            load_options=LoadOptions(
                threads=threads or settings.defaults.threads or usable_cpu_count(),
                context_length=context_length or 512,
                seed=settings.defaults.seed,
                dtype=dtype,
                trust_remote_code=trust_remote_code,
                encoder_task=parse_encoder_task(task or "qa"),
            ),
            cache_dir=settings.paths.cache,
        )
        if dry_run:
            raise UserError("--dry-run runs the fake decoder; it cannot stand in for an encoder")
        encoder_result = run_encoder_quick_test(encoder_plan)
        if as_json:
            typer.echo(json.dumps(encoder_result.to_dict(), indent=2, ensure_ascii=False))
        else:
            print_encoder_quick_test(Console(), Console(stderr=True), encoder_result)
        return
    if task is not None or context is not None:
        raise UserError(f"--task and --context apply to encoder models; {card.name} is a {card.kind} model")
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
            dtype=dtype,
            trust_remote_code=trust_remote_code,
        ),
        cache_dir=settings.paths.cache,
        dry_run=dry_run,
    )
    log.debug("quick-test on %s with %d prompt(s)", card.name, len(plan.prompts))
    listener = SilentListener() if as_json else _StreamingListener(Console(), show_prompt=True)
    result = run_quick_test(plan, listener)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))


app.command("convert")(convert_command)
app.command("quantize")(quantize_command)
app.command("evaluate")(evaluate_command)
app.command("benchmark")(benchmark_command)
app.command("report")(report_command)
app.command("train")(train_command)
app.command("doctor")(doctor_command)


# Options that take several values after one flag, as in ``--metrics accuracy latency model_size``.
MULTI_VALUE_OPTIONS = frozenset({"--metrics"})
# ``benchmark`` also takes several models, devices and use cases: ``--model a b --device c d``.
BENCHMARK_MULTI_VALUE_OPTIONS = frozenset({"--model", "-m", "--device", "-d", "--use-cases"})


def expand_multi_value_options(args: list[str]) -> list[str]:
    """``--metrics a b`` becomes ``--metrics a --metrics b``; values stop at the next ``-``-prefixed word."""
    expanded: list[str] = []
    current: str | None = None
    commands = {info.name for info in app.registered_commands}
    command = next((arg for arg in args if arg in commands), None)
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
