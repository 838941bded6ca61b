"""`rtresnet inspect`: what an ONNX model or engine is, as text or JSON (a thin adapter over inspect_model)."""

from __future__ import annotations

import json

import click


@click.command("inspect")
@click.argument("path", type=click.Path(dir_okay=True, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("--wide", is_flag=True, help="List every op type (also with -v).")
@click.pass_context
def inspect_cmd(ctx: click.Context, path: str, as_json: bool, wide: bool) -> None:
    """Show an ONNX model (FP32, FP16, INT8 Q/DQ, onnxruntime engine) or a TensorRT plan with its sidecar:
    inputs and outputs, preprocessing, precision, Q/DQ per op type, opset, node counts, batch profile, how and
    for which machine it was built, and whether this machine can run it. TensorRT plans are not opened: their
    facts come from the sidecar.

    \b
    Example:
      rtresnet inspect engines/resnet50-int8.onnx
      rtresnet inspect engines/resnet50_int8-entropy_b1-32_trt10.16_sm90.engine --json | jq .sidecar.gpu
    """
    from rtresnet.inspection import inspect_model
    from rtresnet.inspection_text import format_report

    report = inspect_model(path)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    root = ctx.find_root().params
    click.echo(format_report(report, wide=wide or bool(root.get("verbose") or root.get("debug"))))
