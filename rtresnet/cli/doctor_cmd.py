"""`rtresnet doctor`: versions, hardware and backend availability, as a table or JSON."""

from __future__ import annotations

import json

import click


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def doctor(as_json: bool) -> None:
    """Check Python packages, CPU, GPU and every inference backend; say how to install what is missing.

    Missing GPU backends are reported, not errors: the exit code is 0.

    \b
    Example:
      rtresnet doctor
      rtresnet doctor --json | jq '.backends[] | select(.usable)'
    """
    from rtresnet.doctor import diagnose

    report = diagnose()
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    from rich.markup import escape
    from rich.table import Table

    from rtresnet.cli.ui import stdout

    env = Table(title="environment", show_header=False)
    env.add_column(style="bold")
    env.add_column()
    na = "[dim]not installed[/]"
    env.add_row("rtresnet", report.rtresnet)
    env.add_row("python", f"{report.python} ({report.platform})")
    env.add_row("torch", f"{report.torch} (CUDA {report.torch_cuda or 'none: CPU build'})" if report.torch else na)
    env.add_row("onnx", report.onnx or na)
    env.add_row("onnxruntime", f"{report.onnxruntime} ({report.onnxruntime_package})" if report.onnxruntime else na)
    env.add_row("ort providers", ", ".join(report.ort_providers) or "-")
    env.add_row("openvino", report.openvino or na)
    env.add_row("tensorrt", report.tensorrt or na)
    cpu = report.cpu
    env.add_row("cpu", escape(f"{cpu.model} ({cpu.arch}, {cpu.usable_cores}/{cpu.logical_cores} cores usable)"))
    env.add_row("cpu isa", " ".join(cpu.isa) or "-")
    gpu = report.gpu
    env.add_row("gpu", f"{gpu.name}, sm {gpu.compute_capability}, {gpu.memory_gib} GiB, driver {gpu.driver}, "
                       f"{gpu.count} device(s)" if gpu else "[dim]no CUDA GPU visible[/]")
    stdout.print(env)

    backends = Table(title="backends")
    backends.add_column("backend")
    backends.add_column("status")
    backends.add_column("detail / how to enable")
    for b in report.backends:
        status = "[green]usable[/]" if b.usable else "[yellow]unavailable[/]"
        # escape: fixes such as "pip install 'rtresnet[gpu]'" contain brackets rich would read as markup
        detail = escape(b.detail) + (f"\n[dim]-> {escape(b.fix)}[/]" if b.fix and not b.usable else "")
        backends.add_row(b.name, status, detail)
    stdout.print(backends)
    for w in report.warnings:
        stdout.print(f"[red]warning:[/] {escape(w)}")
