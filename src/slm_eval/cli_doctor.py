"""The ``doctor`` command: this machine, what is installed, and what to use here.

A thin call into :mod:`slm_eval.doctor`; :mod:`slm_eval.cli` registers it on the app.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from slm_eval.cli_context import app_state, table_console

if TYPE_CHECKING:
    from slm_eval.doctor import DoctorReport

GIB = 1024**3


def doctor_command(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Detect the platform, check the dependencies, and recommend a backend, format and installs for this machine.

    Exits 0 when the core works and a local backend is installed; otherwise exits non-zero
    with the reason on stderr (3: Python or a core dependency, 4: no local backend).
    """
    from slm_eval.doctor import run_doctor

    paths = app_state(ctx).settings.paths
    report = run_doctor([("models", paths.models), ("results", paths.results)])
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        console = table_console()
        console.print(system_table(report))
        console.print(packages_table(report))
        console.print(recommendations_table(report))
    if report.problem is not None:
        raise report.problem


def _gib(value: int | None) -> str:
    return "unknown" if value is None else f"{value / GIB:.1f} GiB"


def _row(table: Table, *cells: str) -> None:
    """Add a row of plain text: bracketed words such as ``slm-eval[llama]`` are not rich markup."""
    table.add_row(*(escape(cell) for cell in cells))


def system_table(report: DoctorReport) -> Table:
    """This machine: OS, Python, CPU, memory, disk, GPU, Docker, AWS and network, one row each."""
    facts = report.facts
    table = Table(title="This machine", title_justify="left", width=100, highlight=False)
    table.add_column("check", no_wrap=True)
    table.add_column("found", overflow="fold")
    platform = facts.platform
    _row(table, "OS", f"{platform.system} {platform.release} ({platform.version}), {platform.machine}")
    core = "core dependencies found" if not platform.core_missing else f"missing: {', '.join(platform.core_missing)}"
    _row(table, "Python", f"{platform.python}, {core}")
    cpu = facts.cpu
    features = ", ".join(cpu.features) or ("none of AVX2/AVX-512F/NEON" if cpu.features_known else "unknown")
    _row(table, "CPU", f"{cpu.model}; {cpu.usable_cores} usable of {cpu.logical_cores} cores; {features}")
    _row(table, "Memory", f"{_gib(facts.memory.available_bytes)} available of {_gib(facts.memory.total_bytes)}")
    for disk in facts.disks:
        _row(table, f"Disk ({disk.label})", f"{_gib(disk.free_bytes)} free at {disk.probed}")
    gpu = facts.gpu
    if gpu.gpus:
        names = ", ".join(f"{item.name} ({_gib(item.memory_bytes)})" for item in gpu.gpus)
        _row(table, "GPU", f"{names}; driver {gpu.driver} (via {gpu.method})")
    else:
        _row(table, "GPU", f"none ({gpu.detail})" if gpu.detail else "none")
    _row(table, "Docker", facts.docker.detail)
    _row(table, "AWS credentials", facts.aws.detail)
    network = facts.network
    hosts = ", ".join(f"{host} {'ok' if ok else 'unreachable'}" for host, ok in network.reachable.items())
    _row(table, "Network", hosts + ("; HF_HUB_OFFLINE set" if network.hf_offline else ""))
    return table


def packages_table(report: DoctorReport) -> Table:
    """Each optional dependency: installed or not, its version, and what installs it."""
    table = Table(title="Optional dependencies", title_justify="left", width=100)
    table.add_column("package", no_wrap=True)
    table.add_column("version", no_wrap=True)
    table.add_column("for", overflow="fold")
    table.add_column("install", no_wrap=True)
    for item in report.facts.packages:
        version = item.version if item.installed and item.version else "missing"
        _row(table, item.package.name, version, item.package.purpose, item.package.install_command)
    return table


def recommendations_table(report: DoctorReport) -> Table:
    """The recommendations, by topic."""
    table = Table(title="Recommendations", title_justify="left", width=100, show_lines=False)
    table.add_column("topic", no_wrap=True)
    table.add_column("advice", overflow="fold")
    for item in report.recommendations:
        _row(table, item.topic, item.text)
    return table
