"""ResNet-50 224x224 on the CPU: rtresnet's CPU engines against the peers a user would pick, on the same files.

Rows: PyTorch eager FP32; onnxruntime and OpenVINO used directly (their own defaults) on the FP32 ONNX and on the
INT8 Q/DQ ONNX that `rtresnet quantize --target cpu` writes; rtresnet's onnxruntime and OpenVINO engines built from
those files; and `rtresnet build --backend auto`, which measures the CPU backends and keeps the fastest. rtresnet's
engines are built for the timed batch, as a deployment would (`--max-batch 1` for b1: a static shape; batches 1-32
for b32; auto measures at that batch), as bench builds TensorRT engines per batch. Batch 1 latency and batch 32
throughput, same threads for all, every runtime loaded in one process and timed in blocks, round-robin over --rounds
rounds (the first call of each block is not timed: the previous runtime's idle threads may still spin). The model is
a realistic ResNet-50 (BN statistics re-estimated on photo crops, rtresnet.realistic); INT8 calibrated on photo
crops.

    python benchmarks/cpu_peers.py                      # ~6 minutes on 2 cores; writes benchmarks/results/
    python benchmarks/cpu_peers.py --batches 1 --rounds 2 --work-dir /tmp/peers   # quicker

Targets (issue 14): rtresnet's best CPU INT8 engine at b1 no slower than OpenVINO on the same model and at least
6x PyTorch eager on a VNNI CPU; at b32 at least the best of onnxruntime and OpenVINO.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from resnet50_cpu import machine_slug, wait_until_idle  # noqa: E402  (the same machine naming and idle wait)


@dataclass
class Row:
    name: str
    group: str  # "baseline" | "peer" | "rtresnet"
    precision: str
    run: dict[int, Callable[[np.ndarray], Any]] = field(default_factory=dict)  # batch -> callable
    times: dict[int, list[float]] = field(default_factory=dict)
    note: str = ""


def lscpu_line() -> str:
    from rtresnet.environment import cpu_info

    cpu = cpu_info()
    return f"{cpu['model']}, {cpu['usable_cores']} usable cores, ISA: {' '.join(cpu['isa']) or '-'}"


def make_models(work: Path, calib_size: int) -> dict[str, Path]:
    from rtresnet.export import ensure_onnx
    from rtresnet.precision import quantize_int8
    from rtresnet.realistic import photo_crops, save_realistic_checkpoint

    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / "resnet50_realistic.safetensors"
    if not ckpt.exists():
        save_realistic_checkpoint("resnet50", ckpt)
    fp32 = ensure_onnx("resnet50", work / "resnet50.onnx", weights=str(ckpt))
    crops = work / f"crops_{calib_size}.npy"
    if not crops.exists():
        np.save(crops, photo_crops(calib_size, 224, seed=3))
    int8 = quantize_int8(fp32, work / "resnet50_int8-minmax_cpu.onnx", calib_data=crops, method="minmax",
                         calib_size=calib_size, target="cpu", cache_dir=work / "calib").path
    return {"fp32": Path(fp32), "int8": Path(int8), "crops": crops}


def torch_row(ckpt: Path, threads: int) -> Row:
    import torch

    from rtresnet.models.factory import load_model

    torch.set_num_threads(threads)
    model = load_model("resnet50", weights=str(ckpt)).model.eval()

    def run(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()
    return Row("PyTorch eager", "baseline", "fp32", {1: run, 32: run}, note=f"torch {torch.__version__}")


def ort_direct(path: Path, precision: str, threads: int) -> Row:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x):
        return session.run(None, {name: x})[0]
    return Row("onnxruntime direct", "peer", precision, {1: run, 32: run},
               note=f"onnxruntime {ort.__version__}, default session options")


def ov_direct(path: Path, precision: str, threads: int) -> Row:
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()
    hint = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()

    def run(x):
        request.infer({0: x}, share_inputs=True)
        return request.get_output_tensor(0).data.copy()
    return Row("OpenVINO direct", "peer", precision, {1: run, 32: run},
               note=f"OpenVINO {ov.__version__.split('-')[0]}, defaults (inference precision {hint})")


def engine_row(name: str, precision: str, engines: dict[int, Path], threads: int | None) -> Row:
    from rtresnet.runtime import load

    runners = {b: load(p, **({"threads": threads} if threads else {})) for b, p in engines.items()}
    note = ", ".join(f"b{b}: {Path(p).name}" for b, p in engines.items())
    return Row(name, "rtresnet", precision, {b: r.infer for b, r in runners.items()}, note=note)


ENGINE_ROWS = (("onnxruntime", "rtresnet onnxruntime engine"), ("openvino", "rtresnet OpenVINO engine"))


def build_rows(models: dict[str, Path], work: Path, threads: int, batches: tuple[int, ...]) -> list[Row]:
    from rtresnet.engine import build_engine

    engines = work / "engines"
    rows = [torch_row(work / "resnet50_realistic.safetensors", threads)]
    for precision in ("fp32", "int8"):
        onnx = models[precision]
        rows += [ort_direct(onnx, precision, threads), ov_direct(onnx, precision, threads)]
        for backend, label in ENGINE_ROWS:
            paths = {b: build_engine(onnx, backend=backend, max_batch=b, engine_dir=engines).path for b in batches}
            rows.append(engine_row(label, precision, paths, threads))
        if precision == "fp32":  # OpenVINO's own default on bf16 CPUs, opt-in in rtresnet (checked at build)
            paths = {b: build_engine(onnx, backend="openvino", max_batch=b, inference_precision="bf16",
                                     engine_dir=engines).path for b in batches}
            rows.append(engine_row("rtresnet OpenVINO engine, bf16", precision, paths, threads))
        auto = {b: build_engine(onnx, backend="auto", max_batch=b, engine_dir=engines).path for b in batches}
        rows.append(engine_row("rtresnet auto (measured)", precision, auto, None))  # threads: what auto measured
    return rows


def time_blocks(rows: list[Row], batch: int, rounds: int, block_s: float, min_runs: int) -> None:
    x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
    for _ in range(rounds):
        for row in rows:
            run = row.run[batch]
            run(x)  # untimed: wakes this runtime's threads
            start, block = time.perf_counter(), []
            while len(block) < min_runs or time.perf_counter() - start < block_s:
                t0 = time.perf_counter()
                run(x)
                block.append((time.perf_counter() - t0) * 1e3)
            row.times.setdefault(batch, []).extend(block)


def table(rows: list[Row], batches: tuple[int, ...]) -> list[str]:
    base = {b: statistics.median(rows[0].times[b]) for b in batches}
    head = ["runtime", "precision"] + [h for b in batches for h in
                                       ((f"b{b} p50 ms", "vs PyTorch") if b == 1 else (f"b{b} img/s", "vs PyTorch"))]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.name, row.precision]
        for b in batches:
            p50 = statistics.median(row.times[b])
            cells += [f"{p50:.1f}", f"{base[b] / p50:.1f}x"] if b == 1 else \
                [f"{b * 1e3 / p50:.1f}", f"{base[b] / p50:.1f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def verdicts(rows: list[Row], batches: tuple[int, ...]) -> list[str]:
    def p50(name: str, precision: str, b: int) -> float:
        return statistics.median(next(r for r in rows if r.name == name and r.precision == precision).times[b])

    mine = ("rtresnet onnxruntime engine", "rtresnet OpenVINO engine", "rtresnet auto (measured)")
    out = []
    for b in batches:
        best = min(p50(n, "int8", b) for n in mine)
        peers = min(p50(n, "int8", b) for n in ("onnxruntime direct", "OpenVINO direct"))
        ov = p50("OpenVINO direct", "int8", b)
        torch = p50("PyTorch eager", "fp32", b)
        out.append(f"- b{b}: rtresnet's best INT8 {best:.1f} ms vs OpenVINO direct {ov:.1f} ms "
                   f"({'met' if best <= ov * 1.0 else 'MISSED'}: no slower), vs best peer {peers:.1f} ms "
                   f"({'met' if best <= peers else 'MISSED'}); {torch / best:.1f}x PyTorch eager"
                   + (" (target >= 6x on a VNNI CPU)" if b == 1 else ""))
        auto = p50("rtresnet auto (measured)", "int8", b)
        out.append(f"  auto INT8 engine at b{b}: {auto:.1f} ms "
                   f"({next(r for r in rows if r.name.startswith('rtresnet auto') and r.precision == 'int8').note})")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=Path("benchmarks/results/.cpu_peers"))
    parser.add_argument("--threads", type=int, default=0, help="threads for every runtime [default: all usable]")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--block-s", type=float, default=2.0, help="seconds per block (at least --min-runs runs)")
    parser.add_argument("--min-runs", type=int, default=3)
    parser.add_argument("--calib-size", type=int, default=128)
    parser.add_argument("--wait-idle-s", type=float, default=0.0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    from rtresnet.environment import cpu_info

    threads = args.threads or cpu_info()["usable_cores"]
    batches = tuple(int(b) for b in args.batches.split(","))
    models = make_models(args.work_dir, args.calib_size)
    rows = build_rows(models, args.work_dir, threads, batches)
    busy = wait_until_idle(args.wait_idle_s) if args.wait_idle_s else None
    for b in batches:
        time_blocks(rows, b, args.rounds, args.block_s, args.min_runs)
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    lines = [f"# CPU peers: ResNet-50 224x224, {date}", "", f"Machine: {lscpu_line()}; {threads} threads for "
             f"every runtime; {args.rounds} rounds of blocks ({args.block_s} s, >= {args.min_runs} runs) "
             f"round-robin in one process" + (f"; CPUs {busy:.0%} busy before timing" if busy is not None else ""),
             "", *table(rows, batches), "", "Targets (issue 14):", *verdicts(rows, batches), "", "Rows:",
             *(f"- {r.name} {r.precision}: {r.note}" for r in rows), "",
             f"Command: python benchmarks/cpu_peers.py --batches {args.batches} --rounds {args.rounds} "
             f"--block-s {args.block_s} --calib-size {args.calib_size}"]
    text = "\n".join(lines) + "\n"
    print(text)
    from rtresnet.fileutil import atomic_write_text

    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"cpu_peers_{date}_{machine_slug()}.md"
    atomic_write_text(out, text)
    print(f"written: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
