"""Bench report files: JSON schema, CSV header and rows, Markdown table, PNG plot, terminal table, gates."""

from __future__ import annotations

import csv
import dataclasses
import io
import json

import pytest

from rtresnet.bench.gates import check_gates, validate_gates
from rtresnet.bench.report import (
    CSV_FIELDS,
    TABLE_HEADER,
    csv_text,
    markdown_text,
    plot_plan,
    rich_table,
    summary_line,
    terminal_table,
    write_reports,
)
from rtresnet.bench.results import SCHEMA, SCHEMA_VERSION, AccuracyResult, BackendResult, BatchResult, BenchReport
from rtresnet.bench.stats import LatencyStats
from rtresnet.errors import RtresnetError


def _batch(b: int, median_ms: float, speedup: float | None = None) -> BatchResult:
    stats = LatencyStats.from_samples([median_ms * f for f in (0.98, 1.0, 1.0, 1.02)])
    return BatchResult(batch_size=b, host=stats, device=None, throughput_img_s=b * 1e3 / stats.latency_ms_mean,
                       device_throughput_img_s=None, speedup_vs_baseline=speedup, warmup_iters=3)


def _acc(top1: float, drop: float) -> AccuracyResult:
    return AccuracyResult(samples=100, top1_agreement_pct=100 - drop, top5_agreement_pct=100.0, max_abs_diff=0.01,
                          cosine_mean=0.9999, top1_pct=top1, top5_pct=99.0, top1_drop_pts=drop, top5_drop_pts=0.0)


@pytest.fixture(scope="module")
def report() -> BenchReport:
    backends = (
        BackendResult("torch", "ok", runtime="torch", size_bytes=44_700_000, peak_rss_mib=60.0,
                      batches=(_batch(1, 50.0, 1.0), _batch(8, 300.0, 1.0)), accuracy=_acc(98.0, 0.0)),
        BackendResult("onnxruntime-int8", "ok", runtime="onnxruntime", precision="int8", size_bytes=11_300_000,
                      batches=(_batch(1, 9.0, 50 / 9), _batch(8, 60.0, 5.0)), accuracy=_acc(97.2, 0.8),
                      warnings=("unstable timing, CoV above 10% at batch 8 (12%): other load on the machine?",)),
        BackendResult("tensorrt-fp16", "unavailable", reason="no CUDA GPU visible to PyTorch", runtime="tensorrt",
                      precision="fp16", device="cuda"),
    )
    return BenchReport(created_at="2026-11-26T17:00:00Z",
                       model={"arch": "resnet18", "input_size": [32, 32], "weights": "digits.safetensors"},
                       data={"source": "digits test split", "samples": 100, "labeled": True, "synthetic": False},
                       timing={"batch_sizes": [1, 8], "threads": 2, "description": "warm-up 3 iterations",
                               "host_scope": "end-to-end", "device_scope": None},
                       memory_method="host: VmHWM", baseline="torch",
                       environment={"cpu": {"model": "Test CPU", "arch": "x86_64", "usable_cores": 2,
                                            "isa": ["avx2"]}, "gpu": None,
                                    "versions": {"torch": "2.13.0", "onnxruntime": "1.32.0", "tensorrt": None}},
                       backends=backends)


def test_json_has_versioned_schema_and_round_trips(report, tmp_path):
    write_reports(report, json_path=tmp_path / "r.json")
    d = json.loads((tmp_path / "r.json").read_text())
    assert (d["schema"], d["schema_version"]) == (SCHEMA, SCHEMA_VERSION) == ("rtresnet.bench-report", 1)
    assert d["backends"][1]["batches"][0]["host"]["latency_ms_p99"] == pytest.approx(9.0 * 1.02)
    assert d["backends"][2]["status"] == "unavailable" and "CUDA" in d["backends"][2]["reason"]
    assert BenchReport.from_json((tmp_path / "r.json").read_text()) == report
    with pytest.raises(RtresnetError, match="schema version 99"):
        BenchReport.from_dict({**d, "schema_version": 99})
    with pytest.raises(RtresnetError, match="not an rtresnet bench report"):
        BenchReport.from_dict({"backends": []})


def test_csv_header_and_one_row_per_backend_and_batch(report):
    rows = list(csv.DictReader(io.StringIO(csv_text(report))))
    assert tuple(rows[0].keys()) == CSV_FIELDS
    assert [(r["backend"], r["batch_size"]) for r in rows] == [
        ("torch", "1"), ("torch", "8"), ("onnxruntime-int8", "1"), ("onnxruntime-int8", "8"), ("tensorrt-fp16", "")]
    assert float(rows[2]["latency_ms_median"]) == pytest.approx(9.0)
    assert float(rows[2]["top1_drop_pts"]) == pytest.approx(0.8)
    assert rows[4]["status"] == "unavailable" and rows[4]["reason"] == "no CUDA GPU visible to PyTorch"


def test_markdown_table_and_environment(report):
    md = markdown_text(report)
    assert "| " + " | ".join(TABLE_HEADER) + " |" in md
    assert "| onnxruntime-int8 | ok | 1 | 11.3 |  | 97.20 | +0.80 | 99.2 | 9.00 | 9.18 |" in md
    assert "| tensorrt-fp16 | unavailable: no CUDA GPU visible to PyTorch |" in md
    assert "Test CPU" in md and "2 threads used" in md and "onnxruntime 1.32.0" in md
    assert "tensorrt not installed" in md
    assert "unstable timing, CoV above 10% at batch 8 (12%)" in md
    assert "| 5.56x |" in md


def test_png_plot_is_a_png(report, tmp_path):
    (path,) = write_reports(report, plot_path=tmp_path / "plot.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, no leftovers


def _printed(report, width: int, wide: bool = False) -> str:
    from rich.console import Console

    console = Console(width=width, record=True)
    console.print(rich_table(report, wide=wide, width=width))
    return console.export_text()


def test_rich_table_has_a_row_per_backend_and_batch(report):
    text = _printed(report, 200)
    assert text.count("ort int8") == 2 and "unavailable (1)" in text and "5.56x" in text
    assert "onnxruntime-int8" not in text  # short labels, not the backend names


@pytest.mark.parametrize("width", [100, 80])
def test_table_numbers_never_wrap(report, width):
    """Every row on one line: at 80 columns the precision and p99 columns go before a number splits."""
    text = _printed(report, width)
    lines = [line for line in text.splitlines() if line.strip()]
    assert all(len(line) <= width for line in lines)
    rows = [line.split() for line in lines if line.startswith(("torch", "ort", "trt"))]
    assert len(rows) == 5 and len(lines) == 2 + 1 + 5  # title, header, rule, rows: no continuation lines
    assert rows[0][0] == "torch" and "ok" in rows[0][:3] and "50.00" in rows[0] and "1.00x" in rows[0]
    assert rows[2][:2] == ["ort", "int8"] and "111.1" in rows[2] and "5.56x" in rows[2]


def test_table_narrow_and_wide_columns(report):
    narrow, wide = terminal_table(report), terminal_table(report, wide=True)
    assert narrow.headers == ("backend", "prec", "status", "batch", "top-1 %", "drop", "p50 ms", "p99 ms", "img/s",
                              "speedup")
    assert {"size MB", "RSS MiB", "agree %", "CoV"} <= set(wide.headers)
    assert narrow.rows[2][:4] == ("ort int8", "int8", "ok", "1")
    assert terminal_table(report, width=80).headers == ("backend", "status", "batch", "top-1 %", "drop", "p50 ms",
                                                        "img/s", "speedup")
    assert narrow.footnotes[0] == "(1) trt fp16 unavailable: no CUDA GPU visible to PyTorch"


def test_summary_line_names_the_fastest_and_the_gates(report):
    assert summary_line(report) == "fastest: ort int8, 5.56x vs torch at batch 1, 5.00x at batch 8; no gates set"
    baseline = dataclasses.replace(report.backends[0], baseline=True)
    gated = dataclasses.replace(report, backends=(baseline, *report.backends[1:]),
                                gates={"min_top1_pct": 97.0, "max_top1_drop_pts": 0.5})
    gated = dataclasses.replace(gated, gate_failures=check_gates(gated.backends, 97.0, 0.5))
    assert summary_line(gated).endswith(
        "; gates: top-1 >= 97% passed, top-1 drop <= 0.5 pts failed (ort int8 0.80 pts)")
    only_torch = dataclasses.replace(report, backends=(baseline,))
    assert summary_line(only_torch) == "fastest: torch (the baseline), 26.7 img/s at batch 8; no gates set"


def test_min_top1_does_not_gate_the_baseline(report):
    torch_row = dataclasses.replace(report.backends[0], baseline=True, accuracy=_acc(90.0, 0.0))
    fails = check_gates((torch_row, *report.backends[1:]), 95.0, None)
    assert [f.backend for f in fails] == []  # ort int8 97.2 passes; torch 90.0 is the yardstick, not gated
    fails = check_gates((dataclasses.replace(torch_row, baseline=False), *report.backends[1:]), 95.0, None)
    assert [f.backend for f in fails] == ["torch"]


def _unstable(b: int, median_ms: float) -> BatchResult:
    stats = LatencyStats.from_samples([median_ms * f for f in (0.5, 1.0, 1.0, 10.0)])
    return dataclasses.replace(_batch(b, median_ms), host=stats)


def test_speedup_from_unstable_timing_is_flagged_in_its_row(report):
    """A baseline timed while the machine was busy (CoV far above 10 %) makes every speedup against it suspect."""
    from rtresnet.bench.harness import _with_speedups

    torch_row = dataclasses.replace(report.backends[0], batches=(_unstable(1, 500.0), _batch(8, 300.0)))
    rows, baseline = _with_speedups([torch_row, *report.backends[1:]], busy=False)
    assert baseline == "torch" and rows[0].baseline and not rows[1].baseline
    int8 = rows[1]
    assert int8.batch(1).speedup_unstable and not int8.batch(8).speedup_unstable
    assert not rows[0].batch(1).speedup_unstable  # the baseline against itself is exactly 1
    flagged = dataclasses.replace(report, backends=tuple(rows))
    table = terminal_table(flagged)
    assert table.rows[2][-1] == "55.56x?" and table.rows[3][-1] == "5.00x"
    assert any(n.startswith("? speedup unreliable: timing varied (CoV above 10%)") for n in table.footnotes)
    assert "| 55.56x? |" in markdown_text(flagged) and "- ? speedup unreliable" in markdown_text(flagged)
    # a busy machine flags every speedup, stable or not
    rows, _ = _with_speedups(list(report.backends), busy=True)
    assert all(r.speedup_unstable for b in rows[1:] for r in b.batches)


def test_plot_plan(report, tmp_path):
    plan = plot_plan(report)
    assert plan.latency == "lines" and plan.batch_sizes == (1, 8) and plan.caveats == ()
    assert [p.label for p in plan.points] == ["torch", "ort int8"]  # named in a legend, not printed on the points
    # one batch size: bars, not a line through one point; synthetic data and unstable timing said in the title
    one = dataclasses.replace(
        report, data={**report.data, "synthetic": True, "labeled": False},
        backends=(dataclasses.replace(report.backends[0], batches=(_unstable(1, 50.0),)),
                  dataclasses.replace(report.backends[1], batches=(_batch(1, 9.0),)), report.backends[2]))
    plan = plot_plan(one)
    assert plan.latency == "bars" and plan.series == (("torch", (50.0,)), ("ort int8", (9.0,)))
    assert plan.caveats[0].startswith("SYNTHETIC DATA") and plan.caveats[1].endswith("CoV above 10%): torch")
    (path,) = write_reports(one, plot_path=tmp_path / "one.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_gates(report):
    assert check_gates(report.backends, None, None) == ()
    assert check_gates(report.backends, 97.0, 1.0) == ()  # unavailable backends are skipped
    fails = check_gates(report.backends, 97.5, 0.5)
    assert [(f.backend, f.metric) for f in fails] == [("onnxruntime-int8", "top1_pct"),
                                                      ("onnxruntime-int8", "top1_drop_pts")]
    assert "onnxruntime-int8 top-1 97.20% < --min-top1 97.5%" == fails[0].message
    failed = BackendResult("onnxruntime", "failed", reason="load failed: boom")
    assert [f.metric for f in check_gates((failed,), None, 1.0)] == ["status"]
    with pytest.raises(RtresnetError, match="did you mean 95"):
        validate_gates(0.95, None)
    with pytest.raises(RtresnetError, match="percentage points"):
        validate_gates(None, -1)


def test_busy_machine_note():
    from rtresnet.bench.env import busy_note

    assert busy_note((0.3, 0, 0), (2.1, 0, 0), cores=2) is None  # the benchmark's own two threads
    note = busy_note((5.2, 0, 0), (4.0, 0, 0), cores=2)
    assert note.startswith("machine busy: 1-minute load average 5.2 on 2 usable cores")
    assert busy_note(None, None, cores=2) is None
