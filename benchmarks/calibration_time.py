"""ResNet-50 INT8 calibration time per method, and the CPU-target latency against FP32 (onnxruntime CPU).

Random weights at 224x224 and synthetic calibration images: the timing does not depend on what the pixels
show (accuracy is checked on real data in tests/test_precision.py). Timed region for calibration: the
calibrator's inference over all samples plus the range computation (``PrecisionResult.calibration_seconds``).
Latency: batch 1, median of --runs after warm-up, one onnxruntime session per model, all cores.

    .venv/bin/python benchmarks/calibration_time.py --calib-size 512 --methods entropy,minmax,percentile
    .venv/bin/python benchmarks/calibration_time.py --digits   # held-out top-1: FP32, FP16, INT8 per target x method
    .venv/bin/python benchmarks/calibration_time.py --compare-stock   # rtresnet's calibration vs onnxruntime's as
                                        # shipped, same model and data, side by side, with the largest range change
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


def compare_stock(fp32: Path, methods: list[str], calib_size: int, calib_batch: int, tmp: Path,
                  realistic: bool = False) -> dict:
    """Each method twice on the same prepared model and samples: rtresnet's fast path, then onnxruntime's
    calibrators as shipped; times and the largest relative difference of any range end."""
    import numpy as np
    import onnx

    from rtresnet.data.datasets import load_dataset
    from rtresnet.precision.calibrate import calibrate, needed_tensors
    from rtresnet.precision.int8 import QuantSettings, _pre_process, _quantize
    from rtresnet.spec import read_model_info

    prepared = _pre_process(fp32, tmp / "prepared.onnx")
    model = onnx.load(str(prepared))
    source = "synthetic"
    if realistic:  # photo crops: activations (and histogram ranges) like a trained network's on real images
        from rtresnet.realistic import photo_crops

        source = tmp / "crops.npy"
        np.save(source, photo_crops(calib_size, 224, seed=5))
    data = load_dataset(str(source), read_model_info(fp32), size=calib_size)
    out = {}
    for method in methods:
        seconds, found = {}, {}
        for fast in (True, False):
            work = tmp / f"{method}-{fast}"
            work.mkdir()
            t0 = time.perf_counter()
            tensors = None
            if fast:  # as quantize_int8 does: only the tensors quantization reads (a dry run finds them)
                settings = QuantSettings.for_target("cpu", model)
                tensors = needed_tensors(model, lambda r, s=settings, m=method, w=work: _quantize(prepared, s, r, m,
                                                                                                   [], w), method)
            r = calibrate(prepared, data, method, 99.99, "cpu", calib_batch, work, fast=fast, tensors=tensors)
            seconds[fast] = time.perf_counter() - t0
            found[fast] = {k: np.asarray(v.range_value, dtype=np.float64).ravel() for k, v in r.data.items()}
        worst = max(float(np.max(np.abs(v - found[False][k]) / np.maximum(np.abs(found[False][k]), 1e-6)))
                    for k, v in found[True].items())  # the fast path calibrates a subset: compared on it
        out[method] = {"rtresnet_s": round(seconds[True], 1), "onnxruntime_stock_s": round(seconds[False], 1),
                       "max_rel_range_diff": worst}
        print(f"{method:>10}: rtresnet {seconds[True]:.1f} s, onnxruntime stock {seconds[False]:.1f} s "
              f"({seconds[False] / seconds[True]:.1f}x) for {len(data)} images; largest range difference "
              f"{worst:.1e} (relative) over the {len(found[True])} of {len(found[False])} tensors rtresnet calibrates",
              flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--calib-size", type=int, default=512)
    parser.add_argument("--calib-batch", type=int, default=16)
    parser.add_argument("--methods", default="entropy,minmax,percentile")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    parser.add_argument("--digits", action="store_true", help="Accuracy on the digits model instead of timing.")
    parser.add_argument("--compare-stock", action="store_true",
                        help="Time onnxruntime's calibrators as shipped beside rtresnet's, on the same data.")
    parser.add_argument("--realistic", action="store_true",
                        help="With --compare-stock: a realistic ResNet (BN statistics from photos) on photo crops.")
    args = parser.parse_args()
    if args.digits:
        digits_accuracy(args.methods.split(","), args.calib_size)
        return

    from rtresnet.environment import cpu_info
    from rtresnet.export import export_onnx
    from rtresnet.precision import quantize_int8

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        weights = None
        if args.realistic:
            from rtresnet.realistic import save_realistic_checkpoint

            weights = str(save_realistic_checkpoint(args.arch, tmp_path / "realistic.safetensors"))
        fp32 = export_onnx(args.arch, tmp_path / f"{args.arch}.onnx", weights=weights, input_size=224,
                           verify=False).path
        if args.compare_stock:
            from rtresnet.environment import cpu_info as cpu

            print(f"machine: {cpu()['model']}, {cpu()['usable_cores']} cores, ISA {' '.join(cpu()['isa'])}")
            figures = compare_stock(Path(fp32), args.methods.split(","), args.calib_size, args.calib_batch, tmp_path,
                                    realistic=args.realistic)
            if args.json:
                args.json.write_text(json.dumps(figures, indent=2))
            return
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
