"""Triton serving under load: `rtresnet serve` (a real tritonserver through PyTriton) with and without dynamic
batching, load-tested at concurrency 1 and 8 over HTTP, side by side in one run.

Each setup starts `rtresnet serve` as a user would (a subprocess on free loopback ports), runs the load tests, stops
it with SIGTERM and checks it exited cleanly. The table says what Triton's statistics saw: model executions and the
batch sizes it formed.

    python benchmarks/serve_loadtest.py                       # ResNet-18 224x224 (BN re-estimated on photos)
    python benchmarks/serve_loadtest.py --model engines/digits_int8_cpu.onnx --requests 200 --out reports  (demo)
    python benchmarks/serve_loadtest.py --perf-analyzer /tmp/pa/perf_analyzer   # + Triton's perf_analyzer rows

perf_analyzer is not a dependency: `bash benchmarks/get_perf_analyzer.sh /tmp/pa` fetches the last tritonclient
wheel that shipped it (2.41.0) and the two libraries it links (PyPI's CUDA runtime, Debian's libb64). It runs at the
same concurrency with `--input-data zero` (its random FP32 data holds NaN/inf, which rtresnet serve rejects) and
count windows of --requests requests.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from resnet50_cpu import machine_slug  # benchmarks/ is on sys.path when a script in it runs

from rtresnet.environment import cpu_info
from rtresnet.fileutil import atomic_write_text
from rtresnet.serving import loadtest
from rtresnet.serving.report import loadtest_markdown, loadtest_table

SETUPS = {"dynamic batching": [], "no dynamic batching": ["--no-dynamic-batching"]}


def cpu_flags() -> str:
    flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0]
    keep = sorted({f for f in flags.split() if f.startswith(("avx", "amx", "fma", "sse4"))})
    return " ".join(keep)


def realistic_engine(folder: Path, arch: str, size: int) -> Path:
    from rtresnet.engine import build_engine
    from rtresnet.export import export_onnx
    from rtresnet.realistic import save_realistic_checkpoint

    ckpt = save_realistic_checkpoint(arch, folder / f"{arch}.safetensors", input_size=size)
    onnx = export_onnx(arch, folder / f"{arch}.onnx", weights=ckpt, input_size=size, max_batch=32).path
    return Path(build_engine(onnx, backend="onnxruntime", output=folder / f"{arch}_cpu.onnx").path)


def start_serve(model: Path, extra: list[str]) -> tuple[subprocess.Popen, str, str]:
    cmd = [sys.executable, "-m", "rtresnet", "serve", str(model), "--http-port", "0", "--grpc-port", "0",
           "--metrics-port", "0", *extra]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(180)
    if not line or not line[0].startswith("READY"):
        process.kill()
        raise SystemExit(f"serve did not start: {process.stderr.read()[-2000:]}")
    fields = dict(part.split("=", 1) for part in line[0].split()[1:])
    return process, fields["http"], fields["model"]


def answer(url: str, name: str, images: list[Path]) -> None:
    from rtresnet.serving import classify

    for path, top in zip(images, classify(url, name, images), strict=True):
        best = ", ".join(f"{p.label} {p.probability:.1%}" for p in top[:3])
        print(f"{path.name}: {best}")


@dataclass(frozen=True)
class PerfAnalyzerRow:
    """perf_analyzer's CSV row, in the units of LoadTestResult."""

    concurrency: int
    throughput_req_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    executions: int
    inferences: int


def perf_analyzer(binary: Path, url: str, name: str, concurrency: int, requests: int) -> PerfAnalyzerRow | str:
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "pa.csv"
        env = {**os.environ, "LD_LIBRARY_PATH": f"{binary.parent}:{os.environ.get('LD_LIBRARY_PATH', '')}"}
        run = subprocess.run([str(binary), "-m", name, "-u", url.removeprefix("http://"), "-i", "http",
                              "--concurrency-range", f"{concurrency}:{concurrency}", "--input-data", "zero",
                              "--measurement-mode", "count_windows", "--measurement-request-count", str(requests),
                              "--stability-percentage", "50", "--max-trials", "5", "-f", str(csv_path)],
                             capture_output=True, text=True, env=env, timeout=600)
        if run.returncode != 0 or not csv_path.is_file():
            return (run.stdout + run.stderr).strip().splitlines()[-1] if (run.stdout + run.stderr).strip() else \
                f"exit {run.returncode}"
        row = dict(zip(*[line.split(",") for line in csv_path.read_text().splitlines()[:2]], strict=True))
    counts = re.search(r"Inference count: (\d+)\s+Execution count: (\d+)", run.stdout)
    inferences, executions = (int(counts.group(1)), int(counts.group(2))) if counts else (0, 0)
    return PerfAnalyzerRow(concurrency, float(row["Inferences/Second"]), int(row["p50 latency"]) / 1e3,
                           int(row["p90 latency"]) / 1e3, int(row["p99 latency"]) / 1e3, executions, inferences)


def perf_analyzer_markdown(rows: list[tuple[str, PerfAnalyzerRow | str]]) -> str:
    lines = ["| setup | conc | req/s | p50 ms | p90 ms | p99 ms | executions | mean batch |", "|" + "---|" * 8]
    for label, r in rows:
        if isinstance(r, str):
            lines.append(f"| {label} | - | failed: {r} | | | | | |")
            continue
        mean = r.inferences / r.executions if r.executions else 0.0
        lines.append(f"| {label} | {r.concurrency} | {r.throughput_req_s:.1f} | {r.p50_ms:.2f} | {r.p90_ms:.2f} | "
                     f"{r.p99_ms:.2f} | {r.executions} | {mean:.2f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="engine or ONNX to serve (default: realistic --arch)")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--timeout-s", type=float, default=120)
    parser.add_argument("--max-queue-delay-us", type=int, default=None, help="serve's default unless given")
    parser.add_argument("--images", type=Path, nargs="*", default=(),
                        help="classify these image files through the server first (its own preprocessing)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--perf-analyzer", type=Path, default=None,
                        help="Triton's perf_analyzer binary: also measure each row with it, side by side")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or realistic_engine(Path(tmp), args.arch, args.input_size)
        labels, results, pa_rows = [], [], []
        for setup, extra in SETUPS.items():
            if args.max_queue_delay_us is not None and not extra:
                extra = ["--max-queue-delay-us", str(args.max_queue_delay_us)]
            process, url, name = start_serve(model, extra)
            try:
                if args.images and not labels:
                    answer(url, name, args.images)
                for c in (int(v) for v in args.concurrency.split(",")):
                    results.append(loadtest(url, name, concurrency=c, requests=args.requests,
                                            timeout_s=args.timeout_s))
                    labels.append(setup)
                    if args.perf_analyzer:
                        pa_rows.append((setup, perf_analyzer(args.perf_analyzer, url, name, c, args.requests)))
            finally:
                process.send_signal(signal.SIGTERM)
                code = process.wait(60)
            if code != 0:
                raise SystemExit(f"serve exited with {code} after SIGTERM")

    from rich.console import Console

    Console(width=200).print(loadtest_table(results, labels))
    cpu = cpu_info()
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    header = (f"# Triton load test: {model.name}\n\n`python {' '.join(sys.argv)}` on {stamp}; {cpu['model']} "
              f"({cpu['usable_cores']} usable cores; flags: {cpu_flags()}); {os.cpu_count()} CPUs seen. Server: "
              f"`rtresnet serve` (PyTriton tritonserver, onnxruntime runner); clients: tritonclient HTTP in one "
              f"process on the same machine, {args.requests} requests per row.\n\n")
    text = header + loadtest_markdown(results, labels) + "\n"
    if pa_rows:
        pa_text = perf_analyzer_markdown(pa_rows)
        print(pa_text)
        text += ("\nTriton's perf_analyzer 2.41.0 on the same servers, right after each row above (count windows of "
                 f"{args.requests} requests, `--input-data zero`):\n\n{pa_text}\n")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"serve_loadtest_{stamp}_{machine_slug()}.md"
    atomic_write_text(path, text)
    print(f"wrote {path}")
    failed = sum(r.requests_failed for r in results)
    if failed:
        print(f"error: {failed} requests failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
