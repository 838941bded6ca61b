"""`rtresnet export`: a thin adapter over `rtresnet.export.export_onnx`."""

from __future__ import annotations

import re

import click

from rtresnet.cli.options import limited

# Options that take one value per channel (or H W): click options have a fixed arity, so the words that follow
# them are joined into one comma-separated value before click parses the command line.
_MULTI_VALUE = ("--input-size", "--mean", "--std")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class _ExportCommand(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, join_multi_values(args))


def join_multi_values(args: list[str]) -> list[str]:
    """["--mean", "0.5", "0.4", "--std", ...] -> ["--mean", "0.5,0.4", "--std", ...]."""
    out: list[str] = []
    i = 0
    while i < len(args):
        out.append(args[i])
        if args[i] in _MULTI_VALUE:
            values = []
            while i + 1 < len(args) and _NUMBER.match(args[i + 1]):
                values.append(args[i + 1])
                i += 1
            if values:
                out.append(",".join(values))
        i += 1
    return out


def _floats(option: str, text: str | None) -> tuple[float, ...] | None:
    from rtresnet.errors import RtresnetError

    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise RtresnetError(f"{option} takes numbers, one per input channel, got {text!r}") from None


def _input_size(text: str) -> tuple[int, int]:
    """--input-size "N", "H W", "HxW" -> (H, W) within LIMITS, refused before the model is built at that size."""
    from rtresnet.errors import RtresnetError
    from rtresnet.export import parse_input_size
    from rtresnet.spec import check_range, describe_range

    parts = text.replace("x", " ").replace(",", " ").split()
    if len(parts) not in (1, 2) or not all(re.fullmatch(r"[+-]?\d{1,12}", p) for p in parts):
        raise RtresnetError(f"--input-size takes one integer or two (H W) in {describe_range('input size')}, "
                            f"got {text!r}")
    for p in parts:
        check_range("input size", int(p), "--input-size")
    return parse_input_size(text)


@click.command(cls=_ExportCommand)
@click.option("--arch", required=True, help="Architecture (see `rtresnet models`).")
@click.option("--weights", help="Named weights (IMAGENET1K_V2, DEFAULT) or a checkpoint file; random init if unset.")
@click.option("--num-classes", type=limited("num classes"),
              help="Classifier size (default: the checkpoint's, 1000 without weights).")
@click.option("--in-channels", type=limited("in channels"), default=3, show_default=True,
              help="Input channels (1 for grayscale).")
@click.option("--reset-head", is_flag=True, help="Re-initialize the classifier when --num-classes differs.")
@click.option("--input-size", "input_size", metavar="N | H W",
              help="Input height and width (default: the crop, else 224).")
@click.option("--batch", type=limited("batch"), help="Fix the batch size (default: dynamic batch axis).")
@click.option("--max-batch", type=limited("batch"),
              help="Largest batch planned for the dynamic axis (recorded in metadata).")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset (13..20).")
@click.option("--preprocess", type=click.Choice(["none", "uint8-nhwc-rgb", "uint8-nhwc-bgr"]), default="none",
              show_default=True, help="Fuse preprocessing: the graph takes (N,H,W,3) uint8 frames.")
@click.option("--resize", type=limited("resize"),
              help="Custom weights: shorter side resized to this before the crop [default: 256/224 of the crop's "
                   "longer side, so any photo fills it].")
@click.option("--crop", type=limited("input size"), help="Custom weights: center crop (= input size).")
@click.option("--mean", metavar="M ...", help="Custom weights: per-channel mean (on the 0..1 scale).")
@click.option("--std", metavar="S ...", help="Custom weights: per-channel std.")
@click.option("--interpolation", type=click.Choice(["bilinear", "bicubic", "nearest"]),
              help="Custom weights: resize interpolation.")
@click.option("--labels", "labels_file", metavar="FILE", help="Class names, one per line (one per class).")
@click.option("--output", "-o", help="Output .onnx path (default: engines/<arch>.onnx).")
@click.option("--no-verify", is_flag=True, help="Skip the onnxruntime-vs-PyTorch check.")
def export(arch: str, weights: str | None, num_classes: int | None, in_channels: int, reset_head: bool,
           input_size: str | None, batch: int | None, max_batch: int | None, opset: int, preprocess: str,
           resize: int | None, crop: int | None, mean: str | None, std: str | None, interpolation: str | None,
           labels_file: str | None, output: str | None, no_verify: bool) -> None:
    """Export a ResNet to a verified ONNX file with its preprocessing and labels in the metadata.

    \b
    Examples:
      rtresnet export --arch resnet50 --weights IMAGENET1K_V2
      rtresnet export --arch resnet18 --weights ckpt.pth --input-size 128 --mean 0.5 0.5 0.5 --std 0.25 0.25 0.25
      rtresnet export --arch resnet50 --preprocess uint8-nhwc-bgr --batch 8 -o engines/r50_bgr.onnx
    """
    from rtresnet.errors import RtresnetError
    from rtresnet.export import check_input_size, export_onnx, make_preprocessing, read_labels

    size = _input_size(input_size) if input_size is not None else None
    if crop is not None and size is not None and size != (crop, crop):
        raise RtresnetError(f"--crop {crop} differs from --input-size {size[0]}x{size[1]}; the crop is the input "
                            "size, give one of them")
    size = size or (check_input_size(crop) if crop is not None else (224, 224))
    custom = any(v is not None for v in (resize, crop, mean, std, interpolation))
    prep = make_preprocessing(in_channels, size, resize=resize, mean=_floats("--mean", mean),
                              std=_floats("--std", std), interpolation=interpolation or "bilinear") if custom else None
    labels = read_labels(labels_file, num_classes) if labels_file is not None else None
    input_format = "float-nchw" if preprocess == "none" else preprocess
    result = export_onnx(arch, output, weights=weights, num_classes=num_classes, in_channels=in_channels,
                         reset_head=reset_head, input_size=size, batch=batch, max_batch=max_batch, opset=opset,
                         input_format=input_format, preprocessing=prep, labels=labels,  # type: ignore[arg-type]
                         verify=not no_verify)
    _report(result)


def _report(result) -> None:
    from rtresnet.cli.ui import stdout

    info = result.info
    p = info.preprocessing
    lines = [
        f"wrote {result.path}",
        f"  sha256   {result.sha256}",
        f"  opset    {result.opset}",
        *(f"  input    {s.name} {list(s.shape)} {s.dtype} ({info.input_format})" for s in result.inputs),
        *(f"  output   {s.name} {list(s.shape)} {s.dtype}" for s in result.outputs),
        f"  weights  {info.weights or 'random init'}",
        f"  preproc  resize {p.resize}, crop {p.crop[0]}x{p.crop[1]}, {p.interpolation}, mean {list(p.mean)}, "
        f"std {list(p.std)}",
    ]
    if result.max_batch is not None:
        lines.append(f"  max batch {result.max_batch}")
    v = result.verification
    lines.append(f"  verified {v.summary()}" if v is not None else "  verified no (--no-verify)")
    for line in lines:
        stdout.print(line, highlight=False, markup=False, soft_wrap=True)
