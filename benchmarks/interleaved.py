"""Runners taking turns in one process, as a perception stack runs several models, against each runner alone.

After a run, onnxruntime's worker threads keep spinning for a while unless told not to, holding the cores the next
model needs: on a Xeon, interleaving torch, two onnxruntime runners and OpenVINO doubled the onnxruntime engines'
latency (issue 14). This times ResNet-50 224x224 batch 1 (random weights: latency only), every runner with
``--threads`` threads, through ``rtresnet.runtime.load``: an onnxruntime FP32 engine and an onnxruntime INT8 engine
(CPU target), optionally a PyTorch eager model (``--with-torch``) and an OpenVINO compiled model (``--openvino``), for
each onnxruntime spinning mode (the runner option ``spinning``: True "always", False "never", None the default).
Each of ``--rounds`` rounds goes round-robin over the modes; per mode, each runner alone (``--calls`` back-to-back
calls), then all of them in turn, one call each, ``--calls`` times. The timed region is one ``infer`` call (input
already in memory); the first call of every block is dropped. Target: each onnxruntime runner interleaved within
15 % of its p50 alone.

    python benchmarks/interleaved.py                              # two onnxruntime runners (~2 minutes)
    python benchmarks/interleaved.py --with-torch --openvino      # the issue's rotation (~4 minutes)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from resnet50_cpu import machine_slug  # noqa: E402

MODES = (("always", True), ("never", False), ("default", None))  # label, the runner option ``spinning``
TARGET = 1.15


def make_files(work: Path) -> dict[str, Path]:
    """ResNet-50 FP32 ONNX and its onnxruntime engines, FP32 and INT8 (reused when already in ``work``)."""
    from rtresnet.engine import build_engine
    from rtresnet.export import ensure_onnx
    from rtresnet.precision import CalibrationSettings

    work.mkdir(parents=True, exist_ok=True)
    onnx = ensure_onnx("resnet50", work / "resnet50.onnx", verify=False)
    calib = CalibrationSettings("synthetic", method="minmax", calib_size=16, cache_dir=work / "calib")
    return {"onnx": Path(onnx),
            "ort-fp32": build_engine(onnx, backend="onnxruntime", max_batch=1, engine_dir=work).path,
            "ort-int8": build_engine(onnx, precision="int8", backend="onnxruntime", max_batch=1, calibration=calib,
                                     engine_dir=work).path}


def others(files: dict[str, Path], threads: int, with_torch: bool, openvino: bool) -> dict:
    """The non-onnxruntime members of the rotation: name -> a callable taking the input array."""
    out = {}
    if with_torch:
        import torch

        torch.set_num_threads(threads)
        from rtresnet.runtime import load

        out["torch-fp32"] = load("resnet50", backend="torch").infer
    if openvino:
        import openvino as ov

        compiled = ov.Core().compile_model(str(files["onnx"]), "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                                       "INFERENCE_NUM_THREADS": threads})
        request = compiled.create_infer_request()
        out["openvino-fp32"] = lambda x: request.infer({0: x})
    return out


def timed(fn, x) -> float:
    from time import perf_counter

    start = perf_counter()
    fn(x)
    return (perf_counter() - start) * 1e3


def alone(fn, x, calls: int) -> list[float]:
    return [timed(fn, x) for _ in range(calls + 1)][1:]


def interleaved(fns: dict, x, calls: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(calls + 1):
        for name, fn in fns.items():
            times[name].append(timed(fn, x))
    return {name: t[1:] for name, t in times.items()}


def lscpu() -> tuple[str, str]:
    fields = dict(line.split(":", 1) for line in subprocess.run(["lscpu"], capture_output=True, text=True,
                                                                  check=True).stdout.splitlines() if ":" in line)
    return fields.get("Model name", "?").strip(), fields.get("Flags", "?").strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "rtresnet-interleaved",
                        help="where the models are built (reused by later runs)")
    parser.add_argument("--with-torch", action="store_true", help="a PyTorch eager ResNet-50 in the rotation")
    parser.add_argument("--openvino", action="store_true", help="an OpenVINO compiled ResNet-50 in the rotation")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=40, help="timed calls per runner and block")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    from rtresnet.cli.ui import setup_logging
    from rtresnet.fileutil import atomic_write_text
    from rtresnet.runtime import load

    setup_logging(30)
    files = make_files(args.work_dir)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    rest = others(files, args.threads, args.with_torch, args.openvino)
    # every mode's sessions live side by side (idle sessions sleep); rounds go round-robin over the modes
    ort = {label: {name: load(files[name], threads=args.threads, spinning=spinning)
                   for name in ("ort-fp32", "ort-int8")} for label, spinning in MODES}
    modes_seen = {label: {r.spinning for r in rs.values()} for label, rs in ort.items()}
    solo: dict[tuple[str, str], list[float]] = {}
    mixed: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for label, _ in MODES:
            fns = {**{name: r.infer for name, r in ort[label].items()}, **rest}
            for name, fn in fns.items():
                solo.setdefault((label, name), []).extend(alone(fn, x, args.calls))
            for name, t in interleaved(fns, x, args.calls).items():
                mixed.setdefault((label, name), []).extend(t)
    for rs in ort.values():
        for r in rs.values():
            r.close()

    rows = []
    for (label, name), a in solo.items():
        m = mixed[(label, name)]
        a50, a90, m50, m90 = (float(np.percentile(t, q)) for t in (a, m) for q in (50, 90))
        verdict = ("met" if m50 <= TARGET * a50 else "MISSED") if name.startswith("ort") else "-"
        mode = f"{label} ({', '.join(sorted(modes_seen[label]))})"
        rows.append(f"| {mode} | {name} | {a50:.2f} | {a90:.2f} | {m50:.2f} | {m90:.2f} | {m50 / a50:.2f} | "
                    f"{verdict} |")
    model, flags = lscpu()
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    extras = [n for n, on in (("torch", args.with_torch), ("openvino", args.openvino)) if on]
    command = " ".join(["python benchmarks/interleaved.py", *(f"--{'with-' if e == 'torch' else ''}{e}"
                                                               for e in extras),
                        f"--threads {args.threads} --calls {args.calls} --rounds {args.rounds}"])
    text = "\n".join([
        f"# Runners interleaved in one process: ResNet-50 224x224 batch 1, {args.threads} threads each, {date}", "",
        f"lscpu model: {model}", "", f"lscpu flags: {flags}", "",
        f"Versions: {', '.join(f'{k} {version(k)}' for k in ('onnxruntime', 'torch', 'openvino'))}", "",
        f"Rotation: {', '.join(['ort-fp32', 'ort-int8', *rest])}; {args.rounds} rounds round-robin over the spinning "
        f"modes, per mode each runner alone ({args.calls} calls) then all in turn ({args.calls} calls each). "
        f"Latency of one `infer` call in ms; ratio = interleaved p50 / alone p50; target {TARGET:.2f} for the "
        f"onnxruntime runners. Mode column: label (the `runner.spinning` the onnxruntime runners reported).", "",
        "| onnxruntime spinning | runner | alone p50 | alone p90 | interleaved p50 | interleaved p90 | ratio | "
        "within 15 % |", "|---|---|---|---|---|---|---|---|", *rows, "", f"Command: `{command}`"]) + "\n"
    print(text)
    out = args.out / f"interleaved_{date}_{machine_slug()}{''.join('_' + e for e in extras)}.md"
    atomic_write_text(out, text)
    print(f"written: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
