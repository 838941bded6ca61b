"""`rtresnet bench`: latency, throughput and accuracy against PyTorch FP32 (thin adapter over rtresnet.bench.run)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from rtresnet.bench.backends import BACKENDS
from rtresnet.bench.harness import DEFAULT_BACKENDS, DEFAULT_GPU_BACKENDS, DEVICES
from rtresnet.cli.options import limited
from rtresnet.spec import LIMITS, describe_range

GATE_EXIT_CODE = 3


def _int_list(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers in {describe_range('batch')} such as 1,8,32, "
                                 f"got {value!r}") from None
    lo, hi = LIMITS["batch"]
    if not sizes or any(not lo <= s <= hi for s in sizes):
        raise click.BadParameter(f"batch sizes must be integers in {describe_range('batch')}, got {value!r}")
    return sizes


@click.command()
@click.argument("model_files", nargs=-1, type=click.Path(path_type=Path))
@click.option("--arch", default=None, help="Architecture to benchmark (e.g. resnet50); engines are made from it.")
@click.option("--models", "models_flag", is_flag=True,
              help="Benchmark the given engine/ONNX files (MODEL_FILES) instead of --arch.")
@click.option("--weights", default=None, help="Named weights (IMAGENET1K_V2) or a checkpoint; random if omitted.")
@click.option("--num-classes", type=limited("num classes"), default=None, help="Classifier size (default: weights').")
@click.option("--in-channels", type=limited("in channels"), default=3, show_default=True, help="Input channels.")
@click.option("--input-size", type=limited("input size"), default=224, show_default=True,
              help="Square input size (--arch only: model files have their own).")
@click.option("--backends", default=None,
              help=f"Comma-separated, from: {', '.join(BACKENDS)} [default: {','.join(DEFAULT_BACKENDS)}; with "
                   f"--device cuda: {','.join(DEFAULT_GPU_BACKENDS)}]. Not with model files.")
@click.option("--device", type=click.Choice(DEVICES), default=None,
              help="Only backends on this device; an error when this machine has no such device [default: any].")
@click.option("--baseline", type=click.Path(path_type=Path), default=None,
              help="One of the model files: compare the others with it (speedup and agreement) instead of PyTorch.")
@click.option("--wide", is_flag=True, help="Every column (size, RSS, CoV, agreement, files) in the table.")
@click.option("--batch-sizes", default="1", show_default=True, callback=_int_list, help="e.g. 1,8,32")
@click.option("--warmup", type=click.IntRange(min=0), default=None, help="Warm-up iterations [default: 3].")
@click.option("--warmup-s", type=click.FloatRange(min=0), default=None, help="Warm-up seconds instead.")
@click.option("--iters", type=click.IntRange(min=1), default=None, help="Timed iterations per batch size.")
@click.option("--duration-s", type=click.FloatRange(min=0), default=None,
              help="Timed seconds per batch size instead [default: 3, at least 5 iterations].")
@click.option("--threads", type=limited("threads", low=1), default=None,
              help="CPU threads for PyTorch and onnxruntime [default: usable cores].")
@click.option("--data", default="synthetic", show_default=True,
              help="Inputs: an image folder (ImageFolder layout = labeled), .npy/.npz, digits, or synthetic.")
@click.option("--samples", type=click.IntRange(min=1), default=None,
              help="Samples for accuracy [default: all of a folder/digits, 64 synthetic].")
@click.option("--calib-data", default=None, help="INT8 calibration data [default: --data; digits train split].")
@click.option("--calib-size", type=limited("calib size"), default=512, show_default=True,
              help="INT8 calibration samples (as build; NVIDIA recommends at least 500).")
@click.option("--calib-method", type=click.Choice(("entropy", "minmax", "percentile")), default="entropy",
              show_default=True, help="INT8 calibration method.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for sampling the data.")
@click.option("--json", "json_path", type=click.Path(path_type=Path, allow_dash=True), default=None,
              help="Write the JSON report; '-' writes it to stdout, and the table then goes to stderr.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), default=None, help="Write a CSV (one row per "
              "backend and batch size).")
@click.option("--markdown", "markdown_path", type=click.Path(path_type=Path), default=None,
              help="Write a Markdown report.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), default=None,
              help="Write a PNG: latency vs batch size, accuracy vs latency.")
@click.option("--min-top1", type=float, default=None, help="Gate: every backend's top-1 must be >= this (%).")
@click.option("--max-top1-drop", type=float, default=None,
              help="Gate: every backend's top-1 drop vs PyTorch FP32 must be <= this (percentage points).")
@click.option("--work-dir", type=click.Path(path_type=Path), default=None,
              help="Keep the ONNX/engines here (reused by later runs) [default: a temporary folder].")
def bench(model_files: tuple[Path, ...], arch: str | None, models_flag: bool, weights: str | None,
          num_classes: int | None, in_channels: int, input_size: int, backends: str | None, device: str | None,
          baseline: Path | None, wide: bool, batch_sizes: tuple[int, ...],
          warmup: int | None, warmup_s: float | None, iters: int | None, duration_s: float | None,
          threads: int | None, data: str, samples: int | None, calib_data: str | None, calib_size: int,
          calib_method: str, seed: int, json_path: Path | None, csv_path: Path | None, markdown_path: Path | None,
          plot_path: Path | None, min_top1: float | None, max_top1_drop: float | None, work_dir: Path | None) -> None:
    """Benchmark backends against PyTorch eager FP32 on the same inputs, batch sizes and threads.

    Prints one row per backend and batch size: label (torch, ort int8, trt fp16...), top-1 and its drop (or the
    agreement with the baseline on unlabeled data), p50/p99 latency (host to host), images/s and speedup, then one
    line: the fastest backend and each gate passed or failed. --wide adds size, memory, CoV, agreement and files.
    A speedup marked ? rests on unstable timing or a busy machine (see the footnote). A backend that cannot run
    here gets a row with the reason. With --json - the JSON report is the only thing on stdout (the table goes to
    stderr). Exit status: 0 ok, 1 error, 2 usage error, 3 a --min-top1/--max-top1-drop gate failed.

    \b
    Example:
      rtresnet bench --arch resnet50 --backends torch,onnxruntime,onnxruntime-int8 --batch-sizes 1,32 \\
          --threads 2 --markdown bench.md --plot bench.png
      rtresnet bench --arch resnet18 --weights digits.safetensors --in-channels 1 --num-classes 10 \\
          --input-size 32 --data digits --max-top1-drop 1
      rtresnet bench --models engines/resnet50_int8-entropy_b1-32_ort1.32_cpu.onnx engines/resnet50.onnx \\
          --weights IMAGENET1K_V2
      rtresnet bench --models b.onnx a.onnx --baseline a.onnx --json - | jq .backends[0].accuracy
    """
    from rich.console import Console

    from rtresnet.bench import TimingConfig, run, write_reports
    from rtresnet.bench.report import rich_table, summary_line, terminal_table
    from rtresnet.fileutil import check_output_path

    ctx = click.get_current_context()
    if models_flag and not model_files:
        raise click.UsageError("--models needs one or more engine/ONNX files after it")
    if arch is not None and model_files:
        raise click.UsageError("give --arch or model files, not both")
    if arch is None and not model_files:
        raise click.UsageError("give --arch NAME or --models FILE...")
    if model_files:  # model files fix these themselves: an option that would be ignored is an error
        given = [f"--{name.replace('_', '-')}" for name in ("input_size", "backends", "num_classes", "in_channels")
                 if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE]
        if given:
            raise click.UsageError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to --arch only; "
                                   f"model files have their own input size and classes and are the backends")
    elif baseline is not None:
        raise click.UsageError("--baseline picks one of the --models files; with --arch the baseline is PyTorch")
    if warmup is not None and warmup_s is not None:
        raise click.UsageError("--warmup and --warmup-s are alternatives; give one")
    if iters is not None and duration_s is not None:
        raise click.UsageError("--iters and --duration-s are alternatives; give one")
    json_stdout = json_path is not None and str(json_path) == "-"
    for path in (None if json_stdout else json_path, csv_path, markdown_path, plot_path):
        if path is not None:
            check_output_path(path)  # refuse an unwritable path before minutes of benchmarking
    report = run(arch, weights=weights, num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                 backends=backends, models=model_files, baseline=baseline, device=device, batch_sizes=batch_sizes,
                 timing=TimingConfig(warmup_iters=warmup, warmup_s=warmup_s, iters=iters, duration_s=duration_s),
                 threads=threads, data=data, samples=samples, calib_data=calib_data, calib_size=calib_size,
                 calib_method=calib_method, seed=seed, min_top1=min_top1, max_top1_drop=max_top1_drop,
                 work_dir=work_dir)
    # the table's width: the terminal's (or COLUMNS); piped without COLUMNS, wide enough not to fold a label
    stream = sys.stderr if json_stdout else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS", "").isdigit() else 160
    console = Console(file=stream, width=width, soft_wrap=False)
    table = terminal_table(report, wide=wide, width=console.width)
    if wide and table.width() > console.width:
        console.width = table.width()  # every column was asked for: the terminal may wrap lines, not numbers
    console.print(rich_table(report, wide=wide, width=console.width))
    for line in table.footnotes:
        click.echo(line, err=json_stdout)
    for note in report.notes:
        click.echo(f"warning: {note}", err=True)
    for b in report.backends:
        for w in b.warnings:
            click.echo(f"warning: {b.name}: {w}", err=True)
    if json_stdout:
        click.echo(report.to_json())
    for path in write_reports(report, json_path=None if json_stdout else json_path, csv_path=csv_path,
                              markdown_path=markdown_path, plot_path=plot_path):
        click.echo(f"wrote {path}", err=True)
    for g in report.gate_failures:
        click.echo(f"gate failed: {g.message}", err=True)
    click.echo(summary_line(report), err=json_stdout)
    if model_files and not any(b.ok for b in report.backends):  # nothing measured: not a success
        from rtresnet.errors import RtresnetError

        first = next((b for b in report.backends if b.reason), None)
        why = f" ({first.artifact or first.name}: {first.reason})" if first is not None else ""
        raise RtresnetError(f"none of the model files ran{why}")
    if report.gate_failures:
        raise click.exceptions.Exit(GATE_EXIT_CODE)
