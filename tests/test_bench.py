"""`rtresnet.bench.run` and `rtresnet bench` end to end on a tiny model (resnet18, 10 classes, 32x32)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from rtresnet.bench import TimingConfig, run
from rtresnet.cli import main
from rtresnet.errors import RtresnetError
from rtresnet.sidecar import sidecar_path

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


def _image_folder(root, classes, per_class):
    rng = np.random.default_rng(0)
    for cls in classes:
        (root / cls).mkdir()
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """A labeled ImageFolder: a folder per class of the 10-class model, and one identical image in two of them,
    so top-1 can never be 100 %."""
    root = _image_folder(tmp_path_factory.mktemp("images"), [f"class{i}" for i in range(10)], 1)
    same = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    for cls in ("class0", "class1"):
        same.save(root / cls / "same.png")
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
    base = [*TINY, "--weights", str(checkpoint), "--backends", "torch,onnxruntime", "--data", str(image_folder)]
    passed = CliRunner().invoke(main, [*base, "--max-top1-drop", "0"])
    assert passed.exit_code == 0, passed.output
    assert passed.stdout.splitlines()[-1].endswith("; gates: top-1 drop <= 0 pts passed")  # passing gates say so
    failed = CliRunner().invoke(main, [*base, "--min-top1", "100"])
    assert failed.exit_code == 3, failed.output
    # the FP32 engine misses the gate; the PyTorch baseline, with the same top-1, is not gated itself
    assert "gate failed: onnxruntime top-1" in failed.stderr and "< --min-top1 100%" in failed.stderr
    assert "gate failed: torch" not in failed.stderr
    assert "; gates: top-1 >= 100% failed (ort fp32 " in failed.stdout.splitlines()[-1]
    assert failed.stderr.strip().splitlines()[-1].startswith("done in ")  # the closing time line, exit 3 or not


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
    engine = next(work.glob("*_fp32_b1-*_ort*.onnx"))
    result = CliRunner().invoke(main, ["bench", "--models", str(engine), "--weights", str(checkpoint),
                                       "--threads", "1", "--warmup", "0", "--iters", "2", "--samples", "4"])
    assert result.exit_code == 0, result.output
    header, rows = _table(result.stdout)
    assert rows[0][0] == "torch *"  # the baseline row comes first
    engine_row = dict(zip(header, rows[1], strict=True))
    assert engine_row["backend"] == "ort fp32" and engine_row["agree %"] == "100.0"  # agreement with PyTorch
    assert f"files: ort fp32 = {engine}" in result.stdout  # the short label says which file it is


def _table(text: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the printed table (columns are separated by at least two spaces)."""
    import re

    lines = text.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.strip().startswith("───"))
    header = re.split(r"\s{2,}", lines[rule - 1].strip())
    rows = []
    for line in lines[rule + 1:]:
        if not line.strip() or re.match(r"\(\d+\) |[*?] |files: |fastest: ", line):  # the footnotes
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return header, rows


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


# --- issue 15: a table people can read, flags people reach for ---

def _fp32_engine(report):
    return next(report[1].glob("*_fp32_b1-*_ort*.onnx"))


@pytest.mark.parametrize("columns", [100, 80])
def test_table_fits_the_terminal_without_splitting_numbers(checkpoint, columns):
    result = CliRunner().invoke(main, [*TINY, "--weights", str(checkpoint), "--backends",
                                       "torch,onnxruntime,tensorrt-int8", "--batch-sizes", "1,2", "--samples", "4"],
                                env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    table = lines[:next(i for i, line in enumerate(lines) if line.startswith("(1)"))]  # footnotes are one line each
    assert all(len(line.rstrip()) <= columns for line in table), result.stdout
    header, rows = _table(result.stdout)
    # one line per backend and batch size: no cell continued on a second line
    assert [r[0] for r in rows] == ["torch *", "torch *", "ort fp32", "ort fp32", "trt int8"]
    for row in rows[:4]:
        cells = dict(zip(header, row, strict=True))
        for h in ("p50 ms", "img/s"):
            float(cells[h])  # a whole number, not '14.' with '20' on the next line
        assert cells["speedup"].rstrip("?").endswith("x")
    assert "unavailable (1)" in rows[4] and "RSS MiB" not in header and "CoV" not in header
    assert any(line.startswith("(1) trt int8 unavailable: ") for line in lines)
    assert lines[-1].startswith("fastest: ") and lines[-1].endswith("; no gates set")


def test_wide_table_has_the_secondary_columns(checkpoint):
    result = CliRunner().invoke(main, [*TINY, "--weights", str(checkpoint), "--backends", "torch", "--samples", "4",
                                       "--wide"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    header, rows = _table(result.stdout)
    assert {"size MB", "RSS MiB", "CoV", "agree %", "prec", "p99 ms"} <= set(header)
    assert rows[0][0] == "torch *" and len(rows) == 1


def test_synthetic_data_warning_once_per_bench(checkpoint, tmp_path):
    # the bench data (4 images) and the INT8 calibration data (8 images) are both synthetic: one warning
    result = CliRunner().invoke(main, [*TINY, "--weights", str(checkpoint), "--backends", "onnxruntime-int8",
                                       "--samples", "4", "--calib-size", "8", "--work-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("SYNTHETIC DATA") == 1, result.stderr
    assert "WARNING" not in result.stderr  # one warning style: 'warning: ...'


def test_json_to_stdout_and_into_a_new_folder(checkpoint, tmp_path):
    result = CliRunner().invoke(main, [*TINY, "--weights", str(checkpoint), "--backends", "torch", "--samples", "4",
                                       "--json", "-"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # stdout is the report alone; the table went to stderr
    assert report["schema"] == "rtresnet.bench-report" and "fastest: torch" in result.stderr
    out = tmp_path / "new" / "dir" / "r.json"
    result = CliRunner().invoke(main, [*TINY, "--weights", str(checkpoint), "--backends", "torch", "--samples", "4",
                                       "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["backends"][0]["label"] == "torch"


def test_models_against_a_baseline_file(report, tmp_path):
    """Two engines compared directly: speedup and agreement against the first, no PyTorch."""
    fp32 = _fp32_engine(report)
    work = report[1]
    onnx = work / "resnet18.onnx"  # the FP32 export the engine was built from: same network, another file
    rep = run(models=[onnx, fp32], baseline=fp32, timing=TimingConfig(warmup_iters=0, iters=2), threads=1,
              samples=4, work_dir=tmp_path)
    assert [b.name for b in rep.backends] == [fp32.name, onnx.name]  # the baseline first
    base, other = rep.backends
    assert base.baseline and not other.baseline and rep.baseline == fp32.name
    assert base.batch(1).speedup_vs_baseline == 1.0
    assert other.batch(1).speedup_vs_baseline == pytest.approx(
        base.batch(1).host.latency_ms_median / other.batch(1).host.latency_ms_median)
    assert other.accuracy.top1_agreement_pct == 100.0 and other.accuracy.cosine_mean > 0.9999
    assert "torch" not in [b.runtime for b in rep.backends]
    assert not list(tmp_path.glob("*.onnx"))  # the files were used as given, nothing built


def test_only_the_baseline_file_is_the_baseline_when_file_names_repeat(report, tmp_path):
    """Two files with one base name (fp32/m.onnx, int8/m.onnx): the other one is still compared and gated."""
    import shutil

    fp32 = _fp32_engine(report)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = Path(shutil.copy(report[1] / "resnet18.onnx", tmp_path / "a" / "m.onnx"))
    second = Path(shutil.copy(fp32, tmp_path / "b" / "m.onnx"))
    shutil.copy(sidecar_path(fp32), sidecar_path(second))
    rep = run(models=[first, second], baseline=first, timing=TimingConfig(warmup_iters=0, iters=2), threads=1,
              samples=4, work_dir=tmp_path / "work")
    assert [(b.artifact, b.baseline) for b in rep.backends] == [(str(first), True), (str(second), False)]
    assert rep.backends[1].batch(1).speedup_vs_baseline is not None


def test_cli_baseline_and_options_that_model_files_ignore(report):
    fp32 = _fp32_engine(report)
    onnx = report[1] / "resnet18.onnx"
    runner = CliRunner()
    r = runner.invoke(main, ["bench", "--models", str(onnx), str(fp32), "--baseline", str(fp32), "--threads", "1",
                             "--warmup", "0", "--iters", "2", "--samples", "4"], env={"COLUMNS": "100"})
    assert r.exit_code == 0, r.output
    header, rows = _table(r.stdout)
    # labels from the engine sidecar and the ONNX, numbered as the files are given; the baseline first
    assert [row[0] for row in rows] == ["ort fp32 #2 *", "ort fp32 #1"]
    assert "* baseline: speedup and agreement are against ort fp32" in r.stdout
    for bad in (["--input-size", "64"], ["--backends", "torch"], ["--num-classes", "5"]):
        r = runner.invoke(main, ["bench", "--models", str(fp32), *bad])
        assert r.exit_code == 2 and f"{bad[0]} applies to --arch only" in r.stderr, r.output
    r = runner.invoke(main, ["bench", "--models", str(fp32), "--baseline", "other.onnx"])
    assert r.exit_code == 2 and "--baseline other.onnx is not one of the --models files" in r.stderr
    r = runner.invoke(main, [*TINY, "--baseline", str(fp32)])
    assert r.exit_code == 2 and "--baseline picks one of the --models files" in r.stderr


def test_cli_device(checkpoint):
    runner = CliRunner()
    r = runner.invoke(main, [*TINY, "--device", "cpu", "--backends", "torch,tensorrt-fp16"])
    assert r.exit_code == 2 and "--device cpu, but tensorrt-fp16 runs on the GPU" in r.stderr, r.output
    r = runner.invoke(main, [*TINY, "--device", "tpu"])
    assert r.exit_code == 2
    r = runner.invoke(main, [*TINY, "--weights", str(checkpoint), "--device", "cpu", "--backends", "torch",
                             "--samples", "4"])
    assert r.exit_code == 0, r.output
    import torch

    if not torch.cuda.is_available():
        r = runner.invoke(main, [*TINY, "--device", "cuda"])
        assert r.exit_code == 1 and "--device cuda, but no CUDA GPU is visible" in r.stderr, r.output


def test_class_folders_that_do_not_match_the_model_give_no_top1(tmp_path, caplog):
    """bird/cat/dog on a 1000-class model without class names: agreement only, never 0 % top-1."""
    (tmp_path / "animals").mkdir()
    folder = _image_folder(tmp_path / "animals", ["bird", "cat", "dog"], 2)
    rep = run("resnet18", input_size=32, backends="torch,onnxruntime", data=folder,
              timing=TimingConfig(warmup_iters=0, iters=2), threads=1, work_dir=tmp_path / "w")
    assert not rep.data["labeled"]
    for b in rep.backends:
        assert b.ok and b.accuracy.top1_pct is None and b.accuracy.top1_agreement_pct == 100.0
    assert "class folders bird, cat, dog" in caplog.text and "no top-1" in caplog.text
    with pytest.raises(RtresnetError, match="class folders do not match the model's classes"):
        run("resnet18", input_size=32, backends="torch", data=folder, max_top1_drop=1.0, threads=1,
            timing=TimingConfig(warmup_iters=0, iters=2), work_dir=tmp_path / "w")


def test_calibration_size_default_agrees_with_build():
    import inspect

    from rtresnet.cli.bench_cmd import bench
    from rtresnet.cli.build_cmd import build
    from rtresnet.precision import quantize_int8

    def default(command):
        return next(p.default for p in command.params if p.name == "calib_size")

    assert default(bench) == default(build) == 512
    assert inspect.signature(run).parameters["calib_size"].default == \
        inspect.signature(quantize_int8).parameters["calib_size"].default == 512


def test_openvino_rows_run_the_same_files(checkpoint, tmp_path):
    """OpenVINO engines are bench rows like the others: FP32 agrees with PyTorch, INT8 from the cpu Q/DQ ONNX."""
    rep = run("resnet18", weights=checkpoint, input_size=32, backends="torch,openvino,openvino-int8",
              batch_sizes=(1, 4), timing=TimingConfig(warmup_iters=1, iters=3), threads=1, calib_data="synthetic",
              calib_size=8, work_dir=tmp_path)
    _, ov, int8 = rep.backends
    assert (ov.status, int8.status) == ("ok", "ok"), (ov.reason, int8.reason)
    assert ov.accuracy.top1_agreement_pct == 100.0 and ov.accuracy.cosine_mean > 0.9999
    assert int8.size_bytes < ov.size_bytes / 2 and [r.batch_size for r in int8.batches] == [1, 4]
    assert {p.suffix for p in tmp_path.rglob("*.blob")} == {".blob"} and len(list(tmp_path.rglob("*.blob"))) == 2
