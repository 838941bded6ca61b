"""`rtresnet predict`: top-k classes for image files through any runner (thin adapter over predict_files)."""

from __future__ import annotations

import json
from pathlib import Path

import click

BACKEND_CHOICES = ("auto", "torch", "onnxruntime", "openvino", "tensorrt")


class _PredictCommand(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from rtresnet.cli.export_cmd import join_multi_values

        return super().parse_args(ctx, join_multi_values(args))  # --input-size H W


@click.command(cls=_PredictCommand)
@click.argument("model")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-k", "--topk", default=5, show_default=True, type=click.IntRange(min=1), help="Classes per image.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (a list, one entry per image).")
@click.option("--backend", type=click.Choice(BACKEND_CHOICES), default="auto", show_default=True,
              help="Runtime; auto follows the file (engine sidecar, .onnx) or torch for an arch name.")
@click.option("--device", default=None, help="cpu, cuda[:N], or tensorrt[:N] (onnxruntime's TensorRT EP).")
@click.option("--weights", default=None, help="Arch name only: named weights (IMAGENET1K_V2) or a checkpoint file.")
@click.option("--num-classes", type=click.IntRange(min=1), default=None, help="Arch name only: classifier size.")
@click.option("--in-channels", type=click.IntRange(min=1), default=3, show_default=True,
              help="Arch name only: input channels (1 for grayscale models).")
@click.option("--input-size", "input_size", metavar="N | H W", default=None,
              help="Arch name only: input height and width.")
@click.option("--labels", "labels_file", metavar="FILE", default=None,
              help="Class names, one per line (one per class), instead of the model's own.")
@click.option("--threads", type=click.IntRange(min=0), default=None, help="onnxruntime/OpenVINO intra-op threads.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Images per inference call.")
def predict(model: str, images: tuple[Path, ...], topk: int, as_json: bool, backend: str, device: str | None,
            weights: str | None, num_classes: int | None, in_channels: int, input_size: str | None,
            labels_file: str | None, threads: int | None, batch_size: int) -> None:
    """Print the top-k labels and probabilities for each IMAGE (files or folders).

    MODEL is an exported .onnx, an engine with its sidecar (.engine/.plan, .blob, or an onnxruntime engine), or an
    architecture name run by PyTorch with --weights. A missing or undecodable image is reported on its own
    line and the others still run; the exit code is 1 if any image failed.

    \b
    Example:
      rtresnet predict engines/resnet50_int8-entropy_b1-32_trt10.16_sm90.engine cat.jpg dog.png --topk 3
      rtresnet predict resnet50 --weights IMAGENET1K_V2 photos/ --json
      rtresnet predict model.onnx scan.png --labels classes.txt
    """
    from rtresnet.errors import RtresnetError
    from rtresnet.runtime import load, predict_files
    from rtresnet.runtime.loader import is_arch_name
    from rtresnet.runtime.predict import expand_paths

    options: dict = {}
    if threads is not None:
        options["threads"] = threads
    # RtresnetError, not click.UsageError: the CLI prints it as one `error:` line, without the usage block.
    if Path(model).exists():  # a folder too: load() says what to give instead
        if any(v is not None for v in (weights, num_classes, input_size)) or in_channels != 3:
            raise RtresnetError("--weights/--num-classes/--in-channels/--input-size apply to an arch name only; "
                                "a model file carries them")
    elif weights is None and is_arch_name(model):  # a missing path falls through: load() says not found
        raise RtresnetError(f"{model!r} is not a file; an arch name needs --weights (a named weight such as "
                            f"IMAGENET1K_V2, or a checkpoint file)")
    else:
        options.update(weights=weights, num_classes=num_classes, in_channels=in_channels, input_size=input_size)
    if input_size is not None:
        from rtresnet.export import parse_input_size  # imports torch: only for an arch name

        options["input_size"] = parse_input_size(input_size)
    labels = None
    if labels_file is not None:
        from rtresnet.spec import read_labels

        labels = read_labels(labels_file)
    paths = expand_paths(images)
    if not paths:
        raise RtresnetError(f"no image files found in {', '.join(str(p) for p in images)}")
    with load(model, backend=None if backend == "auto" else backend, device=device, **options) as runner:
        results = predict_files(runner, paths, topk=topk, batch_size=batch_size, labels=labels)

    failed = [r for r in results if not r.ok]
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in results], indent=2))
    for r in results:
        if not r.ok:
            click.echo(f"error: {r.error}", err=True)
        elif not as_json:
            click.echo(str(r.path))
            width = max(len(p.label) for p in r.predictions)
            for p in r.predictions:
                index = "" if p.label == str(p.index) else f"  ({p.index})"  # unlabeled models: the label is the index
                click.echo(f"  {p.probability:7.2%}  {p.label:<{width}}{index}".rstrip())
    if failed:
        click.echo(f"error: {len(failed)} of {len(results)} images failed", err=True)
        raise click.exceptions.Exit(1)
