"""`rtresnet inspect` (rtresnet.inspection): what a user reads about an ONNX model, an onnxruntime engine and a
TensorRT plan (never opened: its sidecar speaks for it), as text at 100 columns and as JSON."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

from rtresnet.cli import main
from rtresnet.errors import RtresnetError
from rtresnet.fileutil import sha256_file
from rtresnet.inspection import inspect_model
from rtresnet.sidecar import Sidecar, read_sidecar, sidecar_path, write_sidecar
from rtresnet.spec import ModelInfo


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    """resnet18 (10 classes, 32x32) as FP32, FP16 and INT8 Q/DQ (TensorRT layout) ONNX, and an INT8 onnxruntime
    engine with its sidecar: built once, in about ten seconds."""
    from rtresnet.engine import build_engine
    from rtresnet.export import export_onnx
    from rtresnet.precision import CalibrationSettings, convert_fp16, quantize_int8

    folder = tmp_path_factory.mktemp("inspect")
    fp32 = Path(export_onnx("resnet18", folder / "r18.onnx", num_classes=10, input_size=32, verify=False).path)
    fp16 = convert_fp16(fp32, folder / "r18-fp16.onnx", verify=False).path
    int8 = quantize_int8(fp32, folder / "r18-int8-trt.onnx", calib_data="synthetic", calib_size=16, calib_batch=8,
                         target="tensorrt", verify=False).path
    engine = build_engine(fp32, precision="int8", backend="onnxruntime", max_batch=2, output=folder / "eng.onnx",
                          calibration=CalibrationSettings("synthetic", calib_size=16, calib_batch=8)).path
    return {"fp32": fp32, "fp16": Path(fp16), "int8": Path(int8), "engine": Path(engine)}


@pytest.fixture()
def fake_plan(artifacts, tmp_path, monkeypatch) -> Path:
    """A TensorRT "plan" (bytes TensorRT would refuse) with a sidecar as a TensorRT build writes it, built from the
    INT8 Q/DQ ONNX; this machine as the tests see it has no TensorRT and no GPU."""
    monkeypatch.setattr("rtresnet.environment.tensorrt_version", lambda: None)
    monkeypatch.setattr("rtresnet.environment.gpu_info", lambda index=0: None)
    plan = tmp_path / "r18_int8.engine"
    plan.write_bytes(b"not a plan: inspect must never hand these bytes to TensorRT")
    ort = read_sidecar(artifacts["engine"])
    command = f"rtresnet build {artifacts['int8']} --backend tensorrt --max-batch 2 --output {plan} --force"
    write_sidecar(plan, replace(
        ort, backend="tensorrt", precision="int8", engine_sha256=sha256_file(plan), onnx_sha256=sha256_file(
            artifacts["int8"]), tensorrt_version="10.3.0", cuda_version="12.4", onnxruntime_version=None,
        execution_providers=(), cpu=None, gpu={"name": "NVIDIA L4", "compute_capability": "8.9"},
        flags={"hardware_compat": "none", "version_compat": False},
        calibration={"method": "entropy", "target": "tensorrt", "cache_key": "ab" * 32},
        extra={"onnx_path": str(artifacts["int8"]), "build_command": command}))
    return plan


def inspect_cli(*args: str):
    return CliRunner().invoke(main, ["inspect", *args], env={"COLUMNS": "100"})


def dq_consumers_by_op(path: Path) -> Counter:
    """Nodes per op type that read a DequantizeLinear output, directly or through Casts: counted with onnx alone."""
    graph = onnx.load(str(path)).graph
    readers = {}
    for n in graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    found, todo = {}, [o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output]
    while todo:
        for n in readers.get(todo.pop(), []):
            if n.op_type == "Cast":
                todo.extend(n.output)
            elif n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
                found[n.name] = n.op_type
    return Counter(found.values())


def test_fp32_onnx(artifacts):
    r = inspect_cli(str(artifacts["fp32"]))
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert out.splitlines()[0] == "r18.onnx: ONNX model, fp32"
    assert "input   [batch, 3, 32, 32]     float32" in out and "logits  [batch, 10]            float32" in out
    assert "float-nchw: resize 37 (bilinear), center crop 32x32, RGB" in out
    assert "opsets        ai.onnx 17" in out and "producer      pytorch" in out
    assert "nodes (49)    Conv 20, Relu 17, Add 8" in out and "\nint8\n" not in out
    assert "batch profile: dynamic batch" in out and "sidecar" not in out
    assert f"sha256        {sha256_file(artifacts['fp32'])}" in out
    assert "runs here: yes, with onnxruntime" in out
    assert max(map(len, out.splitlines())) <= 100


def test_fp16_onnx_counts_float16_initializers(artifacts):
    report = inspect_model(artifacts["fp16"])
    inits = Counter(onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name
                    for t in onnx.load(str(artifacts["fp16"])).graph.initializer)
    assert report.precision == "fp16" and report.graph.quantization is None
    assert report.graph.initializers == dict(inits) and inits["float16"] > 0
    out = inspect_cli(str(artifacts["fp16"])).stdout
    assert out.splitlines()[0] == "r18-fp16.onnx: ONNX model, fp16"
    assert f"initializers  float16 {inits['float16']}" in out


def test_int8_qdq_counts_per_op_type(artifacts):
    path = artifacts["int8"]
    report = inspect_model(path)
    q = report.graph.quantization
    expected = dq_consumers_by_op(path)
    assert {o.op_type: o.nodes for o in q.ops} == dict(expected)
    assert expected["Conv"] == 20 and expected["Add"] == 8  # every Conv; the identity input of every residual Add
    nodes = Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    assert (q.quantize_nodes, q.dequantize_nodes) == (nodes["QuantizeLinear"], nodes["DequantizeLinear"])
    assert q.weight_scales == "per-channel" and q.per_channel_weights == 20  # the TensorRT layout: axis 0
    assert (q.activation_dtype, q.activation_symmetric) == ("int8", True)
    assert report.precision == "int8" and report.graph.float_precision == "fp16"  # FP16 remainder
    assert q.settings == {"high_precision": "fp16", "method": "entropy", "target": "tensorrt"}
    out = inspect_cli(str(path)).stdout
    assert out.splitlines()[0] == "r18-int8-trt.onnx: ONNX model, int8 (float part fp16)"
    assert f"Q/DQ nodes    QuantizeLinear {nodes['QuantizeLinear']}, DequantizeLinear {nodes['DequantizeLinear']}" \
        in out
    assert "weights       int8, per-channel scales (20 per-channel, 0 per-tensor)" in out
    assert "    Conv                         20 / 20     40 DQ inputs" in out
    assert "    Add                           8 / 8       8 DQ inputs" in out
    assert "opsets        ai.onnx 19" in out and "more op types (--wide)" in out
    wide = inspect_cli(str(path), "--wide").stdout
    assert "more op types" not in wide and "GlobalAveragePool 1" in wide
    assert "more op types" not in CliRunner().invoke(main, ["-v", "inspect", str(path)]).stdout


def test_ort_engine_shows_profile_sidecar_and_build_command(artifacts):
    engine = artifacts["engine"]
    sidecar = read_sidecar(engine)
    r = inspect_cli(str(engine))
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == "eng.onnx: onnxruntime engine, int8 (float part fp32)"
    assert "batch profile: min 1, opt 2, max 2" in lines
    assert f"  backend       onnxruntime {sidecar.onnxruntime_version} (CPUExecutionProvider)" in lines
    assert "  flags         graph_optimization_level=ORT_ENABLE_EXTENDED" in lines
    calibration = next(line for line in lines if line.startswith("  calibration   "))
    assert "method entropy" in calibration and "target cpu" in calibration
    assert f"  built         {sidecar.built_at} in" in r.stdout and sidecar.cpu["model"] in r.stdout
    # onnxruntime fused the Q/DQ groups into INT8 kernels: those are counted, not the vanished DequantizeLinears
    assert "    QLinearConv                  20 / 20      fused int8 kernel" in lines
    # the build command, wrapped with backslashes, is the sidecar's command when pasted into a shell
    start = lines.index("  build command") + 1
    end = next(i for i, line in enumerate(lines) if line.startswith("runs here"))
    pasted = " ".join(line.strip().removesuffix("\\") for line in lines[start:end])
    assert shlex.split(pasted) == shlex.split(sidecar.extra["build_command"])
    assert lines[-1].startswith("runs here: yes, with onnxruntime") and "as built" in lines[-1]
    assert max(map(len, lines)) <= 100


def test_tensorrt_plan_is_described_by_its_sidecar_without_opening_it(fake_plan, artifacts):
    r = inspect_cli(str(fake_plan))
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert out.splitlines()[0] == "r18_int8.engine: TensorRT plan, int8 (float part fp16)"
    assert "TensorRT plan not opened: its facts come from the sidecar" in out
    assert "  backend       TensorRT 10.3.0, CUDA 12.4" in out
    assert "  built for     NVIDIA L4, compute capability 8.9" in out
    assert "batch profile: min 1, opt 2, max 2" in out and "--backend tensorrt" in out
    assert f"graph (source ONNX {artifacts['int8'].name})" in out  # Q/DQ counts from the ONNX it was built from
    assert "    Conv                         20 / 20     40 DQ inputs" in out
    assert "runs here: no" in out and "TensorRT is not installed" in " ".join(out.split())
    assert "tensorrt" not in sys.modules
    assert max(map(len, out.splitlines())) <= 100


def test_tensorrt_plan_runs_here_only_on_its_gpu(fake_plan, monkeypatch):
    monkeypatch.setattr("rtresnet.environment.tensorrt_version", lambda: "10.3.0")
    monkeypatch.setattr("rtresnet.environment.gpu_info",
                        lambda index=0: {"name": "NVIDIA L4", "compute_capability": "8.9"})
    assert inspect_model(fake_plan).runnable.ok
    monkeypatch.setattr("rtresnet.environment.gpu_info",
                        lambda index=0: {"name": "NVIDIA H100", "compute_capability": "9.0"})
    runnable = inspect_model(fake_plan).runnable
    assert not runnable and "built for compute capability 8.9" in runnable.detail
    assert "rebuild it here with `rtresnet build" in runnable.detail


def test_json_round_trips_key_facts(artifacts):
    engine = artifacts["engine"]
    r = inspect_cli(str(engine), "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    report = inspect_model(engine)
    assert doc["kind"] == "onnxruntime-engine" and doc["precision"] == "int8" and doc["plan_opened"] is True
    assert doc["sha256"] == sha256_file(engine) and doc["size_bytes"] == engine.stat().st_size
    assert doc["profile"] == {"min_batch": 1, "opt_batch": 2, "max_batch": 2}
    assert doc["inputs"] == [{"name": "input", "shape": ["batch", 3, 32, 32], "dtype": "float32"}]
    assert ModelInfo.from_dict(doc["model"]) == report.model
    assert Sidecar.from_json(json.dumps(doc["sidecar"])) == read_sidecar(engine)
    assert doc["graph"]["op_counts"] == dict(report.graph.op_counts)
    quant = doc["graph"]["quantization"]
    assert {o["op_type"]: o["nodes"] for o in quant["ops"]} == {"QLinearConv": 20, "QLinearAdd": 8, "QGemm": 1,
                                                              "QLinearGlobalAveragePool": 1}
    assert quant["weight_scales"] == "per-channel" and doc["runnable"]["ok"] is True


def test_json_of_a_plan_says_it_was_not_opened(fake_plan):
    doc = json.loads(inspect_cli(str(fake_plan), "--json").stdout)
    assert doc["kind"] == "tensorrt-plan" and doc["plan_opened"] is False
    assert doc["sidecar"]["gpu"]["name"] == "NVIDIA L4" and doc["runnable"]["ok"] is False


@pytest.mark.parametrize("case, message", [
    ("missing", "file not found"),
    ("text file", "is neither an ONNX model"),
    ("truncated onnx", "is not a readable ONNX model"),
    ("sidecar of another engine", "describes another engine"),
    ("plan without sidecar", "no sidecar"),
    ("the sidecar itself", "is a sidecar; inspect its engine instead"),
    ("folder", "is a folder"),
])
def test_bad_inputs_are_one_error_line(artifacts, tmp_path, case, message):
    path = tmp_path / "x.onnx"
    if case == "text file":
        path = tmp_path / "notes.txt"
        path.write_text("hello")
    elif case == "truncated onnx":
        path.write_bytes(artifacts["fp32"].read_bytes()[:5000])
    elif case == "sidecar of another engine":  # the FP32 model beside the INT8 engine's sidecar
        shutil.copy(artifacts["fp32"], path)
        shutil.copy(sidecar_path(artifacts["engine"]), sidecar_path(path))
    elif case == "plan without sidecar":
        path = tmp_path / "x.engine"
        path.write_bytes(b"plan")
    elif case == "the sidecar itself":
        shutil.copy(artifacts["engine"], path)
        shutil.copy(sidecar_path(artifacts["engine"]), sidecar_path(path))
        path = sidecar_path(path)
    elif case == "folder":
        path = tmp_path
    r = inspect_cli(str(path))
    assert r.exit_code == 1
    errors = [line for line in r.output.splitlines() if not line.startswith("done in")]
    assert len(errors) == 1 and errors[0].startswith("error: ") and message in errors[0], r.output
    assert "Traceback" not in r.output and r.stdout == ""
    with pytest.raises(RtresnetError, match=message):
        inspect_model(path)
