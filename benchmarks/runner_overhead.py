"""What the runner contract costs: ``OrtRunner.infer`` vs a bare ``InferenceSession.run`` (issue 6: within 3 %).

Both sessions load the same FP32 ONNX with the same options (threads, ORT_ENABLE_ALL, one inter-op thread) and are
timed side by side in one process on the same input: rounds alternate which goes first (ABBA), each round times
``--iters`` single calls per side (the first call of every block is dropped: the other session's thread pool may
still be spinning down). Reported: medians and p90 of all calls, and the median of the per-round median ratios.
The timed region is the call alone (``time.perf_counter`` around ``infer`` / ``run``), inputs already in memory.

    python benchmarks/runner_overhead.py                       # resnet50, 224x224, batch 1, 2 threads (~2 min)
    python benchmarks/runner_overhead.py --arch resnet18 --input-size 32 --num-classes 10 --rounds 3 --iters 5
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rtresnet.cli.ui import setup_logging
from rtresnet.environment import cpu_info, versions
from rtresnet.fileutil import atomic_write_text


def bare_session(onnx_path: Path, threads: int):
    """An InferenceSession configured exactly as ``OrtRunner`` configures its own."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])


def time_calls(fn, iters: int) -> list[float]:
    out = []
    for _ in range(iters + 1):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e3)
    return out[1:]


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--iters", type=int, default=10, help="timed calls per side and round")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--budget-pct", type=float, default=3.0)
    p.add_argument("--check", action="store_true", help="exit 1 when the overhead exceeds the budget")
    p.add_argument("--onnx", type=Path, default=None, help="an exported ONNX to use instead of exporting one")
    p.add_argument("--work-dir", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    setup_logging(logging.WARNING)

    from rtresnet.runtime import load

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = args.onnx
        if onnx_path is None:
            from rtresnet.export import export_onnx

            folder = args.work_dir or Path(tmp)
            onnx_path = export_onnx(args.arch, folder / f"{args.arch}_{args.input_size}.onnx",
                                    num_classes=args.num_classes, input_size=args.input_size, verify=False).path
        runner = load(onnx_path, threads=args.threads)
        session = bare_session(onnx_path, args.threads)
        x = np.random.default_rng(0).standard_normal(
            (args.batch, *runner.input_spec.sample_shape)).astype(runner.input_spec.dtype)
        name, out = session.get_inputs()[0].name, [session.get_outputs()[0].name]
        sides = {"bare": lambda: session.run(out, {name: x}), "runner": lambda: runner.infer(x)}
        if not np.allclose(sides["bare"]()[0], sides["runner"](), rtol=1e-4, atol=1e-5):
            print("error: the runner's logits differ from the bare session's", file=sys.stderr)
            return 1
        for fn in sides.values():
            time_calls(fn, args.warmup)
        times: dict[str, list[float]] = {"bare": [], "runner": []}
        ratios = []
        for r in range(args.rounds):
            order = ("bare", "runner") if r % 2 == 0 else ("runner", "bare")
            block = {side: time_calls(sides[side], args.iters) for side in order}
            for side, ts in block.items():
                times[side].extend(ts)
            ratios.append(statistics.median(block["runner"]) / statistics.median(block["bare"]))
        # The contract's own cost, free of the model's noise: the same infer() with the backend call replaced by
        # returning precomputed logits (validation, batch checks, dispatch, kind conversion).
        logits = sides["bare"]()[0]
        runner._run = lambda _x: logits
        contract_us = statistics.median(time_calls(lambda: runner.infer(x), 2000)) * 1e3
        runner.close()

    med = {s: statistics.median(ts) for s, ts in times.items()}
    overhead_pct = (med["runner"] / med["bare"] - 1) * 100
    paired_pct = (statistics.median(ratios) - 1) * 100
    cpu = cpu_info()
    print(f"runner overhead: {args.arch} {args.input_size}x{args.input_size} batch {args.batch}, onnxruntime "
          f"{versions()['onnxruntime']} CPU, {args.threads} threads, {cpu['model']} ({cpu['usable_cores']} "
          f"usable cores); {args.rounds} rounds x {args.iters} calls per side, interleaved")
    for side, label in (("bare", "bare InferenceSession.run"), ("runner", "OrtRunner.infer")):
        print(f"  {label:<26} median {med[side]:8.3f} ms   p90 {percentile(times[side], 90):8.3f} ms")
    verdict = "within" if overhead_pct <= args.budget_pct else "OVER"
    print(f"  overhead {overhead_pct:+.2f} % of the median (per-round median ratio {paired_pct:+.2f} %): "
          f"{verdict} the {args.budget_pct:g} % budget")
    print(f"  contract cost per call (backend call replaced by a no-op): {contract_us:.1f} us = "
          f"{contract_us / 1e3 / med['bare'] * 100:.3f} % of the bare median")
    if args.json:
        figures = {"arch": args.arch, "input_size": args.input_size, "batch": args.batch, "threads": args.threads,
                   "rounds": args.rounds, "iters": args.iters, "bare_median_ms": med["bare"],
                   "runner_median_ms": med["runner"], "overhead_pct": overhead_pct,
                   "paired_overhead_pct": paired_pct, "contract_us": contract_us}
        atomic_write_text(args.json, json.dumps(figures, indent=2))
    return 1 if args.check and overhead_pct > args.budget_pct else 0


if __name__ == "__main__":
    sys.exit(main())
