"""Bench report files: JSON schema, CSV header and rows, Markdown table, PNG plot, terminal table, gates."""

from __future__ import annotations

import csv
import io
import json

import pytest

from rtresnet.bench.gates import check_gates, validate_gates
from rtresnet.bench.report import CSV_FIELDS, TABLE_HEADER, csv_text, markdown_text, rich_table, write_reports
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


def test_rich_table_has_a_row_per_backend_and_batch(report):
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(rich_table(report))
    text = console.export_text()
    assert text.count("onnxruntime-int8") == 2 and "unavailable" in text and "5.56x" in text


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
