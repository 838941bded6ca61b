"""Benchmark backends against the PyTorch FP32 baseline: latency, throughput, accuracy, size, memory.

    from rtresnet.bench import run, write_reports
    report = run("resnet50", backends="torch,onnxruntime,onnxruntime-int8", batch_sizes=(1, 32), threads=2)
    write_reports(report, json_path="bench.json", markdown_path="bench.md", plot_path="bench.png")
"""

from rtresnet.bench.backends import BACKENDS, BackendSpec
from rtresnet.bench.harness import DEFAULT_BACKENDS, DEFAULT_GPU_BACKENDS, run
from rtresnet.bench.report import (
    csv_text,
    markdown_text,
    plot_plan,
    rich_table,
    summary_line,
    terminal_table,
    write_reports,
)
from rtresnet.bench.results import (
    SCHEMA,
    SCHEMA_VERSION,
    AccuracyResult,
    BackendResult,
    BatchResult,
    BenchReport,
    GateFailure,
)
from rtresnet.bench.stats import LatencyStats
from rtresnet.bench.timing import TimingConfig

__all__ = ["BACKENDS", "DEFAULT_BACKENDS", "DEFAULT_GPU_BACKENDS", "SCHEMA", "SCHEMA_VERSION", "AccuracyResult",
           "BackendResult", "BackendSpec", "BatchResult", "BenchReport", "GateFailure", "LatencyStats", "TimingConfig",
           "csv_text", "markdown_text", "plot_plan", "rich_table", "run", "summary_line", "terminal_table",
           "write_reports"]
