"""The commands that make variants of a model: ``convert`` (to ONNX) and ``quantize`` (8 and 4 bits).

Each is a thin call into :mod:`slm_eval.optimize`; :mod:`slm_eval.cli` registers them on the app.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from slm_eval.cli_context import app_state, table_console
from slm_eval.errors import UserError
from slm_eval.models.catalogue import default_registry

if TYPE_CHECKING:
    from slm_eval.models.registry import ModelCard
    from slm_eval.models.store import Variant
    from slm_eval.optimize.quantize import GateOptions, Places, QuantizeRequest
    from slm_eval.optimize.quantize_methods import QuantFormat


def convert_command(
    ctx: typer.Context,
    model: str = typer.Option(..., "--model", "-m", help="A catalogued model, alias or model@variant."),
    output_format: str = typer.Option("onnx", "--format", help="Output format: onnx."),
    target: str = typer.Option("cpu", "--target", help="Where it will run: cpu, cuda or mobile."),
    precision: str | None = typer.Option(
        None, "--precision", help="Decoders: fp32 (default), int8 or int4 weights. Encoders: fp32."
    ),
    task: str = typer.Option("qa", "--task", help="Encoders: the task head to export, qa, ner or classify."),
    name: str | None = typer.Option(None, "--name", help="The variant's name (default: onnx-<precision|task>)."),
    force: bool = typer.Option(False, "--force", help="Replace a variant of the same name."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
) -> None:
    """Export a model to ONNX, check parity with the original, and store it as a variant with a manifest.

    The variant lands in the model store (data/models/<model>/<variant>/) only when the parity check passes,
    and is then a model of its own: --model <model>@<variant>.
    """
    from slm_eval.backends.encoder_heads import parse_encoder_task
    from slm_eval.models.store import ModelStore
    from slm_eval.optimize.convert import ConvertRequest, convert

    settings = app_state(ctx).settings
    card = default_registry().resolve(model, settings.paths.models)
    request = ConvertRequest(
        model=model,
        format=output_format,
        target=target,
        precision=precision,
        task=parse_encoder_task(task),
        name=name,
        force=force,
        seed=settings.defaults.seed,
    )
    err = Console(stderr=True)
    outcome = convert(
        request,
        card,
        ModelStore(settings.paths.models),
        settings.paths.cache,
        on_step=lambda message: err.print(message, markup=False, highlight=False),
    )
    if as_json:
        typer.echo(json.dumps(outcome.to_dict(), indent=2, ensure_ascii=False))
        return
    from slm_eval.cli_output import convert_summary

    table_console().print(convert_summary(outcome))


def quantize_command(
    ctx: typer.Context,
    model: str = typer.Option(..., "--model", "-m", help="A catalogued model, alias or model@variant."),
    bits: int | None = typer.Option(None, "--bits", help="Bit width of the weights: 8 or 4 (not with --sweep)."),
    output_format: str | None = typer.Option(
        None, "--format", help="onnx, pytorch or gguf (default: the model's own format)."
    ),
    method: str | None = typer.Option(
        None, "--method", help="A method of the format (default: the best available here)."
    ),
    block_size: int | None = typer.Option(None, "--block-size", help="Weight-only block size (MatMulNBits)."),
    quant_type: str | None = typer.Option(None, "--type", help="GGUF: llama.cpp's type, e.g. Q4_K_M, Q4_0, Q8_0."),
    allow_requantize: bool = typer.Option(
        False, "--allow-requantize", help="Quantize weights that are already quantized (lossy; recorded)."
    ),
    task: str = typer.Option("qa", "--task", help="Encoders: the task head to keep, qa, ner or classify."),
    check_only: bool = typer.Option(False, "--check-only", help="Print the suitability verdict and stop."),
    sweep: bool = typer.Option(
        False, "--sweep", help="Every method and bit width that runs here (of --format, if given), then the report."
    ),
    gate: bool = typer.Option(True, "--gate/--no-gate", help="Evaluate the variant against its parent after."),
    gate_limit: int = typer.Option(10, "--gate-limit", min=1, help="Gate examples (per use case for decoders)."),
    dataset: str | None = typer.Option(
        None, "--dataset", help="Gate on this dataset instead (a use case, border-qa, or a SQuAD-format file)."
    ),
    threshold: float = typer.Option(
        0.99, "--gate-threshold", min=0.0, max=1.0, help="Share of the parent's score the variant must keep."
    ),
    name: str | None = typer.Option(None, "--name", help="The variant's name (default: says what it is)."),
    force: bool = typer.Option(False, "--force", help="Replace a variant of the same name."),
    eval_config: Path | None = typer.Option(None, "--eval-config", help="Evaluation config (default: built in)."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
) -> None:
    """Quantize a model to 8 or 4 bits, after a suitability check, and gate the variant's accuracy.

    The variant lands in the model store (data/models/<model>/<variant>/) with its manifest; the gate then
    evaluates it and its parent on the same examples and records passed or failed (kept either way).
    --sweep makes every variant that runs here and writes the trade-off report.
    """
    from slm_eval.devices.profiles import default_evaluation_config_path
    from slm_eval.optimize.quantize import GateOptions, Places, QuantizeRequest
    from slm_eval.optimize.quantize_methods import parse_format

    settings = app_state(ctx).settings
    card = default_registry().resolve(model, settings.paths.models)
    places = Places(
        models=settings.paths.models,
        cache=settings.paths.cache,
        results=settings.paths.results,
        eval_config=eval_config or default_evaluation_config_path(),
    )
    gate_options = GateOptions(enabled=gate, limit=gate_limit, dataset=dataset, threshold=threshold)
    err = Console(stderr=True)
    if sweep:
        if bits is not None or method is not None or name is not None:
            raise UserError("--sweep tries every method and bit width: leave out --bits, --method and --name")
        only = parse_format(output_format) if output_format else None
        _sweep(card, places, gate_options, allow_requantize, task, settings.defaults.seed, force, err, as_json, only)
        return
    if bits is None:
        raise UserError("--bits is required: 8 or 4 (or --sweep for every variant that runs here)")
    request = QuantizeRequest(
        model=model,
        bits=bits,
        format=output_format,
        method=method,
        block_size=block_size,
        quant_type=quant_type,
        allow_requantize=allow_requantize,
        task=task,
        name=name,
        force=force,
        seed=settings.defaults.seed,
    )
    variant = _one(card, request, places, gate_options, check_only, as_json, err)
    if variant is None:
        return
    if as_json:
        typer.echo(json.dumps({"variant": variant.reference, "manifest": dict(variant.manifest)}, indent=2))
        return
    from slm_eval.cli_output import quantize_summary

    table_console().print(quantize_summary(variant))


def _one(
    card: ModelCard,
    request: QuantizeRequest,
    places: Places,
    gate: GateOptions,
    check_only: bool,
    as_json: bool,
    err: Console,
) -> Variant | None:
    """Check, then quantize and gate one variant; ``None`` after --check-only."""
    from slm_eval.optimize.quantize import plan_quantize, quantize_and_gate
    from slm_eval.optimize.suitability import check_suitability, suitability_table

    plan = plan_quantize(request, card, places.cache)
    verdict = check_suitability(
        card, plan.source, plan.source_format, plan.method, plan.bits, allow_requantize=request.allow_requantize
    )
    if check_only:
        if as_json:
            typer.echo(json.dumps(verdict.to_dict(), indent=2, ensure_ascii=False))
        else:
            table_console().print(suitability_table(verdict))
        return None
    if verdict.verdict == "unsuitable":
        reasons = "; ".join(verdict.reasons)
        raise UserError(f"{card.name} is not suitable for {plan.method.name} at {plan.bits} bits: {reasons}")
    for warning in verdict.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    variant = quantize_and_gate(
        plan, places, gate, verdict.to_dict(), lambda message: err.print(message, markup=False, highlight=False)
    )
    status = (variant.manifest.get("gate") or {}).get("status")
    if status is not None and status != "pending":
        style = {"passed": "green", "failed": "bold red"}.get(str(status), "yellow")
        reason = (variant.manifest.get("gate") or {}).get("reason", "")
        err.print(f"[{style}]gate {status}:[/] {reason}", highlight=False)
    return variant


def _sweep(
    card: ModelCard,
    places: Places,
    gate: GateOptions,
    allow_requantize: bool,
    task: str,
    seed: int,
    force: bool,
    err: Console,
    as_json: bool,
    only: QuantFormat | None,
) -> None:
    """Make (or reuse) every variant that runs here (of one format with ``only``), then write the trade-off report."""
    from dataclasses import replace

    from slm_eval.models.store import ModelStore, split_reference
    from slm_eval.optimize.quantize import cuda_available, gate_folder, plan_quantize, sweep_requests
    from slm_eval.optimize.tradeoff import render_tradeoff, rows_for, tradeoff_to_dict

    store = ModelStore(places.models)
    parent, _ = split_reference(card.name)
    requests = sweep_requests(card, allow_requantize, task, seed, cuda_available(), only)
    if not requests:
        raise UserError(f"no quantization method runs {card.name} on this machine; see 'slm-eval quantize --help'")
    for request in requests:
        request = replace(request, force=force)
        planned = plan_quantize(request, card, places.cache)
        existing = {v.name: v for v in store.variants(parent)}
        if planned.variant in existing and not force:
            err.print(f"{parent}@{planned.variant} is already in the store: reused", highlight=False)
            continue
        try:
            _one(card, request, places, gate, False, True, err)
        except UserError as exc:
            err.print(f"[yellow]skipped[/] {request.method} {request.bits}-bit: {exc}", highlight=False)
    key = gate_folder(places, parent, gate, seed).name
    rows = rows_for(parent, store.variants(parent), key if gate.enabled else None)
    folder = places.results / "quantize-tradeoffs" / parent
    written = render_tradeoff(parent, rows, folder)
    if as_json:
        typer.echo(json.dumps({"rows": tradeoff_to_dict(rows), "report": str(written["markdown"])}, indent=2))
        return
    from slm_eval.cli_output import tradeoff_table

    table_console().print(tradeoff_table(rows))
    err.print(f"report: {written['html']}\n        {written['markdown']}", markup=False, highlight=False)
