"""Bench report writers: JSON (versioned schema), CSV, Markdown, PNG plots, and the rich terminal table.

Every writer renders the same rows: one per backend and batch size; a backend that did not run gets one row
with its status and reason.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rtresnet.bench.backends import short_label
from rtresnet.bench.results import BackendResult, BatchResult, BenchReport
from rtresnet.bench.stats import UNSTABLE_COV
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
            _speedup(r))


def _speedup(r: BatchResult | None) -> str:
    """``4.72x``; ``4.72x?`` when either timing behind the ratio was unstable (see speedup_note)."""
    if r is None or r.speedup_vs_baseline is None:
        return ""
    return f"{r.speedup_vs_baseline:.2f}x" + ("?" if r.speedup_unstable else "")


def label(b: BackendResult) -> str:
    """The short row label: ``torch``, ``ort int8``, ``trt fp16`` (reports from before labels: from the fields)."""
    return b.label or short_label(b.runtime, b.precision, b.device)


def speedup_note(report: BenchReport) -> str | None:
    """The footnote of the speedups marked ``?``, or None when none is."""
    if not any(r.speedup_unstable for b in report.backends for r in b.batches):
        return None
    unstable = any(r.host.unstable for b in report.backends for r in b.batches)
    why = " and ".join(w for w, on in ((f"timing varied (CoV above {UNSTABLE_COV:.0%}) in the row or the baseline",
                                        unstable), ("the machine was busy", report.machine_busy)) if on)
    return f"? speedup unreliable: {why}; rerun on an idle machine (--duration-s to time longer)"


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
    notes += [f"- {n}" for n in (speedup_note(report),) if n]
    notes += [f"- `{b.name}`: {w}" for b in report.backends for w in b.warnings]
    notes += [f"- gate failed: {g.message}" for g in report.gate_failures]
    if notes:
        out += ["", "Notes:", *notes]
    out.append("")
    return "\n".join(out)


@dataclass(frozen=True)
class PlotPoint:
    label: str
    x: float      # median latency at the first batch size, ms
    y: float      # top-1 % (labeled data) or top-1 agreement with the baseline %


@dataclass(frozen=True)
class PlotPlan:
    """What the PNG shows, decided apart from drawing it (so it can be tested without pixels)."""

    latency: str                         # "bars" (one batch size: a line through one point says nothing) | "lines"
    batch_sizes: tuple[int, ...]
    series: tuple[tuple[str, tuple[float, ...]], ...]  # (row label, median latency per batch size)
    points: tuple[PlotPoint, ...]        # accuracy vs latency, one per backend, named in a legend (no labels on
    accuracy_axis: str                   # the points: close points would print their names over each other)
    title: str
    caveats: tuple[str, ...]             # shown under the title: synthetic data, unstable timing, busy machine


def plot_plan(report: BenchReport) -> PlotPlan:
    rows = [b for b in report.backends if b.batches]
    sizes = tuple(sorted({r.batch_size for b in rows for r in b.batches}))
    labeled = any(b.accuracy and b.accuracy.top1_pct is not None for b in rows)
    first = sizes[0] if sizes else 1
    points = []
    for b in rows:
        if b.accuracy and (r := b.batch(first)):
            y = b.accuracy.top1_pct if labeled else b.accuracy.top1_agreement_pct
            if y is not None:
                points.append(PlotPoint(label(b), r.host.latency_ms_median, y))
    caveats = []
    if report.data.get("synthetic"):
        caveats.append("SYNTHETIC DATA: random images, accuracy figures are meaningless")
    unstable = [label(b) for b in rows if any(r.host.unstable for r in b.batches)]
    if unstable:
        caveats.append(f"unstable timing (CoV above {UNSTABLE_COV:.0%}): {', '.join(unstable)}")
    if report.machine_busy:
        caveats.append("machine busy during the run: latencies inflated")
    baseline = " / ".join(label(b) for b in report.backends if b.baseline) or report.baseline
    title = (f"{report.model.get('arch')} {_size(report.model)} - {report.created_at[:10]} - "
             f"{(report.environment.get('cpu') or {}).get('model')}, {report.timing.get('threads')} threads")
    return PlotPlan(latency="bars" if len(sizes) == 1 else "lines", batch_sizes=sizes,
                    series=tuple((label(b), tuple(r.host.latency_ms_median for r in b.batches)) for b in rows),
                    points=tuple(points),
                    accuracy_axis="top-1 accuracy, %" if labeled else f"top-1 agreement with {baseline}, %",
                    title=title, caveats=tuple(caveats))


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def _plot_png(report: BenchReport, path: Path) -> PlotPlan:
    # The object API with an explicit Agg canvas: no global pyplot state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    plan = plot_plan(report)
    fig = Figure(figsize=(12, 5.5), dpi=100)
    FigureCanvasAgg(fig)
    lat, acc = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    colors = {name: f"C{i % 10}" for i, (name, _) in enumerate(plan.series)}
    markers = {name: MARKERS[i % len(MARKERS)] for i, (name, _) in enumerate(plan.series)}
    if plan.latency == "bars":
        names = [name for name, _ in plan.series]
        values = [ys[0] for _, ys in plan.series]
        bars = lat.bar(range(len(names)), values, color=[colors[n] for n in names])
        lat.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=8)
        lat.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        lat.set_ylabel(f"median latency at batch {plan.batch_sizes[0]}, ms (host to host)")
        lat.set_title(f"latency at batch {plan.batch_sizes[0]}")
        lat.grid(True, axis="y", alpha=0.3)
    else:
        for name, ys in plan.series:
            lat.plot(plan.batch_sizes[:len(ys)], ys, marker=markers[name], color=colors[name], label=name)
        lat.set_xscale("log", base=2)
        lat.set_yscale("log")
        plain = ScalarFormatter()
        plain.set_scientific(False)
        lat.xaxis.set_major_formatter(plain)
        lat.yaxis.set_major_formatter(plain)
        lat.yaxis.set_minor_formatter(NullFormatter())
        lat.set_xticks(plan.batch_sizes)
        lat.set_xlabel("batch size")
        lat.set_ylabel("median latency per batch, ms (host to host)")
        lat.set_title("latency vs batch size")
        lat.grid(True, which="both", alpha=0.3)
        lat.legend(fontsize=8)
    for pt in plan.points:
        acc.scatter([pt.x], [pt.y], s=50, color=colors.get(pt.label), marker=markers.get(pt.label, "o"),
                    label=pt.label)
    if plan.points:  # outside the axes: a legend inside may cover a point
        acc.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
        acc.margins(x=0.1, y=0.1)
    acc.set_xlabel(f"median latency at batch {plan.batch_sizes[0] if plan.batch_sizes else 1}, ms")
    acc.set_ylabel(plan.accuracy_axis)
    acc.set_title("accuracy vs latency")
    acc.grid(True, alpha=0.3)
    fig.suptitle(plan.title + "".join(f"\n{c}" for c in plan.caveats), fontsize=9,
                 color="firebrick" if plan.caveats else "black")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return plan


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


# the terminal table: (header, wide only); dropped from the right of this order when the console is narrow
_COLUMNS = (("backend", False), ("prec", False), ("status", False), ("batch", False), ("size MB", True),
            ("RSS MiB", True), ("top-1 %", False), ("drop", False), ("agree %", None), ("p50 ms", False),
            ("p99 ms", False), ("CoV", True), ("img/s", False), ("speedup", False), ("file", True))
_DROP_WHEN_NARROW = ("prec", "p99 ms")  # the label already names the precision; p50 carries the latency


@dataclass(frozen=True)
class TerminalTable:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    footnotes: tuple[str, ...]   # reasons of rows that did not run, the '?' speedups, --models files
    title: str

    def width(self) -> int:
        """Characters one line needs in rich_table's layout: a space of padding either side of each column and a
        space between columns, none at the table's edges."""
        cols = zip(self.headers, *self.rows, strict=True) if self.rows else ((h,) for h in self.headers)
        return sum(max(len(c) for c in col) + 3 for col in cols) - 3

    def without(self, header: str) -> TerminalTable:
        if header not in self.headers:
            return self
        i = self.headers.index(header)
        return TerminalTable(self.headers[:i] + self.headers[i + 1:],
                             tuple(r[:i] + r[i + 1:] for r in self.rows), self.footnotes, self.title)


def _user_file(b: BackendResult) -> bool:
    """A --models file (its row is named after the file; engines made by bench are named after the backend)."""
    return b.artifact is not None and Path(b.artifact).name == b.name


def terminal_table(report: BenchReport, *, wide: bool = False, width: int | None = None) -> TerminalTable:
    """The table ``rtresnet bench`` prints: short labels and the figures that decide (latency, throughput,
    speedup, top-1 or agreement); ``wide`` adds size, memory, CoV, agreement and files. With ``width``, narrow
    tables drop the precision and p99 columns rather than wrap a number."""
    labeled = bool(report.data.get("labeled"))
    has_acc = any(b.accuracy for b in report.backends)
    any_down = any(not b.ok for b in report.backends)
    files = any(_user_file(b) for b in report.backends)
    keep = []
    for h, wide_only in _COLUMNS:
        if h == "status" and not any_down:
            continue
        if h in ("top-1 %", "drop") and not labeled:
            continue
        if h == "agree %" and not (has_acc and (wide or not labeled)):
            continue
        if h == "file" and not files:
            continue
        if wide_only and not wide:
            continue
        keep.append(h)
    footnotes: list[str] = []
    rows = []
    for b, r in _rows(report):
        acc = b.accuracy
        status = "ok"
        if not b.ok:
            footnotes.append(f"({len(footnotes) + 1}) {label(b)} {b.status}: {b.reason}")
            status = f"{b.status} ({len(footnotes)})"
        cov = "" if r is None else f"{r.host.cov * 100:.1f}%" + ("!" if r.host.unstable else "")
        cells = {"backend": label(b) + (" *" if b.baseline else ""), "prec": b.precision, "status": status,
                 "batch": "" if r is None else str(r.batch_size),
                 "size MB": _f(None if b.size_bytes is None else b.size_bytes / 1e6, ".1f"),
                 "RSS MiB": _f(b.peak_rss_mib, ".0f"),
                 "top-1 %": _f(acc.top1_pct if acc else None, ".2f"),
                 "drop": _f(acc.top1_drop_pts if acc else None, "+.2f"),
                 "agree %": _f(acc.top1_agreement_pct if acc else None, ".1f"),
                 "p50 ms": _f(r.host.latency_ms_median if r else None, ".2f"),
                 "p99 ms": _f(r.host.latency_ms_p99 if r else None, ".2f"), "CoV": cov,
                 "img/s": _f(r.throughput_img_s if r else None, ".1f"), "speedup": _speedup(r),
                 "file": b.artifact if _user_file(b) else ""}
        rows.append(tuple(cells[h] for h in keep))
    if note := speedup_note(report):
        footnotes.append(note)
    baselines = [b for b in report.backends if b.baseline]
    if baselines:
        # PyTorch baselines pair by device (torch for CPU rows, torch-cuda for GPU rows); a --baseline file is
        # every row's reference, whatever device it ran on
        same = "same batch size" if any(_user_file(b) for b in baselines) else "same device, same batch size"
        footnotes.append(f"* baseline: speedup{' and agreement' if has_acc else ''} are against "
                         f"{' / '.join(label(b) for b in baselines)} ({same})")
    if files and not wide:
        footnotes.append("files: " + ", ".join(f"{label(b)} = {b.artifact}" for b in report.backends
                                                if _user_file(b)))
    title = f"{report.model.get('arch')} {_size(report.model)}, {report.timing.get('threads')} threads"
    table = TerminalTable(tuple(keep), tuple(rows), tuple(footnotes), title)
    if width is not None and not wide:
        for h in _DROP_WHEN_NARROW:
            if table.width() <= width:
                break
            table = table.without(h)
    return table


def summary_line(report: BenchReport) -> str:
    """One line after the table: the fastest backend and its speedup, and each gate passed or failed."""
    ran = [b for b in report.backends if b.ok and b.batches]
    if not ran:
        fastest = "no backend ran"
    else:
        top = max(r.batch_size for b in ran for r in b.batches)
        best = max((b for b in ran if b.batch(top)), key=lambda b: b.batch(top).throughput_img_s)
        if best.baseline:
            fastest = (f"fastest: {label(best)} (the baseline), {best.batch(top).throughput_img_s:.1f} img/s at "
                       f"batch {top}")
        elif all(r.speedup_vs_baseline is None for r in best.batches):
            fastest = (f"fastest: {label(best)}, {best.batch(top).throughput_img_s:.1f} img/s at batch {top} "
                       f"(no baseline ran)")
        else:
            base = " / ".join(label(b) for b in report.backends if b.baseline) or report.baseline
            parts = [f"{_speedup(r)} at batch {r.batch_size}" for r in best.batches if r.speedup_vs_baseline]
            fastest = f"fastest: {label(best)}, {parts[0].replace(' at', f' vs {base} at', 1)}" + \
                "".join(f", {p}" for p in parts[1:])
    return f"{fastest}; {gates_text(report)}"


def gates_text(report: BenchReport) -> str:
    """``gates: top-1 drop <= 1 pts passed`` / ``... failed (ort int8 2.10 pts)``; ``no gates set``."""
    g = report.gates or {}
    parts: list[str] = []
    for key, metric, text, unit in (("min_top1_pct", "top1_pct", "top-1 >= {:g}%", "%"),
                                    ("max_top1_drop_pts", "top1_drop_pts", "top-1 drop <= {:g} pts", " pts")):
        if g.get(key) is None:
            continue
        # a row that failed or has no top-1 misses every gate: name it under the first one set, not twice
        misses = [f for f in report.gate_failures if f.metric == metric or (f.metric == "status" and not parts)]
        verdict = "passed" if not misses else "failed (" + ", ".join(
            f"{label(report.backend(f.backend))} {f.value:.2f}{unit}" if f.value is not None else
            f"{label(report.backend(f.backend))} has no top-1" for f in misses) + ")"
        parts.append(f"{text.format(g[key])} {verdict}")
    return "gates: " + ", ".join(parts) if parts else "no gates set"


def rich_table(report: BenchReport, *, wide: bool = False, width: int | None = None):
    """The terminal table as a rich ``Table``: numbers never wrap (the label column folds first)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    t = terminal_table(report, wide=wide, width=width)
    table = Table(title=t.title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title_justify="left")
    for h in t.headers:
        text = h in ("backend", "status", "file")
        table.add_column(h, justify="left" if text else "right", no_wrap=not text,
                         overflow="fold" if text else "ellipsis", min_width=None if text else
                         max([len(h), *(len(r[t.headers.index(h)]) for r in t.rows)]))
    for row in t.rows:
        cells = [Text(c) for c in row]  # Text, not markup: labels and files may contain [brackets]
        if "status" in t.headers and not row[t.headers.index("status")].startswith("ok"):
            i = t.headers.index("status")
            cells[i].stylize("yellow" if row[i].startswith("unavailable") else "red")
        table.add_row(*cells)
    return table
