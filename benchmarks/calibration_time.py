"""ResNet-50 INT8 calibration time per method, and the CPU-target latency against FP32 (onnxruntime CPU).

Random weights at 224x224 and synthetic calibration images: the timing does not depend on what the pixels
show (accuracy is checked on real data in tests/test_precision.py). Timed region for calibration: the
calibrator's inference over all samples plus the range computation (``PrecisionResult.calibration_seconds``).
Latency: batch 1, median of --runs after warm-up, one onnxruntime session per model, all cores.

    .venv/bin/python benchmarks/calibration_time.py --calib-size 512 --methods entropy,minmax,percentile
    .venv/bin/python benchmarks/calibration_time.py --digits   # held-out top-1: FP32, FP16, INT8 per target x method
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def latency_ms(path: Path, runs: int) -> float:
    from rtresnet.precision.report import session
    from rtresnet.spec import INPUT_NAME

    sess = session(path)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    for _ in range(5):
        sess.run(None, {INPUT_NAME: x})
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {INPUT_NAME: x})
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def digits_accuracy(methods: list[str], calib_size: int) -> None:
    """Top-1 on the digits held-out split (real data) for FP32, FP16 and INT8 per target x method."""
    from rtresnet.data.digits import DIGITS_PREPROCESSING, digits_checkpoint, digits_inputs, digits_labels
    from rtresnet.export import export_onnx
    from rtresnet.precision import convert_fp16, quantize_int8
    from rtresnet.precision.report import top1_accuracy

    x, y = digits_inputs("test")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        fp32 = export_onnx("resnet18", tmp_path / "digits.onnx", weights=digits_checkpoint(), in_channels=1,
                           num_classes=10, input_size=32, preprocessing=DIGITS_PREPROCESSING,
                           labels=digits_labels()).path
        print(f"FP32: {top1_accuracy(fp32, x, y):.2%}")
        print(f"FP16: {top1_accuracy(convert_fp16(fp32, tmp_path / 'fp16.onnx').path, x, y):.2%}")
        for target in ("tensorrt", "cpu"):
            for method in methods:
                r = quantize_int8(fp32, tmp_path / f"{target}-{method}.onnx", calib_data="digits", method=method,
                                  target=target, calib_size=calib_size, cache_dir=tmp_path / "cache")
                print(f"INT8 {target:>8} {method:>10}: {top1_accuracy(r.path, x, y):.2%} "
                      f"(calibration {r.calibration_seconds:.1f} s on {r.calib_samples} samples)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--calib-size", type=int, default=512)
    parser.add_argument("--calib-batch", type=int, default=16)
    parser.add_argument("--methods", default="entropy,minmax,percentile")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    parser.add_argument("--digits", action="store_true", help="Accuracy on the digits model instead of timing.")
    args = parser.parse_args()
    if args.digits:
        digits_accuracy(args.methods.split(","), args.calib_size)
        return

    from rtresnet.environment import cpu_info
    from rtresnet.export import export_onnx
    from rtresnet.precision import quantize_int8

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        fp32 = export_onnx(args.arch, tmp_path / f"{args.arch}.onnx", input_size=224, verify=False).path
        figures: dict = {"arch": args.arch, "calib_size": args.calib_size, "data": "synthetic", "cpu": cpu_info(),
                         "calibration_seconds": {}}
        cpu_model = None
        for method in args.methods.split(","):
            result = quantize_int8(fp32, tmp_path / f"{method}.onnx", calib_data="synthetic", method=method,
                                   target="cpu", calib_size=args.calib_size, calib_batch=args.calib_batch,
                                   cache_dir=tmp_path / "cache", verify=False)
            figures["calibration_seconds"][method] = round(result.calibration_seconds, 2)
            print(f"{method:>10}: calibration {result.calibration_seconds:.1f} s for {result.calib_samples} images "
                  f"(whole conversion {result.seconds:.1f} s)", flush=True)
            cpu_model = cpu_model or result.path
        figures["latency_ms_b1"] = {"fp32": round(latency_ms(fp32, args.runs), 2),
                                    "int8_cpu_target": round(latency_ms(cpu_model, args.runs), 2)}
        print(f"batch-1 latency (median of {args.runs}): FP32 {figures['latency_ms_b1']['fp32']:.1f} ms, "
              f"INT8 cpu target {figures['latency_ms_b1']['int8_cpu_target']:.1f} ms")
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
