"""`rtresnet.bench.run` and `rtresnet bench` end to end on a tiny model (resnet18, 10 classes, 32x32)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from rtresnet.bench import TimingConfig, run
from rtresnet.cli import main

TINY = ["bench", "--arch", "resnet18", "--num-classes", "10", "--input-size", "32", "--threads", "1", "--warmup", "1",
        "--iters", "3"]


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """Fixed random weights, so every run (and every process) benchmarks the same network."""
    import torch

    from rtresnet.models import create_model
    from rtresnet.models.checkpoint import save_state_dict

    torch.manual_seed(0)
    return save_state_dict(create_model("resnet18", num_classes=10), tmp_path_factory.mktemp("w") / "tiny.safetensors")


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """A labeled ImageFolder: two classes, and one identical image in both, so top-1 can never be 100 %."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    same = Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    for cls in ("cat", "dog"):
        (root / cls).mkdir()
        same.save(root / cls / "same.png")
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def report(checkpoint, image_folder, tmp_path_factory):
    work = tmp_path_factory.mktemp("bench-work")
    return run("resnet18", weights=checkpoint, input_size=32,
               backends="torch,onnxruntime,onnxruntime-int8,tensorrt-fp16", batch_sizes=(1, 4),
               timing=TimingConfig(warmup_iters=1, iters=4), threads=1, data=image_folder, calib_data="synthetic",
               calib_size=8, work_dir=work), work


def test_run_measures_every_backend_against_torch(report):
    report, _ = report
    assert [b.name for b in report.backends] == ["torch", "onnxruntime", "onnxruntime-int8", "tensorrt-fp16"]
    torch_row, ort, int8 = report.backends[:3]
    for b in (torch_row, ort, int8):
        assert b.status == "ok", b.reason
        assert [r.batch_size for r in b.batches] == [1, 4]
        for r in b.batches:
            assert r.host.samples == 4 and r.warmup_iters == 1
            assert 0 < r.host.latency_ms_min <= r.host.latency_ms_median <= r.host.latency_ms_p99
            assert r.throughput_img_s == pytest.approx(r.batch_size * 1e3 / r.host.latency_ms_mean)
            assert r.device is None  # CPU: host-to-host scope only
        assert b.size_bytes > 1e6 and b.peak_rss_mib is not None and b.peak_rss_mib > 0
    assert torch_row.batch(1).speedup_vs_baseline == 1.0
    assert ort.batch(4).speedup_vs_baseline == pytest.approx(
        torch_row.batch(4).host.latency_ms_median / ort.batch(4).host.latency_ms_median)
    # FP32 engine matches PyTorch; the INT8 engine is a quarter of the size
    assert ort.accuracy.top1_agreement_pct == 100.0 and ort.accuracy.cosine_mean > 0.9999
    assert int8.size_bytes < ort.size_bytes / 2 and int8.precision == "int8"
    # labeled folder: 12 images, top-1 of the baseline and each backend's drop against it
    assert report.data["labeled"] and report.data["samples"] == 12
    assert torch_row.accuracy.top1_pct < 100 and torch_row.accuracy.top1_drop_pts == 0.0
    assert ort.accuracy.top1_drop_pts == pytest.approx(torch_row.accuracy.top1_pct - ort.accuracy.top1_pct)


def test_unavailable_backend_gets_a_row_with_its_reason(report):
    trt = report[0].backends[-1]
    assert trt.status == "unavailable" and trt.batches == () and trt.accuracy is None
    assert "CUDA" in trt.reason or "TensorRT" in trt.reason


def test_report_environment_and_scope(report):
    report, _ = report
    env = report.environment
    assert env["threads"] == 1 and env["cpu"]["model"] and env["versions"]["onnxruntime"]
    assert "tensorrt" in env["versions"] and report.timing["threads"] == 1
    assert "host to host" in report.timing["host_scope"] and "warm-up 1 iterations" in report.timing["description"]
    assert "RSS" in report.memory_method


def test_failing_backend_does_not_stop_the_others(checkpoint, tmp_path, monkeypatch):
    from rtresnet.bench import backends

    def broken(self, spec):
        raise RuntimeError("builder crashed")

    monkeypatch.setattr(backends.Workspace, "engine", broken)
    rep = run("resnet18", weights=checkpoint, input_size=32, backends="onnxruntime,torch",
              timing=TimingConfig(warmup_iters=0, iters=2), threads=1, samples=4, work_dir=tmp_path)
    failed, ok = rep.backends
    assert failed.status == "failed" and failed.reason == "build failed: RuntimeError: builder crashed"
    assert ok.status == "ok" and ok.batch(1).host.samples == 2


def test_cli_writes_every_report(checkpoint, tmp_path):
    out = {k: tmp_path / f"r.{k}" for k in ("json", "csv", "md", "png")}
    result = CliRunner().invoke(main, [*TINY, "--weights", str(checkpoint), "--backends", "torch,tensorrt-int8",
                                       "--batch-sizes", "1,2", "--samples", "4", "--json", str(out["json"]),
                                       "--csv", str(out["csv"]), "--markdown", str(out["md"]),
                                       "--plot", str(out["png"])])
    assert result.exit_code == 0, result.output
    assert "torch" in result.stdout and "unavailable" in result.stdout
    d = json.loads(out["json"].read_text())
    assert d["schema_version"] == 1 and [b["name"] for b in d["backends"]] == ["torch", "tensorrt-int8"]
    assert out["csv"].read_text().splitlines()[0].startswith("backend,status,reason,")
    assert len(out["csv"].read_text().splitlines()) == 1 + 2 + 1
    assert "| torch | ok | 2 |" in out["md"].read_text()
    assert out["png"].read_bytes()[:4] == b"\x89PNG"


def test_cli_gates_exit_codes(checkpoint, image_folder):
    base = [*TINY, "--weights", str(checkpoint), "--backends", "torch", "--data", str(image_folder)]
    passed = CliRunner().invoke(main, [*base, "--max-top1-drop", "0"])
    assert passed.exit_code == 0, passed.output
    failed = CliRunner().invoke(main, [*base, "--min-top1", "100"])
    assert failed.exit_code == 3, failed.output
    assert "gate failed: torch top-1" in failed.stderr and "< --min-top1 100%" in failed.stderr


def test_cli_rejects_bad_input():
    runner = CliRunner()
    r = runner.invoke(main, [*TINY, "--min-top1", "50"])  # synthetic data has no labels
    assert r.exit_code == 1 and "need labeled data" in r.stderr
    r = runner.invoke(main, [*TINY, "--min-top1", "0.9"])
    assert r.exit_code == 1 and "did you mean 90" in r.stderr
    r = runner.invoke(main, [*TINY, "--backends", "torch,onnxruntime-int4"])
    assert r.exit_code == 2 and "unknown backend onnxruntime-int4" in r.stderr  # usage error
    r = runner.invoke(main, ["bench", "--batch-sizes", "1,x", "--arch", "resnet18"])
    assert r.exit_code == 2 and "comma-separated integers" in r.output
    r = runner.invoke(main, ["bench"])
    assert r.exit_code == 2 and "--arch" in r.output
    assert "Example" in runner.invoke(main, ["bench", "--help"]).output


def test_cli_models_mode(report, checkpoint):
    _, work = report
    engine = next(work.glob("*.fp32.onnxruntime.onnx"))
    result = CliRunner().invoke(main, ["bench", "--models", str(engine), "--weights", str(checkpoint),
                                       "--threads", "1", "--warmup", "0", "--iters", "2", "--samples", "4"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "│" in line]
    assert rows[0].split("│")[1].strip() == "torch"  # the baseline row comes first
    engine_row = [c.strip() for c in rows[1].split("│")]
    assert engine_row[1] == engine.name and engine_row[8] == "100.0"  # agreement with PyTorch


@pytest.mark.gpu
def test_gpu_rows_have_device_scope(checkpoint):
    rep = run("resnet18", weights=checkpoint, input_size=32, backends="torch,torch-cuda,torch-cuda-fp16",
              batch_sizes=(1, 4), timing=TimingConfig(warmup_iters=2, iters=5), threads=1, samples=8)
    assert "CUDA events" in rep.timing["device_scope"] and "not pure device compute" in rep.timing["device_scope"]
    assert any("torch-cuda runs with TF32 off" in n for n in rep.notes)
    cuda, fp16 = rep.backend("torch-cuda"), rep.backend("torch-cuda-fp16")
    assert cuda.device_scope == fp16.device_scope == "gpu-resident"  # PyTorch's runner has no stream of its own
    for b in (cuda, fp16):
        assert b.ok, b.reason
        r = b.batch(4)
        assert r.device is not None and r.device.samples == 5 and r.device_throughput_img_s > 0
        assert b.peak_gpu_mib is not None and b.peak_gpu_mib > 0
    assert cuda.accuracy.top1_agreement_pct == 100.0 and fp16.accuracy.cosine_mean > 0.99
    assert fp16.batch(1).speedup_vs_baseline == pytest.approx(
        cuda.batch(1).host.latency_ms_median / fp16.batch(1).host.latency_ms_median)
