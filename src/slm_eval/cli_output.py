"""How the CLI shows results: tables, the per-answer summary line and JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from slm_eval.models.registry import ModelCard
from slm_eval.quicktest import QuickTestAnswer

if TYPE_CHECKING:
    from slm_eval.models.store import Variant
    from slm_eval.optimize.convert import ConvertOutcome
    from slm_eval.optimize.tradeoff import TradeoffRow
    from slm_eval.quicktest_encoder import EncoderQuickTestResult
    from slm_eval.training.local import TrainOutcome


def format_parameters(count: int | None) -> str:
    """``134.5M``, ``3.8B`` or ``n/a``."""
    if count is None:
        return "n/a"
    if count >= 1_000_000_000:
        return f"{count / 1e9:.1f}B"
    return f"{count / 1e6:.1f}M"


def format_context(tokens: int | None) -> str:
    """``128K``, ``2K``, ``512`` or ``n/a``."""
    if tokens is None:
        return "n/a"
    return f"{tokens // 1024}K" if tokens >= 1024 and tokens % 1024 == 0 else str(tokens)


def weights_status(card: ModelCard) -> str:
    """Where the weights are: ``installed``, ``not installed``, ``hub`` (needs a network) or ``api``."""
    if card.source.format == "api":
        return "api (network)"
    if not card.source.offline:
        return "hub (network)"
    return "installed" if card.source.available() else "not installed"


def models_table(cards: Sequence[ModelCard], variants: Sequence[Variant] = ()) -> Table:
    """The catalogue as a rich table, with each model's variants in the store; ``slm-eval info NAME`` shows more."""
    table = Table(
        title="Models",
        title_justify="left",
        caption="slm-eval info NAME shows a whole card; a variant runs as --model NAME@VARIANT",
    )
    for column in ("name", "kind", "params", "context", "format", "licence", "weights", "variants"):
        table.add_column(column, no_wrap=column in {"name", "params", "context"})
    by_model = _variants_by_model(variants)
    for card in cards:
        table.add_row(
            card.name,
            card.kind,
            format_parameters(card.parameters),
            format_context(card.context_length),
            card.source.format,
            card.licence,
            weights_status(card),
            ", ".join(_variant_label(v) for v in by_model.get(card.name, [])) or "-",
        )
    return table


def _variant_label(variant: Variant) -> str:
    """``onnx-int4 (86 MiB)``, with ``gate failed`` when its accuracy gate failed."""
    gate = (variant.manifest.get("gate") or {}).get("status")
    flag = ", gate failed" if gate == "failed" else ""
    return f"{variant.name} ({variant.size_bytes / 2**20:.0f} MiB{flag})"


def _variants_by_model(variants: Sequence[Variant]) -> dict[str, list[Variant]]:
    table: dict[str, list[Variant]] = {}
    for variant in variants:
        table.setdefault(variant.model, []).append(variant)
    return table


def variant_to_dict(variant: Variant) -> dict[str, Any]:
    """What ``models --json`` says about one variant."""
    manifest = variant.manifest
    return {
        "name": variant.name,
        "reference": variant.reference,
        "format": variant.format,
        "method": manifest.get("method"),
        "precision": manifest.get("precision"),
        "target": manifest.get("target"),
        "size_bytes": variant.size_bytes,
        "created": manifest.get("created"),
        "parity_passed": (manifest.get("parity") or {}).get("passed"),
        "bits": manifest.get("bits"),
        "gate": (manifest.get("gate") or {}).get("status"),
        "path": str(variant.path),
    }


def models_json(cards: Sequence[ModelCard], variants: Sequence[Variant] = ()) -> str:
    """The catalogue as JSON, each card with whether its weights are on this machine and its variants."""
    by_model = _variants_by_model(variants)
    return json.dumps(
        [
            {
                **card.to_dict(),
                "installed": card.source.available(),
                "variants": [variant_to_dict(v) for v in by_model.get(card.name, [])],
            }
            for card in cards
        ],
        indent=2,
    )


def convert_summary(outcome: ConvertOutcome) -> Table:
    """What ``convert`` made: where, how big, what the export did to the graph, and the parity figures."""
    variant = outcome.variant
    table = Table(show_header=False, title=f"{variant.reference}", title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("path", str(variant.path))
    table.add_row("size", f"{variant.size_bytes / 2**20:.1f} MiB (measured)")
    table.add_row("method", str(variant.manifest.get("method")))
    for key in ("ops_before", "ops_after", "op_count", "opset", "exporter", "execution_provider"):
        value = outcome.export.get(key)
        if value is not None:
            shown = sum(value.values()) if isinstance(value, Mapping) else value
            table.add_row(key.replace("_", " "), str(shown))
    for key, value in outcome.parity.items():
        if isinstance(value, bool | int | float | str):
            table.add_row(f"parity {key.replace('_', ' ')}", f"{value:.6g}" if isinstance(value, float) else str(value))
    table.add_row("took", f"{outcome.seconds:.1f} s (measured)")
    return table


def info_table(card: ModelCard) -> Table:
    """One model card as a two-column table."""
    table = Table(show_header=False, title=card.display_name, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    data = card.to_dict()
    data["parameters"] = format_parameters(card.parameters)
    data["context_length"] = f"{format_context(card.context_length)} tokens"
    data["installed"] = card.source.available()
    for key, value in data.items():
        shown = ", ".join(value) if isinstance(value, list) else "n/a" if value is None else str(value)
        table.add_row(key.replace("_", " "), shown)
    return table


def answer_summary(answer: QuickTestAnswer) -> str:
    """One line after a streamed answer: tokens, TTFT, speed, the network round trip (remote APIs) and peak memory."""
    figures = answer.figures()
    g = answer.generation
    prompt = "n/a" if answer.remote and g.prompt_tokens == 0 else str(g.prompt_tokens)
    memory = "n/a (remote API)" if answer.remote else answer.peak_memory.format(0)
    where = " over the network" if answer.remote else ""
    network = ""
    if answer.remote:
        network = (
            f" · network RTT {figures['network_round_trip'].format(1)}"
            f" (this request to headers {figures['network'].format(1)})"
        )
    return (
        f"prompt {prompt} tok · output {g.output_tokens} tok ({g.finish_reason}) · "
        f"TTFT {figures['time_to_first_token'].format(0)} · "
        f"{figures['decode_speed'].format(1)}{network} · peak RSS {memory} · {answer.label}{where}"
    )


def _figure(figure: Mapping[str, Any] | None, digits: int = 3) -> str:
    if not figure or figure.get("value") is None:
        return "n/a"
    value = float(figure["value"])
    shown = f"{value:,.0f}" if abs(value) >= 10**digits else f"{value:.{digits}g}"
    return f"{shown} {figure.get('unit', '')} ({figure.get('label', '')})"


def _spread(spread: Mapping[str, Any] | None) -> str:
    if not spread:
        return "n/a"
    quantiles = f"p50 {spread['p50']:.3g} · p90 {spread['p90']:.3g} · p99 {spread['p99']:.3g}"
    return f"{quantiles} {spread['unit']} ({spread['label']})"


def evaluation_table(summary: Mapping[str, Any]) -> Table:
    """The end-of-run table: verdict, then one row per figure, each with its unit and label."""
    metrics = summary.get("metrics", {})
    device = summary.get("device", {})
    table = Table(title=f"{summary['model']['name']} on {device.get('profile', {}).get('name')}", title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("value")
    fits = summary.get("fits", {})
    validity = summary.get("validity", {})
    table.add_row("fits", "yes" if fits.get("fits") else f"no: {fits.get('reason')}")
    table.add_row("valid", "yes" if validity.get("valid") else "no: " + "; ".join(validity.get("reasons", [])))
    if device.get("sandbox"):
        table.add_row("sandbox", f"{device['sandbox']} (memory limit: {device.get('memory_enforcement')})")
    for name, score in metrics.get("accuracy", {}).items():
        table.add_row(
            name,
            f"{score['mean']:.3f} (95% CI {score['low']:.3f}-{score['high']:.3f}, n={score['n']}, {score['label']})",
        )
    latency = metrics.get("latency", {})
    for key in ("time_to_first_token", "time_per_output_token", "end_to_end", "decode_tokens_per_s"):
        if key in latency:
            table.add_row(key.replace("_", " "), _spread(latency[key]))
    if latency.get("where"):
        table.add_row("latency measured over", str(latency["where"]))
    projection = latency.get("projection")
    if projection:
        table.add_row("decode speed, projected", _figure(projection["decode_tokens_per_s"]))
        table.add_row("request latency, projected", _figure(projection["request_latency"]))
    memory = metrics.get("memory", {})
    if memory:
        table.add_row("peak memory", _figure(memory.get("peak_rss_kernel")))
        table.add_row("load memory", _figure(memory.get("load_memory")))
    size = metrics.get("model_size")
    if size:
        table.add_row(
            "model size", f"{_figure(size.get('on_disk'))}, {format_parameters(size.get('parameters'))} params"
        )
    timing = metrics.get("inference_time")
    if timing:
        table.add_row("task wall time", _figure(timing.get("task_total")))
    power = metrics.get("power")
    if power:
        table.add_row("energy per request", _figure(power.get("energy_per_request")))
        table.add_row("average power", _figure(power.get("average_power")))
    for name, drop in metrics.get("robustness", {}).get("perturbations", {}).items():
        table.add_row(f"robustness: {name}", f"{drop['perturbed_score']:.3f} (drop {drop['drop']:+.3f})")
    return table


def benchmark_table(summary: Mapping[str, Any]) -> Table:
    """One row per use case under each model and device, then the overall score and the verdict."""
    table = Table(title=f"Benchmark {summary['benchmark_id']}", title_justify="left")
    for column in ("model", "device", "use case", "score", "p90 latency", "verdict"):
        table.add_column(column)
    for entry in summary["results"]:
        for use_case in entry["use_cases"]:
            mean = use_case["mean"]
            latency = use_case["latency_p90_ms"]
            table.add_row(
                entry["model"],
                entry["device"],
                use_case["use_case"],
                "n/a" if mean is None else f"{use_case['primary_score']} {mean:.3f}",
                "n/a" if latency is None else f"{latency:,.0f} ms ({use_case['latency_label']})",
                "",
            )
        overall = entry.get("overall")
        verdict = entry["verdict"]
        score = "n/a" if not overall else f"{overall['mean']:.3f} ({overall['low']:.3f}-{overall['high']:.3f})"
        table.add_row(entry["model"], entry["device"], "overall", score, "", verdict["verdict"], style="bold")
        shown = verdict["reasons"][:6]
        for reason in shown:
            table.add_row("", "", "", "", "", reason, style="dim")
        if len(verdict["reasons"]) > len(shown):
            more = len(verdict["reasons"]) - len(shown)
            table.add_row("", "", "", "", "", f"... and {more} more (see the report)", style="dim")
    return table


def print_encoder_quick_test(out: Console, err: Console, result: EncoderQuickTestResult) -> None:
    """Each input with the head's answer and one line of figures; the untrained-head warning first, on stderr."""
    if result.warning is not None:
        err.print(f"[yellow]warning:[/] {result.warning}", highlight=False)
    for answer in result.answers:
        p = answer.prediction
        out.print(f"[bold]> {escape(answer.text)}[/]", highlight=False)
        out.print(escape(p.text) if p.text else "[dim](empty span)[/]", highlight=False)
        confidence = "n/a" if p.confidence is None else f"{p.confidence:.3f}"
        out.print(
            f"[dim]{result.task} · input {p.input_tokens} tok · latency {p.end_to_end_s * 1000:.1f} ms · "
            f"confidence {confidence} · peak RSS {answer.peak_memory.format(0)} · measured[/]",
            highlight=False,
        )


def quantize_summary(variant: Variant) -> Table:
    """What ``quantize`` made: size and ratios, what stayed in higher precision, and the gate."""
    manifest = variant.manifest
    table = Table(show_header=False, title=variant.reference, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("path", str(variant.path))
    table.add_row("method", f"{manifest.get('method')} ({manifest.get('quant_type')})")
    table.add_row("size", f"{variant.size_bytes / 2**20:.1f} MiB (measured)")
    for key in ("compression_ratio", "size_ratio_to_fp32"):
        figure = manifest.get(key) or {}
        if figure.get("value") is not None:
            table.add_row(key.replace("_", " "), f"{figure['value']:.3f} ({figure.get('label')})")
    table.add_row("kept in higher precision", ", ".join(manifest.get("kept_precision") or []) or "-")
    if manifest.get("requantized"):
        table.add_row("requantized", "yes: the source was already quantized (lossy)")
    gate = manifest.get("gate") or {}
    table.add_row("gate", f"{gate.get('status', 'not run')}" + (f": {gate['reason']}" if gate.get("reason") else ""))
    for side in ("parent", "variant"):
        score = ((gate.get(side) or {}).get("score") or {}).get("value")
        if score is not None:
            table.add_row(f"{side} score", f"{score:.3f} (measured)")
    return table


def training_summary(outcome: TrainOutcome) -> Table:
    """What ``train`` made: the variant, its data, its losses, and the validation score before and after."""
    manifest = outcome.variant.manifest
    training = manifest.get("training") or {}
    data = training.get("dataset") or {}
    metrics = outcome.metrics
    table = Table(show_header=False, title=outcome.variant.reference, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("path", str(outcome.variant.path))
    adapter = " (adapter only; --merge for a whole model)" if training.get("adapter_only") else ""
    table.add_row("method", f"{training.get('method')} on {training.get('task')}{adapter}")
    table.add_row(
        "data",
        f"{data.get('train')} training / {data.get('validation')} validation records from "
        f"{', '.join(data.get('sources') or [])} (sha256 {str(data.get('sha256', ''))[:12]})",
    )
    for key, label in (("train_loss", "training loss"), ("best_eval_loss", "best validation loss")):
        if isinstance(metrics.get(key), (int, float)):
            table.add_row(label, f"{metrics[key]:.4f} (measured)")
    if metrics.get("epochs") is not None:
        stopped = ", stopped early" if metrics.get("early_stopped") else ""
        best = f", best at epoch {metrics['best_epoch']:g}" if metrics.get("best_epoch") is not None else ""
        table.add_row("epochs", f"{metrics['epochs']:g} ({metrics.get('steps')} steps{best}{stopped})")
    if isinstance(metrics.get("tokens_per_s"), (int, float)):
        table.add_row("speed", f"{metrics['tokens_per_s']:.0f} training tokens/s (measured)")
    if isinstance(metrics.get("seconds"), (int, float)):
        table.add_row("training time", f"{metrics['seconds']:.0f} s (measured)")
    if outcome.before is not None and outcome.after is not None:
        for before, after in zip(outcome.before.get("sets", []), outcome.after.get("sets", []), strict=False):
            table.add_row(
                f"{before['source']} {before['metric']}",
                f"{before['value']:.3f} -> {after['value']:.3f} on the same {after['examples']} validation "
                "examples (measured)",
            )
    return table


def tradeoff_table(rows: Sequence[TradeoffRow]) -> Table:
    """The trade-off report's table: each variant's size, score, gate, speed and memory."""
    from slm_eval.optimize.tradeoff import COLUMNS

    table = Table(title="Quantization trade-offs (measured)", title_justify="left")
    for column in COLUMNS:
        table.add_column(column.replace("_", " "), no_wrap=column == "variant")
    for row in rows:
        table.add_row(*(str(cell) if cell is not None else "n/a" for cell in row.cells()))
    return table
