"""`rtresnet models`: the zoo as a table (counted parameters and MACs, published weights)."""

from __future__ import annotations

import json

import click

from rtresnet.cli.options import limited


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--input-size", type=limited("input size"), default=224, show_default=True,
              help="Square input size the MACs are counted at.")
def models(as_json: bool, input_size: int) -> None:
    """List the architectures: parameters, GMACs per image, and named weights with their ImageNet top-1.

    \b
    Example:
      rtresnet models
      rtresnet models --json | jq '.[] | select(.arch == "resnet50")'
    """
    from rtresnet.cli.ui import stdout
    from rtresnet.models import summarize_models

    rows = summarize_models((input_size, input_size))
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    from rich.table import Table

    table = Table(title=f"ResNet zoo, MACs per image at {input_size}x{input_size}")
    table.add_column("arch")
    table.add_column("params", justify="right")
    table.add_column("GMACs", justify="right")
    names = sorted({w.name for r in rows for w in r.weights})
    for name in names:
        table.add_column(f"{name}\ntop-1 %", justify="right")
    for r in rows:
        top1 = {w.name: f"{w.top1_pct:.3f}" for w in r.weights}
        table.add_row(r.arch, f"{r.params:,}", f"{r.gmacs:.3f}", *(top1.get(n, "-") for n in names))
    stdout.print(table)
