"""rtresnet's TensorRT INT8 graph against NVIDIA ModelOpt's on realistic ResNets (224x224, BN statistics from photos).

For each arch: the same FP32 ONNX and the same calibration crops go through `quantize_int8(target="tensorrt")` and
`python -m modelopt.onnx.quantization --quantize_mode int8 --calibration_eps cpu`. Printed and written as Markdown:
quantized activation tensors per producing op kind, entropy scale ratios, and cosine / top-1 agreement to FP32 on
held-out crops in onnxruntime CPU, both with its default optimizations and node by node (what TensorRT computes).

    .venv/bin/python benchmarks/int8_vs_modelopt.py --archs resnet18,resnet50 --calib 128 --eval 64
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
import time
from pathlib import Path

import numpy as np


def cpu_line() -> str:
    from rtresnet.environment import cpu_info

    cpu = cpu_info()
    return f"{cpu['model']} ({cpu['usable_cores']} cores; ISA: {', '.join(cpu['isa'])})"


def cpu_tag() -> str:
    """A short file-name tag such as ``intel-xeon-2c`` (the figures depend on the CPU)."""
    from rtresnet.environment import cpu_info

    cpu = cpu_info()
    words = [w.lower() for w in cpu["model"].replace("(R)", "").split() if w.isalpha()][:2] or [cpu["arch"]]
    return "-".join(words + [f"{cpu['usable_cores']}c"])


def one_arch(arch: str, size: int, calib: int, evaluate: int, method: str, folder: Path) -> list[str]:
    import onnx

    from rtresnet.compare import compare_logits
    from rtresnet.export import export_onnx
    from rtresnet.precision import quantize_int8
    from rtresnet.precision.modelopt_ref import activation_scales, compare_placement, modelopt_quantize
    from rtresnet.precision.report import run_logits
    from rtresnet.realistic import photo_crops, save_realistic_checkpoint

    ckpt = save_realistic_checkpoint(arch, folder / f"{arch}.safetensors", input_size=size)
    source = export_onnx(arch, folder / f"{arch}.onnx", weights=ckpt, input_size=size).path
    calib_npy = folder / f"calib_{size}.npy"
    np.save(calib_npy, photo_crops(calib, size, seed=7))
    held_out = photo_crops(evaluate, size, seed=11)

    t0 = time.perf_counter()
    ours = quantize_int8(source, folder / f"{arch}-rtresnet.onnx", calib_data=str(calib_npy), method=method,
                         target="tensorrt", calib_size=calib, cache_dir=folder / "calib", accept_mismatch=True)
    ours_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs = modelopt_quantize(source, calib_npy, folder / f"{arch}-modelopt.onnx", method=method)
    theirs_s = time.perf_counter() - t0

    m_ours, m_theirs = onnx.load(str(ours.path)), onnx.load(str(theirs))
    diff = compare_placement(m_ours, m_theirs)
    a, b = activation_scales(m_ours), activation_scales(m_theirs)
    ratios = np.array([a[t] / b[t] for t in b if t in a])
    lines = [f"### {arch} {size}x{size}, {method} on {calib} photo crops, evaluated on {evaluate} other crops", "",
             diff.table(), "",
             f"- tensors only in rtresnet's graph: {diff.only_ours or 'none'}; only in ModelOpt's: "
             f"{diff.only_reference or 'none'}",
             f"- activation scale ratio rtresnet/ModelOpt: min {ratios.min():.4f}, median {np.median(ratios):.4f}, "
             f"max {ratios.max():.4f}",
             f"- quantization time: rtresnet {ours_s:.0f} s, ModelOpt {theirs_s:.0f} s (process, incl. calibration)",
             "", "| graph | onnxruntime | cosine (mean) | cosine (min) | top-1 agreement | non-finite |",
             "|---|---|---|---|---|---|"]
    for exact in (False, True):
        ref = run_logits(source, held_out)
        for name, path in (("rtresnet", ours.path), ("ModelOpt", theirs)):
            c = compare_logits(ref, run_logits(path, held_out, exact=exact))
            lines.append(f"| {name} | {'node by node' if exact else 'default optimizations'} | {c.cosine_mean:.4f} | "
                         f"{c.cosine_min:.4f} | {c.top1_agreement:.1%} | {c.nonfinite} |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="resnet18,resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--calib", type=int, default=128)
    parser.add_argument("--eval", type=int, default=64)
    parser.add_argument("--method", default="entropy", choices=["entropy", "minmax"])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(2)
    import modelopt
    import onnxruntime

    lines = ["# rtresnet vs NVIDIA ModelOpt: TensorRT INT8 graph on realistic ResNets", "",
             f"CPU: {cpu_line()}; onnxruntime {onnxruntime.__version__}, nvidia-modelopt {modelopt.__version__}, "
             f"torch {torch.__version__}; {datetime.date.today()}",
             "Command: `.venv/bin/python benchmarks/int8_vs_modelopt.py " +
             f"--archs {args.archs} --size {args.size} --calib {args.calib} --eval {args.eval} "
             f"--method {args.method}`", ""]
    with tempfile.TemporaryDirectory(prefix="rtresnet-vs-modelopt-") as tmp:
        for arch in args.archs.split(","):
            lines += one_arch(arch, args.size, args.calib, args.eval, args.method, Path(tmp))
            print("\n".join(lines), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"int8_vs_modelopt_{datetime.date.today()}_{cpu_tag()}.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
