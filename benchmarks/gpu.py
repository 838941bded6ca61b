"""ResNet-50 at 224x224 on a CUDA GPU: PyTorch CUDA FP32 / FP16 (autocast, channels_last) vs onnxruntime CUDA and
TensorRT FP16/INT8 engines, side by side in one process. Skips with a message (exit 0) where there is no GPU.

    python benchmarks/gpu.py                     # batch 1, 32, 256
    python benchmarks/gpu.py --batch-sizes 1,8 --out reports

Each GPU row has two scopes, as trtexec splits them: host to host (input and logits in host memory, copies
included) and a device scope with the input already on the GPU: "compute" for TensorRT (CUDA events on the
runner's own stream around the engine run, as trtexec's GPU Compute Time), "gpu-resident" for the others (CUDA
events on the caller's stream around infer(), so their host-side work counts too). TensorRT rows use one engine per
batch size, optimized for it. FP32 rows run with TF32 off (torch-cuda, TensorRT); onnxruntime-cuda keeps its
defaults. Backends this machine lacks (onnxruntime without its CUDA provider, no TensorRT) get a row saying so.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

from rtresnet.bench.backends import GPU_BACKENDS


def device_table(report) -> str:
    """Markdown: host-to-host and device-only latency per GPU backend and batch size."""
    rows = ["| backend | batch | host p50 ms | host p99 ms | host img/s | device scope | device p50 ms | "
            "device p99 ms | device img/s | speedup (host) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for b in report.backends:
        for r in b.batches:
            d = r.device
            rows.append(f"| {b.name} | {r.batch_size} | {r.host.latency_ms_median:.3f} | {r.host.latency_ms_p99:.3f} "
                        f"| {r.throughput_img_s:.0f} | {b.device_scope or ''} | "
                        f"{d.latency_ms_median if d else float('nan'):.3f} | "
                        f"{d.latency_ms_p99 if d else float('nan'):.3f} | {r.device_throughput_img_s or 0:.0f} | "
                        f"{r.speedup_vs_baseline or float('nan'):.2f}x |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-sizes", default="1,32,256")
    p.add_argument("--duration-s", type=float, default=3.0)
    p.add_argument("--weights", default=None, help="e.g. IMAGENET1K_V2; random weights if omitted")
    p.add_argument("--backends", default=",".join(GPU_BACKENDS))
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    p.add_argument("--work-dir", type=Path, default=None)
    p.add_argument("--tag", default="", help="added to the result file names (e.g. the step of a GPU check)")
    args = p.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("skipped: no CUDA GPU visible to PyTorch (this script needs one; the CPU benchmark is "
              "benchmarks/resnet50_cpu.py)")
        return 0

    from rich.console import Console

    from rtresnet.bench import TimingConfig, markdown_text, rich_table, run, write_reports
    from rtresnet.cli.ui import setup_logging
    from rtresnet.fileutil import atomic_write_text

    setup_logging(logging.WARNING)
    sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    report = run("resnet50", weights=args.weights, input_size=224, backends=args.backends, batch_sizes=sizes,
                 timing=TimingConfig(warmup_s=1.0, duration_s=args.duration_s, min_iters=20), data="synthetic",
                 samples=max(64, max(sizes)), calib_size=128, work_dir=args.work_dir)
    console = Console()
    (console if console.is_terminal else Console(width=200)).print(rich_table(report))
    table = device_table(report)
    print(table)
    gpu = (report.environment.get("gpu") or {}).get("name", "gpu")
    slug = re.sub(r"[^A-Za-z0-9]+", "-", gpu).strip("-").lower()
    args.out.mkdir(parents=True, exist_ok=True)
    tag = f"_{re.sub(r'[^A-Za-z0-9-]+', '-', args.tag)}" if args.tag else ""
    stem = args.out / f"resnet50_gpu_{datetime.now(timezone.utc):%Y-%m-%d}_{slug}{tag}"
    write_reports(report, json_path=stem.with_suffix(".json"), plot_path=stem.with_suffix(".png"))
    atomic_write_text(stem.with_suffix(".md"), markdown_text(report) + "\nHost-to-host vs device-only:\n\n" + table +
                      f"\n\nReproduce: `python benchmarks/gpu.py --batch-sizes {args.batch_sizes} --backends "
                      f"{args.backends}`\n")
    print(f"wrote {stem}.json, .md, .png")
    failed = [f"{b.name}: {b.reason}" for b in report.backends if b.status == "failed"]
    for line in failed:
        print(f"failed: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
