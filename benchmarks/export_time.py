"""Wall time of `rtresnet export` (export + onnxruntime verification) per architecture.

The timed region is one `export_onnx` call: model build, BatchNorm folding, ONNX export and clean-up, checks,
the atomic write, and verification (3 seeded batches of 1, 2 and 1 images, PyTorch eager vs onnxruntime CPU).
Also timed without verification, to show what the check costs. Random-init weights (same graph and cost as
trained ones). The machine load is printed because a shared machine skews every figure.

    .venv/bin/python benchmarks/export_time.py                   # resnet50 and resnet18 at 224
    .venv/bin/python benchmarks/export_time.py --arch resnet101 --repeat 5 --threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from rtresnet.export import export_onnx


def measure(arch: str, input_size: int, verify: bool, repeat: int, folder: Path) -> tuple[list[float], list[float]]:
    """(wall seconds, CPU seconds of this process over all its threads) per run."""
    wall, cpu = [], []
    for i in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        export_onnx(arch, folder / f"{arch}-{i}.onnx", input_size=input_size, verify=verify)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", action="append", help="architecture (repeatable; default resnet50, resnet18)")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="PyTorch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    archs = args.arch or ["resnet50", "resnet18"]

    export_onnx("resnet18", Path(tempfile.gettempdir()) / "rtresnet-warmup.onnx", num_classes=10, input_size=64)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cpus, "
          f"load average {os.getloadavg()[0]:.2f} before the run")
    # CPU seconds show the work itself; wall seconds also show waiting for cores other processes hold.
    print(f"{'arch':<18}{'size':>5}  {'export+verify wall s (median, min)':>35}  {'CPU s':>6}  "
          f"{'export only wall s':>18}  {'CPU s':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for arch in archs:
            full, full_cpu = measure(arch, args.input_size, True, args.repeat, Path(tmp))
            bare, bare_cpu = measure(arch, args.input_size, False, args.repeat, Path(tmp))
            print(f"{arch:<18}{args.input_size:>5}  {statistics.median(full):>26.2f} ({min(full):5.2f})"
                  f"  {statistics.median(full_cpu):>6.2f}  {statistics.median(bare):>18.2f}"
                  f"  {statistics.median(bare_cpu):>6.2f}")
    print(f"load average {os.getloadavg()[0]:.2f} after the run")


if __name__ == "__main__":
    main()
