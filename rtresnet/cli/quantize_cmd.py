"""`rtresnet quantize`: a thin adapter over `rtresnet.precision.convert_fp16` / `quantize_int8`."""

from __future__ import annotations

import click

CALIBRATION_KWARGS = ("calib_data", "calib_size", "calib_batch", "method", "percentile", "high_precision",
                      "exclude", "keep_io_layers_float", "seed")


def calibration_options(f):
    """Calibration options shared by `rtresnet quantize` and `rtresnet build`; they arrive as the keyword
    arguments of ``quantize_int8`` named in ``CALIBRATION_KWARGS`` (``exclude`` is a tuple)."""
    options = [
        click.option("--calib-data", "calib_data", metavar="DIR|LIST.txt|FILE.npy|digits|synthetic",
                     help="Calibration data: image folder (recursive), text list of images, .npy/.npz tensors, "
                          "'digits' or 'synthetic' (random: timing only)."),
        click.option("--calib-size", "calib_size", type=int, default=512, show_default=True,
                     help="Calibration samples (seeded random choice; warns below 300)."),
        click.option("--calib-batch", "calib_batch", type=int, default=16, show_default=True,
                     help="Samples per calibration batch."),
        click.option("--calib-method", "method", type=click.Choice(["entropy", "minmax", "percentile"]),
                     default="entropy", show_default=True,
                     help="onnxruntime calibrator (it has no MSE method)."),
        click.option("--percentile", type=float, default=99.99, show_default=True,
                     help="With --calib-method percentile: the percentile of |x| kept."),
        click.option("--high-precision", "high_precision", type=click.Choice(["fp16", "fp32"]), default="fp16",
                     show_default=True, help="TensorRT target: precision of the non-quantized remainder."),
        click.option("--exclude", "exclude", multiple=True, metavar="NAME_OR_OPTYPE",
                     help="Keep this node or op type in float (repeatable)."),
        click.option("--keep-io-layers-float", "keep_io_layers_float", is_flag=True,
                     help="Keep the first Conv and the final Gemm in float."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of the calibration sample."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


VERIFY_KWARGS = ("min_cosine", "min_agreement", "accept_mismatch")


def verification_options(f):
    """How the FP16/INT8 result is judged against FP32 (shared by `quantize` and `build`)."""
    options = [
        click.option("--min-cosine", "min_cosine", type=float,
                     help="Fail below this mean cosine similarity of the logits to FP32 "
                          "[default: 0.999 for FP16, 0.9 for INT8]."),
        click.option("--min-agreement", "min_agreement", type=float,
                     help="Fail below this share of samples whose top-1 class matches FP32 "
                          "[default: 0.99 for FP16, 0.5 for INT8]."),
        click.option("--accept-mismatch", "accept_mismatch", is_flag=True,
                     help="Write the model even when it fails verification (a warning names the worst layers)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def refuse_given_without_int8(names) -> None:
    """The shared options arrive with their defaults filled in: only the ones the user gave are an error."""
    from rtresnet.errors import RtresnetError

    ctx = click.get_current_context()
    flags = {p.name: p.opts[0] for p in ctx.command.params}
    given = [k for k in names if ctx.get_parameter_source(k) != click.core.ParameterSource.DEFAULT]
    if given:
        raise RtresnetError(f"{', '.join(flags[k] for k in given)} only apply with --int8")


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--fp16", "precision", flag_value="fp16", help="Convert to FP16 (float32 inputs/outputs kept).")
@click.option("--int8", "precision", flag_value="int8", help="Quantize to INT8 Q/DQ with calibration.")
@click.option("--target", type=click.Choice(["tensorrt", "cpu"]),
              help="INT8 graph layout: TensorRT (symmetric S8) or onnxruntime CPU (U8 activations) "
                   "[default: from --backend, else cpu].")
@click.option("--backend", type=click.Choice(["tensorrt", "onnxruntime"]),
              help="Backend that will run the model; sets the default --target.")
@calibration_options
@click.option("--keep-fp32", multiple=True, metavar="NAME_OR_OPTYPE",
              help="With --fp16: keep this node or op type in FP32 (repeatable).")
@click.option("--cache-dir", type=click.Path(file_okay=False),
              help="Calibration cache folder [default: $RTRESNET_HOME/calib].")
@verification_options
@click.option("--no-verify", is_flag=True, help="Skip the comparison with the FP32 model.")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Output .onnx [default: MODEL-fp16.onnx or MODEL-int8-<target>.onnx beside MODEL].")
def quantize(model: str, precision: str | None, target: str | None, backend: str | None, keep_fp32: tuple[str, ...],
             cache_dir: str | None, min_cosine: float | None, min_agreement: float | None, accept_mismatch: bool,
             no_verify: bool, output: str | None, **calibration) -> None:
    """Put FP16 or INT8 (Q/DQ) precision into an FP32 rtresnet ONNX model.

    \b
    Examples:
      rtresnet quantize engines/resnet50.onnx --fp16
      rtresnet quantize engines/resnet50.onnx --int8 --backend tensorrt --calib-data ./calib_images
      rtresnet quantize digits.onnx --int8 --target cpu --calib-data digits --calib-method percentile
    """
    from rtresnet.cli.ui import stdout
    from rtresnet.errors import RtresnetError

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
    stdout.print(f"wrote {result.path}", highlight=False)
    stdout.print(f"size: {result.size_bytes / 1e6:.2f} MB (FP32 {result.source_size_bytes / 1e6:.2f} MB)",
                 highlight=False)
    if result.precision == "int8":
        cal = (f"reused from cache {result.cache_path}" if result.cache_hit
               else f"{result.calibration_seconds:.1f} s, cached in {result.cache_path}")
        stdout.print(f"int8: target {result.target}, {result.quantized_nodes} quantized nodes, method {result.method}, "
                     f"{result.calib_samples} samples; calibration {cal}", highlight=False)
    if result.comparison is not None:
        stdout.print(f"vs FP32: {result.comparison.summary()}", highlight=False)
