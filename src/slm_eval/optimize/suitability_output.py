"""How ``slm-eval quantize --check-only`` shows a suitability check: one rich table, the verdict in its caption.

Example::

    Console().print(suitability_table(check_suitability(card, source, "gguf", method, 4)))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slm_eval.optimize.suitability import GROUP_TITLES, Suitability

if TYPE_CHECKING:
    from rich.table import Table

VERDICT_STYLES = {"suitable": "green", "warning": "yellow", "unsuitable": "red"}
_MIB = 2**20


def format_mib(size_bytes: int | None, label: str = "measured") -> str:
    """``"86.7 MiB"``, with ``(estimated)`` after an estimate; ``n/a`` without a value."""
    if size_bytes is None:
        return "n/a"
    text = f"{size_bytes / _MIB:.1f} MiB"
    return text if label == "measured" else f"{text} ({label})"


def suitability_lines(check: Suitability) -> list[str]:
    """The verdict, then each reason, warning and note, one per line, as rich markup."""
    from rich.markup import escape

    style = VERDICT_STYLES[check.verdict]
    lines = [f"verdict: [bold {style}]{check.verdict}[/]"]
    lines += [f"[red]unsuitable:[/] {escape(reason)}" for reason in check.reasons]
    lines += [f"[yellow]warning:[/] {escape(warning)}" for warning in check.warnings]
    lines += [f"[dim]note:[/] {escape(note)}" for note in check.notes]
    return lines


def suitability_table(check: Suitability) -> Table:
    """Each group's tensors, parameters, share, storage now and after (estimated), and what the method does."""
    from rich.markup import escape
    from rich.table import Table

    parameters = check.parameters or 0
    share = "n/a" if check.quantized_share is None else f"{check.quantized_share:.0%}"
    already = f", already {check.already_quantized}" if check.already_quantized else ""
    title = (
        f"Suitability of {escape(check.model)} ({check.kind}, {_count(check.parameters)} parameters{already}) for "
        f"{check.method} {check.bits}-bit"
    )
    table = Table(title=title, title_justify="left", caption_justify="left")
    table.add_column("group")
    table.add_column("tensors", justify="right")
    table.add_column("parameters", justify="right", no_wrap=True)
    table.add_column("share", justify="right")
    table.add_column("stored as")
    table.add_column("size now", justify="right", no_wrap=True)
    table.add_column("after (estimated)", justify="right", no_wrap=True)
    table.add_column("the method")
    for group in check.groups:
        table.add_row(
            GROUP_TITLES.get(group.name, group.name),
            str(group.tensors),
            f"{group.parameters:,}",
            f"{group.parameters / parameters:.1%}" if parameters else "n/a",
            escape(", ".join(group.dtypes)),
            format_mib(group.stored_bytes),
            format_mib(group.estimated_bytes),
            escape(group.precision_after)
            if group.treatment == "quantized"
            else f"keeps {escape(group.precision_after)}",
        )
    if check.groups:
        table.add_section()
        table.add_row(
            "all",
            str(sum(group.tensors for group in check.groups)),
            f"{parameters:,}",
            f"{share} quantized",
            "",
            format_mib(check.current_size_bytes),
            format_mib(check.estimated_size_bytes),
            "on disk now (measured) and after (estimated)",
        )
    table.caption = "\n".join(suitability_lines(check))
    return table


def _count(parameters: int | None) -> str:
    if parameters is None:
        return "n/a"
    return f"{parameters / 1e9:.1f}B" if parameters >= 1_000_000_000 else f"{parameters / 1e6:.1f}M"
