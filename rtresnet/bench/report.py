"""Bench report writers: JSON (versioned schema), CSV, Markdown, PNG plots, and the rich terminal table.

Every writer renders the same rows: one per backend and batch size; a backend that did not run gets one row
with its status and reason.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

from rtresnet.bench.results import BackendResult, BatchResult, BenchReport
from rtresnet.fileutil import atomic_path, atomic_write_text

CSV_FIELDS = (
    "backend", "status", "reason", "runtime", "precision", "device", "batch_size", "size_mb", "build_s", "load_s",
    "peak_rss_mib", "peak_gpu_mib", "top1_pct", "top5_pct", "top1_drop_pts", "top1_agreement_pct",
    "top5_agreement_pct", "max_abs_diff", "cosine_mean", "latency_ms_min", "latency_ms_mean", "latency_ms_median",
    "latency_ms_p90", "latency_ms_p95", "latency_ms_p99", "latency_ms_max", "latency_ms_std", "cov",
    "throughput_img_s", "device_scope", "device_latency_ms_median", "device_latency_ms_p99",
    "device_throughput_img_s", "speedup_vs_baseline",
)
TABLE_HEADER = ("backend", "status", "batch", "size MB", "RSS MiB", "top-1 %", "drop pts", "agree %", "p50 ms",
                "p99 ms", "CoV", "img/s", "speedup")


def _rows(report: BenchReport) -> Iterator[tuple[BackendResult, BatchResult | None]]:
    for b in report.backends:
        if b.batches:
            for r in b.batches:
                yield b, r
        else:
            yield b, None


def _size(model: dict) -> str:
    size = model.get("input_size") or ()
    return "x".join(str(s) for s in size)


def _f(x: float | None, fmt: str) -> str:
    return "" if x is None else format(x, fmt)


def _cells(b: BackendResult, r: BatchResult | None) -> tuple[str, ...]:
    """One row of the human tables (terminal and Markdown)."""
    acc = b.accuracy
    status = b.status if b.ok else f"{b.status}: {b.reason}"
    return (b.name, status, "" if r is None else str(r.batch_size),
            _f(None if b.size_bytes is None else b.size_bytes / 1e6, ".1f"), _f(b.peak_rss_mib, ".0f"),
            _f(acc.top1_pct if acc else None, ".2f"), _f(acc.top1_drop_pts if acc else None, "+.2f"),
            _f(acc.top1_agreement_pct if acc else None, ".1f"),
            _f(r.host.latency_ms_median if r else None, ".2f"), _f(r.host.latency_ms_p99 if r else None, ".2f"),
            _f(r.host.cov * 100 if r else None, ".1f") + ("%" if r else "") + ("!" if r and r.host.unstable else ""),
            _f(r.throughput_img_s if r else None, ".1f"),
            _f(r.speedup_vs_baseline if r else None, ".2f") + ("x" if r and r.speedup_vs_baseline else ""))


def csv_text(report: BenchReport) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for b, r in _rows(report):
        acc = b.accuracy
        row: dict = {"backend": b.name, "status": b.status, "reason": b.reason or "", "runtime": b.runtime,
                     "precision": b.precision, "device": b.device,
                     "size_mb": None if b.size_bytes is None else round(b.size_bytes / 1e6, 3),
                     "build_s": b.build_s, "load_s": b.load_s, "peak_rss_mib": b.peak_rss_mib,
                     "peak_gpu_mib": b.peak_gpu_mib}
        if acc:
            row.update(top1_pct=acc.top1_pct, top5_pct=acc.top5_pct, top1_drop_pts=acc.top1_drop_pts,
                       top1_agreement_pct=acc.top1_agreement_pct, top5_agreement_pct=acc.top5_agreement_pct,
                       max_abs_diff=acc.max_abs_diff, cosine_mean=acc.cosine_mean)
        if r:
            row.update(batch_size=r.batch_size, throughput_img_s=r.throughput_img_s,
                       speedup_vs_baseline=r.speedup_vs_baseline, device_throughput_img_s=r.device_throughput_img_s,
                       **{k: v for k, v in r.host.to_dict().items() if k != "samples"})
            if r.device:
                row.update(device_scope=b.device_scope, device_latency_ms_median=r.device.latency_ms_median,
                           device_latency_ms_p99=r.device.latency_ms_p99)
        w.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue()


def environment_lines(report: BenchReport) -> list[str]:
    env = report.environment
    cpu, gpu, v = env.get("cpu") or {}, env.get("gpu"), env.get("versions") or {}
    return [f"date: {report.created_at}",
            f"CPU: {cpu.get('model')} ({cpu.get('arch')}), {cpu.get('usable_cores')} usable cores, "
            f"{report.timing.get('threads')} threads used; ISA: {' '.join(cpu.get('isa') or []) or 'n/a'}",
            "GPU: " + (f"{gpu['name']} (sm {gpu['compute_capability']}, {gpu['memory_gib']} GiB, driver "
                       f"{gpu.get('driver')}, CUDA {gpu.get('cuda_version')})" if gpu else "none"),
            "versions: " + ", ".join(f"{k} {val or 'not installed'}" for k, val in v.items())]


def markdown_text(report: BenchReport) -> str:
    m, d, t = report.model, report.data, report.timing
    out = [f"# rtresnet bench: {m.get('arch')} {_size(m)} ({m.get('weights') or 'random weights'})", ""]
    out += [f"- {line}" for line in environment_lines(report)]
    out += [f"- data: {d.get('source')}, " + ("labeled" if d.get("labeled") else "unlabeled: agreement figures only"),
            f"- timing: {t.get('description')}; batch sizes {t.get('batch_sizes')}",
            f"- timed scope: {t.get('host_scope')}" + (f"; {t.get('device_scope')}" if t.get("device_scope") else ""),
            f"- memory: {report.memory_method}",
            "- accuracy: agreement with the PyTorch eager FP32 logits on the same inputs; drop = its top-1 minus the "
            f"backend's; speedup = `{report.baseline}` median latency / the backend's, same batch size",
            "", "| " + " | ".join(TABLE_HEADER) + " |", "|" + "|".join("---" for _ in TABLE_HEADER) + "|"]
    for b, r in _rows(report):
        out.append("| " + " | ".join(c.replace("|", "/") for c in _cells(b, r)) + " |")
    notes = [f"- {n}" for n in report.notes]
    notes += [f"- `{b.name}`: {w}" for b in report.backends for w in b.warnings]
    notes += [f"- gate failed: {g.message}" for g in report.gate_failures]
    if notes:
        out += ["", "Notes:", *notes]
    out.append("")
    return "\n".join(out)


def _plot_png(report: BenchReport, path: Path) -> None:
    # The object API with an explicit Agg canvas: no global pyplot state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig = Figure(figsize=(12, 5), dpi=100)
    FigureCanvasAgg(fig)
    lat, acc = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    labeled = any(b.accuracy and b.accuracy.top1_pct is not None for b in report.backends)
    for i, b in enumerate(b for b in report.backends if b.batches):
        xs = [r.batch_size for r in b.batches]
        (line,) = lat.plot(xs, [r.host.latency_ms_median for r in b.batches], marker="o", label=b.name)
        if b.accuracy:
            y = b.accuracy.top1_pct if labeled else b.accuracy.top1_agreement_pct
            x = b.batches[0].host.latency_ms_median
            acc.scatter([x], [y], s=40, color=line.get_color())
            # staggered labels: backends with equal accuracy and close latency would print over each other
            acc.annotate(b.name, (x, y), textcoords="offset points", xytext=(4, 4 + 10 * (i % 3)), fontsize=8)
    lat.set_xscale("log", base=2)
    lat.set_yscale("log")
    plain = ScalarFormatter()
    plain.set_scientific(False)
    lat.xaxis.set_major_formatter(plain)
    lat.yaxis.set_major_formatter(plain)
    lat.yaxis.set_minor_formatter(NullFormatter())
    lat.set_xticks(sorted({r.batch_size for b in report.backends for r in b.batches}) or [1])
    lat.set_xlabel("batch size")
    lat.set_ylabel("median latency per batch, ms (host to host)")
    lat.set_title("latency vs batch size")
    lat.grid(True, which="both", alpha=0.3)
    if lat.get_legend_handles_labels()[0]:
        lat.legend(fontsize=8)
    first = min((r.batch_size for b in report.backends for r in b.batches), default=1)
    acc.set_xlabel(f"median latency at batch {first}, ms")
    acc.set_ylabel("top-1 accuracy, %" if labeled else "top-1 agreement with PyTorch FP32, %")
    acc.set_title("accuracy vs latency")
    acc.grid(True, alpha=0.3)
    fig.suptitle(f"{report.model.get('arch')} {_size(report.model)} - {report.created_at[:10]} - "
                 f"{(report.environment.get('cpu') or {}).get('model')}, {report.timing.get('threads')} threads",
                 fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def write_reports(report: BenchReport, *, json_path: str | Path | None = None, csv_path: str | Path | None = None,
                  markdown_path: str | Path | None = None, plot_path: str | Path | None = None) -> list[Path]:
    """Write the requested report files atomically; returns the paths written."""
    written = []
    for path, render in ((json_path, lambda: report.to_json() + "\n"), (csv_path, lambda: csv_text(report)),
                         (markdown_path, lambda: markdown_text(report))):
        if path is not None:
            written.append(atomic_write_text(path, render()))
    if plot_path is not None:
        _plot_png(report, Path(plot_path))
        written.append(Path(plot_path))
    return written


def rich_table(report: BenchReport):
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{report.model.get('arch')} {_size(report.model)}, "
                        f"{report.timing.get('threads')} threads, speedup vs {report.baseline}")
    for h in TABLE_HEADER:
        table.add_column(h, justify="left" if h in ("backend", "status") else "right",
                         overflow="fold", max_width=40 if h == "status" else None)
    for b, r in _rows(report):
        cells = [Text(c) for c in _cells(b, r)]  # Text, not markup: reasons may contain [brackets]
        if not b.ok:
            cells[1].stylize("yellow" if b.status == "unavailable" else "red")
        table.add_row(*cells)
    return table
