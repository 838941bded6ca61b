"""C++ vs Python: the latency of one ``infer`` call on the same onnxruntime engine, side by side.

The C++ side is ``rtresnet-classify --benchmark`` (``rtresnet::Engine::infer``: the ORT session of the engine, called
through the C API); the Python side is the ``Runner`` from ``rtresnet.runtime.load`` (validation, dispatch,
``InferenceSession.run``). Both use the same threads and the same session options; the timed region is one call on
a batch already in memory (no file reading, no image decoding). Blocks alternate, C++ first in even rounds.

    make cpp && python benchmarks/cpp_latency.py              # ResNet-50 224x224 b1, 2 threads, FP32 and INT8
    python benchmarks/cpp_latency.py --arch resnet18 --input-size 64 --rounds 3   # a quick look

The model's BN statistics are re-estimated on photo crops (rtresnet.realistic); INT8 is calibrated on 64 other photo
crops with entropy and kept even if it misses the FP32 agreement gate (latency does not depend on the ranges).
The report goes to benchmarks/results/cpp_latency_<date>_<machine>.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from rtresnet.cli.ui import setup_logging
from rtresnet.environment import cpu_info, versions
from rtresnet.fileutil import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from resnet50_cpu import machine_slug  # noqa: E402


def build_engines(arch: str, size: int, folder: Path, calib: int) -> dict[str, Path]:
    from rtresnet.engine.build import build_engine
    from rtresnet.export import export_onnx
    from rtresnet.precision.int8 import CalibrationSettings
    from rtresnet.realistic import photo_crops, save_realistic_checkpoint

    ckpt = save_realistic_checkpoint(arch, folder / f"{arch}.safetensors", input_size=size)
    onnx_path = export_onnx(arch, folder / f"{arch}.onnx", weights=ckpt, input_size=size).path
    np.save(folder / "calib.npy", photo_crops(calib, size, seed=11))
    settings = CalibrationSettings(str(folder / "calib.npy"), method="entropy", calib_size=calib,
                                   cache_dir=folder / "calib")
    # accept_mismatch: latency does not depend on the ranges, and 64 crops leave ResNet-50's INT8 short of the
    # 0.9 cosine gate (0.83-0.87 here); accuracy is bench's and the precision tests' subject, not this script's
    return {p: build_engine(onnx_path, precision=p, backend="onnxruntime", output=folder / f"{arch}_{p}.onnx",
                            calibration=settings if p == "int8" else None, accept_mismatch=p == "int8").path
            for p in ("fp32", "int8")}


def cpp_block(classify: Path, engine: Path, batch: Path, threads: int, iters: int, warmup: int) -> list[float]:
    done = subprocess.run([str(classify), str(engine), "--input", str(batch), "--json", "--threads", str(threads),
                           "--benchmark", str(iters), "--warmup", str(warmup)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: rtresnet-classify failed: {done.stderr.strip()}")
    return json.loads(done.stdout)["latency_ms"]["samples"]


def python_block(runner, x: np.ndarray, iters: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        runner.infer(x)
    out = []
    for _ in range(iters):
        start = time.perf_counter()
        runner.infer(x)
        out.append((time.perf_counter() - start) * 1e3)
    return out


def lscpu_line() -> str:
    """The CPU as lscpu names it, with its family/model (a hypervisor's "AMD EPYC" says nothing of the generation)."""
    cpu = cpu_info()
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    generation = f", family {fields['cpu family']} model {fields['model']}" if "cpu family" in fields else ""
    return (f"{cpu['model']}{generation}, {cpu['usable_cores']} usable cores, "
            f"ISA {' '.join(cpu['isa']) or 'baseline'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--iters", type=int, default=20, help="timed calls per side and round")
    p.add_argument("--warmup", type=int, default=5, help="untimed calls before each block")
    p.add_argument("--calib", type=int, default=64, help="photo crops to calibrate INT8 on")
    p.add_argument("--build", type=Path, default=ROOT / "build" / "cpp", help="the `make cpp` build folder")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    setup_logging(logging.WARNING)
    classify = args.build / "rtresnet-classify"
    if not classify.is_file():
        print(f"error: {classify} not found; run `make cpp` first", file=sys.stderr)
        return 1

    from rtresnet.realistic import photo_crops
    from rtresnet.runtime import load

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        engines = build_engines(args.arch, args.input_size, folder, args.calib)
        x = photo_crops(args.batch, args.input_size, seed=5)
        np.save(folder / "x.npy", x)
        for precision, engine in engines.items():
            times: dict[str, list[float]] = {"C++ rtresnet::Engine": [], "Python Runner": []}
            with load(engine, threads=args.threads) as runner:
                for r in range(args.rounds):
                    sides = list(times) if r % 2 == 0 else list(reversed(times))
                    for side in sides:
                        block = (cpp_block(classify, engine, folder / "x.npy", args.threads, args.iters, args.warmup)
                                 if side.startswith("C++") else python_block(runner, x, args.iters, args.warmup))
                        times[side].extend(block)
            for side, ts in times.items():
                rows.append((precision, side, statistics.median(ts), float(np.percentile(ts, 90)),
                             float(np.percentile(ts, 99))))
    v = versions()
    title = (f"{args.arch} {args.input_size}x{args.input_size} batch {args.batch}, onnxruntime {v['onnxruntime']} CPU "
             f"engines, {args.threads} threads; {args.rounds} rounds x {args.iters} calls per side, blocks alternating")
    lines = [f"# C++ vs Python infer latency ({datetime.now(timezone.utc):%Y-%m-%d})", "", title, "",
             f"Machine: {lscpu_line()}", "", "| engine | caller | p50 ms | p90 ms | p99 ms | vs Python p50 |",
             "|---|---|---|---|---|---|"]
    python_p50 = {r[0]: r[2] for r in rows if r[1] == "Python Runner"}
    for precision, side, p50, p90, p99 in rows:
        lines.append(f"| {precision} | {side} | {p50:.2f} | {p90:.2f} | {p99:.2f} | "
                     f"{(p50 / python_p50[precision] - 1) * 100:+.1f} % |")
    lines += ["", f"Command: `python benchmarks/cpp_latency.py --arch {args.arch} --input-size {args.input_size} "
                  f"--batch {args.batch} --threads {args.threads} --rounds {args.rounds} --iters {args.iters}`"]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"cpp_latency_{datetime.now(timezone.utc):%Y-%m-%d}_{machine_slug()}_{args.arch}.md"
    atomic_write_text(path, text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
