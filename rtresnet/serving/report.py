"""Load-test results as a table (terminal) or Markdown rows (benchmark result files)."""

from __future__ import annotations

from collections.abc import Sequence

from rtresnet.serving.loadtest import LoadTestResult

COLUMNS = ("setup", "proto", "conc", "requests", "failed", "req/s", "img/s", "p50 ms", "p90 ms", "p99 ms",
           "executions", "mean batch", "batch sizes formed")


def _row(label: str, r: LoadTestResult) -> list[str]:
    lat = r.latency
    ms = ["-"] * 3 if lat is None else [f"{lat.latency_ms_median:.2f}", f"{lat.latency_ms_p90:.2f}",
                                        f"{lat.latency_ms_p99:.2f}"]
    if r.server is None:
        server = ["-", "-", "(statistics not readable)"]
    else:
        sizes = " ".join(f"{count}x{size}" for size, count in r.server.batch_sizes.items())
        server = [str(r.server.executions), f"{r.server.mean_batch:.2f}", sizes]
    return [label, r.protocol, str(r.concurrency), str(r.requests_sent), str(r.requests_failed),
            f"{r.throughput_req_s:.1f}", f"{r.throughput_img_s:.1f}", *ms, *server]


def loadtest_table(results: Sequence[LoadTestResult], labels: Sequence[str] | None = None):
    from rich.table import Table

    table = Table(title="Triton load test (latency: client round trip; batches: Triton's statistics)")
    for name in COLUMNS:
        table.add_column(name, justify="left" if name in ("setup", "proto", "batch sizes formed") else "right")
    for i, r in enumerate(results):
        table.add_row(*_row(labels[i] if labels else r.model_name, r))
    return table


def loadtest_markdown(results: Sequence[LoadTestResult], labels: Sequence[str]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_row(label, r)) + " |" for label, r in zip(labels, results, strict=True)]
    return "\n".join(lines)


def summary_lines(r: LoadTestResult) -> list[str]:
    """A load test in three lines, readable at any terminal width."""
    lines = [f"{r.model_name} over {r.protocol}, concurrency {r.concurrency}, batch {r.batch_size}: "
             f"{r.requests_sent} requests, {r.requests_failed} failed, {r.throughput_req_s:.1f} req/s "
             f"({r.throughput_img_s:.1f} img/s) in {r.duration_s:.2f} s"
             + (" (stopped by --timeout-s)" if r.stopped_by_timeout else "")]
    if r.latency is not None:
        lat = r.latency
        lines.append(f"latency ms (client round trip): p50 {lat.latency_ms_median:.2f}  p90 {lat.latency_ms_p90:.2f}  "
                     f"p99 {lat.latency_ms_p99:.2f}  max {lat.latency_ms_max:.2f}")
    if r.server is None:
        lines.append("batches formed by Triton: unknown (its statistics endpoint is not readable)")
    else:
        sizes = "  ".join(f"{count}x{size}" for size, count in r.server.batch_sizes.items())
        lines.append(f"Triton ran {r.server.executions} batches for {r.server.inferences} samples "
                     f"(mean batch {r.server.mean_batch:.2f}): {sizes or '-'}")
    return lines
