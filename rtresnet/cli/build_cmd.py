"""`rtresnet build`: a thin adapter over `rtresnet.engine.build_engine`."""

from __future__ import annotations

import re

import click

from rtresnet.cli.options import (
    CALIBRATION_KWARGS,
    VERIFY_KWARGS,
    calibration_options,
    limited,
    one_precision,
    refuse_given_without_int8,
    verification_options,
)
from rtresnet.engine.build import DEVICES
from rtresnet.engine.request import BACKENDS, HARDWARE_COMPAT
from rtresnet.errors import RtresnetError

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> int:
    """'4GiB' -> 4294967296, '512MiB', '1.5GB', '1048576' (bytes)."""
    from rtresnet.spec import LIMITS, describe_range

    m = re.fullmatch(r"\s*(\d{1,15}(?:\.\d{1,15})?)\s*([A-Za-z]*)\s*", str(text))  # 15 digits: no float overflow
    if not m or m.group(2).lower() not in _UNITS:
        shown = text if len(str(text)) <= 24 else f"{str(text)[:20]}..."
        raise RtresnetError(f"--workspace: cannot read size {shown!r}; write it like 4GiB, 512MiB or a number of "
                            f"bytes ({describe_range('workspace')})")
    value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    lo, hi = LIMITS["workspace"]
    if not lo <= value <= hi:
        raise RtresnetError(f"--workspace {text} is out of range; give {describe_range('workspace')} "
                            "(e.g. 4GiB)")
    return value


@click.command(context_settings={"show_default": True})
# MODEL and --output are plain strings: build_engine checks them and says what is wrong in one line.
@click.argument("model", required=False)
@click.option("--arch", help="Export this architecture first instead of reading MODEL (e.g. resnet50).")
@click.option("--weights", help="With --arch: a named weight (IMAGENET1K_V2) or a checkpoint file.")
@click.option("--fp16", "--half", "fp16", is_flag=True, help="Convert an FP32 ONNX to FP16, then build.")
@click.option("--int8", is_flag=True, help="Quantize (Q/DQ, calibrated) an FP32 ONNX, then build.")
@click.option("--fp32", is_flag=True,
              help="Build the graph in its own precision (an FP16/INT8 ONNX stays so) [default].")
@calibration_options  # shared with `rtresnet quantize`
@verification_options
@click.option("--backend", type=click.Choice(BACKENDS), default="auto",
              help="auto: TensorRT where it and a CUDA GPU exist; on a CPU, every CPU backend installed "
                   "(onnxruntime, OpenVINO) is built and timed at the opt batch, and the fastest is kept.")
@click.option("--device", type=click.Choice(tuple(DEVICES)),
              help="Where the engine runs: cpu measures the CPU backends (as auto on a CPU machine), cuda builds a "
                   "TensorRT engine [default: from --backend].")
@click.option("--min-batch", type=limited("batch"),
              help="Smallest batch of the profile [default: 1, or the fixed batch].")
@click.option("--opt-batch", type=limited("batch"), help="Batch TensorRT tunes for [default: the max batch].")
@click.option("--max-batch", type=limited("batch"),
              help="Largest batch of the profile [default: 32, or the fixed batch].")
@click.option("--workspace", default="4GiB", help="TensorRT workspace memory pool limit (4GiB, 512MiB...).")
@click.option("--opt-level", type=click.IntRange(0, 5), default=3, help="TensorRT builder optimization level.")
@click.option("--timing-cache", type=click.Path(dir_okay=False),
              help="TensorRT timing cache shared across builds [default: timing.cache beside the engine].")
@click.option("--dla-core", type=int, help="Build for this DLA core (Jetson/DRIVE, TensorRT 10.x).")
@click.option("--gpu-fallback", is_flag=True, help="With --dla-core: run unsupported layers on the GPU.")
@click.option("--hardware-compat", type=click.Choice(HARDWARE_COMPAT), default="none",
              help="Let the engine run on other GPUs (slower): Ampere and newer, or the same compute capability.")
@click.option("--version-compat", is_flag=True, help="Let newer TensorRT versions (10 -> 11) load the engine.")
@click.option("--tf32", is_flag=True, help="Let FP32 layers use TF32 math on Ampere+ (faster, ~1e-3 rel. error).")
@click.option("--inference-precision", type=click.Choice(("f32", "bf16")), default="f32",
              help="OpenVINO's compute precision: bf16 is faster on CPUs with bf16 units and less exact (checked "
                   "against onnxruntime at build).")
@click.option("--force", is_flag=True, help="Rebuild even when a matching engine exists.")
@click.option("--engine-dir", default="engines", help="Folder of the default engine file name (without -o).")
@click.option("-o", "--output",
              help="Engine file: .engine/.plan for TensorRT, .onnx for onnxruntime, .blob for OpenVINO (with "
                   "auto, the suffix limits the choice) [default: engines/<model>_<precision>_b<min>-<max>_"
                   "<backend>.engine|.onnx|.blob].")
def build(model, arch, weights, fp16, int8, fp32, backend, device, min_batch, opt_batch, max_batch, workspace,
          opt_level, timing_cache, dla_core, gpu_fallback, hardware_compat, version_compat, tf32, inference_precision,
          force, engine_dir, output, **calibration) -> None:
    """Build an engine (TensorRT plan, onnxruntime model or OpenVINO blob) with a sidecar JSON from an ONNX model.

    An engine whose sidecar matches the request (FP32 model, precision, calibration settings and data, batches,
    versions) is reused without converting anything; --force rebuilds. File names follow one scheme:

    \b
      engines/r18_int8-entropy_cpu.onnx                 INT8 Q/DQ ONNX (beside the engine), for the cpu target
      engines/r18_int8-entropy_b1-32_ort1.22_cpu.onnx   its onnxruntime engine (+ .json sidecar)
      engines/r18_fp16_b1-32_trt10.16_sm90.engine       a TensorRT FP16 engine
      engines/r18_fp32_b1-1_ov2026.4_cpu.blob           an OpenVINO engine (compiled for this CPU)

    \b
    Examples:
      rtresnet build engines/resnet50.onnx --fp16 --backend tensorrt
      rtresnet build --arch resnet50 --weights IMAGENET1K_V2 --int8 --calib-data ./calib_images
      rtresnet build model.onnx --device cpu --max-batch 8 -o engines/model_cpu.onnx
    """
    from rtresnet.backends import engine_builder
    from rtresnet.engine import build_engine
    from rtresnet.precision import CalibrationSettings

    precision = one_precision(fp16=fp16, int8=int8, fp32=fp32) or "fp32"
    verify = {k: calibration.pop(k) for k in VERIFY_KWARGS}
    if precision != "int8":
        refuse_given_without_int8(CALIBRATION_KWARGS)
        calibration = {}
    if precision == "fp32" and (verify["accept_mismatch"] or any(verify[k] is not None for k in VERIFY_KWARGS[:2])):
        raise RtresnetError("--min-cosine, --min-agreement and --accept-mismatch judge an FP16 or INT8 conversion; "
                            "add --fp16 or --int8")
    if precision == "int8" and calibration.get("calib_data") is None:
        raise RtresnetError("--int8 needs calibration data: pass --calib-data DIR (an image folder, .npy, "
                            "'digits' or 'synthetic')")
    settings = CalibrationSettings(**{k: v for k, v in calibration.items() if v is not None}) \
        if precision == "int8" else None
    artifact = build_engine(model, arch=arch, weights=weights, precision=precision, backend=backend, device=device,
                            min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch,
                            workspace_bytes=parse_size(workspace), opt_level=opt_level, timing_cache=timing_cache,
                            dla_core=dla_core, gpu_fallback=gpu_fallback, hardware_compat=hardware_compat,
                            version_compat=version_compat, tf32=tf32, inference_precision=inference_precision,
                            force=force, output=output, engine_dir=engine_dir, **verify,
                            calibration=settings)
    s = artifact.sidecar
    click.echo(f"engine:  {artifact.path}")
    click.echo(f"sidecar: {artifact.sidecar_path}")
    for path in artifact.intermediates:
        click.echo(f"onnx:    {path} ({s.precision.upper()} ONNX the engine is built from)")
    where = engine_builder(s.backend).describe(s)
    click.echo(f"backend: {where}; {s.precision}; batch {s.profile['min_batch']}-{s.profile['max_batch']}")
    if s.selection:  # --backend auto on a CPU: what was measured, and what won
        from rtresnet.engine.select import describe

        click.echo(f"auto:    {describe(s.selection)}{' (measured at build)' if artifact.cache_hit else ''}")
    if (figures := _accuracy(s)) is not None:  # on stdout: a result, kept by -q
        click.echo(f"vs FP32: {figures}{' (recorded at build)' if artifact.cache_hit else ''}")
    if artifact.cache_hit:
        click.echo(f"cache:   hit (built {s.built_at}; --force rebuilds)")
    else:  # the build's time is the closing `done in` line's: the engine step alone would understate it
        click.echo("cache:   miss (built now)")


def _accuracy(sidecar) -> str | None:
    """The recorded FP16/INT8 vs FP32 figures in one phrase (None for FP32 builds)."""
    from rtresnet.compare import Tolerance
    from rtresnet.precision.report import accuracy, recorded_comparison

    recorded = recorded_comparison(sidecar.verification or {}, Tolerance())
    return accuracy(recorded) if recorded is not None else None
