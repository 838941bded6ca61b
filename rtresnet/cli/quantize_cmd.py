"""`rtresnet quantize`: a thin adapter over `rtresnet.precision.convert_fp16` / `quantize_int8`."""

from __future__ import annotations

import click

from rtresnet.backends import ENGINE_BACKENDS
from rtresnet.cli.options import (
    CALIBRATION_KWARGS,
    calibration_options,
    one_precision,
    refuse_given_without_int8,
    verification_options,
)
from rtresnet.precision.int8 import TARGETS


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--fp16", "--half", "fp16", is_flag=True, help="Convert to FP16 (float32 inputs/outputs kept).")
@click.option("--int8", is_flag=True, help="Quantize to INT8 Q/DQ with calibration.")
@click.option("--target", type=click.Choice(TARGETS),
              help="INT8 graph layout: TensorRT (symmetric S8) or onnxruntime CPU (U8 activations) "
                   "[default: from --backend, else cpu].")
@click.option("--backend", type=click.Choice(ENGINE_BACKENDS),
              help="Backend that will run the model; sets the default --target.")
@calibration_options
@click.option("--keep-fp32", multiple=True, metavar="NAME_OR_OPTYPE",
              help="With --fp16: keep this node or op type in FP32 (repeatable).")
@click.option("--cache-dir", type=click.Path(file_okay=False),
              help="Calibration ranges cache folder [default: $RTRESNET_HOME/calib].")
@verification_options
@click.option("--no-verify", is_flag=True, help="Skip the comparison with the FP32 model.")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Output .onnx [default: beside MODEL, MODEL_fp16.onnx or MODEL_int8-<method>_<target>.onnx].")
def quantize(model: str, fp16: bool, int8: bool, target: str | None, backend: str | None, keep_fp32: tuple[str, ...],
             cache_dir: str | None, min_cosine: float | None, min_agreement: float | None, accept_mismatch: bool,
             no_verify: bool, output: str | None, **calibration) -> None:
    """Put FP16 or INT8 (Q/DQ) precision into an FP32 rtresnet ONNX model.

    \b
    Writes engines/resnet50_fp16.onnx, engines/resnet50_int8-entropy_tensorrt.onnx... (the naming scheme of
    `rtresnet build --help`; the calibration method and target are in the name).

    \b
    Examples:
      rtresnet quantize engines/resnet50.onnx --fp16
      rtresnet quantize engines/resnet50.onnx --int8 --backend tensorrt --calib-data ./calib_images
      rtresnet quantize digits.onnx --int8 --target cpu --calib-data digits --calib-method percentile
    """
    from rtresnet.errors import RtresnetError
    from rtresnet.precision.report import accuracy

    precision = one_precision(fp16=fp16, int8=int8)
    if precision is None:
        raise RtresnetError("choose --fp16 or --int8")
    verify = {"verify": not no_verify, "min_cosine": min_cosine, "min_agreement": min_agreement,
              "accept_mismatch": accept_mismatch}
    if no_verify and (min_cosine is not None or min_agreement is not None or accept_mismatch):
        raise RtresnetError("--no-verify skips the comparison; drop --min-cosine/--min-agreement/--accept-mismatch")
    if precision == "fp16":
        refuse_given_without_int8((*CALIBRATION_KWARGS, "target", "backend", "cache_dir"))
        from rtresnet.precision import convert_fp16

        result = convert_fp16(model, output, keep_fp32=keep_fp32, **verify)
    else:
        if keep_fp32:
            raise RtresnetError("--keep-fp32 applies with --fp16; use --exclude with --int8")
        if calibration["calib_data"] is None:
            raise RtresnetError("--int8 needs --calib-data (an image folder, a .txt list, a .npy/.npz file, "
                                "'digits' or 'synthetic')")
        from rtresnet.precision import quantize_int8

        target = target or ("tensorrt" if backend == "tensorrt" else "cpu")
        result = quantize_int8(model, output, target=target, cache_dir=cache_dir, **verify, **calibration)
    click.echo(f"wrote {result.path}")
    click.echo(f"size: {result.size_bytes / 1e6:.2f} MB (FP32 {result.source_size_bytes / 1e6:.2f} MB)")
    if result.precision == "int8":
        cal = (f"reused from cache {result.cache_path}" if result.cache_hit
               else f"{result.calibration_seconds:.1f} s, cached in {result.cache_path}")
        click.echo(f"int8: target {result.target}, {result.quantized_nodes} quantized nodes, method {result.method}, "
                     f"{result.calib_samples} samples; calibration {cal}")
    if result.comparison is not None:
        click.echo(f"vs FP32: {accuracy(result.comparison)}")
