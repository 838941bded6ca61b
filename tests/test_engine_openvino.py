"""The OpenVINO engine backend: compiled blob + sidecar, its cache key and load guard (OpenVINO version, CPU model
and ISA), the check against onnxruntime at build, INT8 from the same Q/DQ ONNX as onnxruntime, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hostile import assert_one_line_error, files_under, invoke

from rtresnet.compare import FP32_TOLERANCE, Tolerance, compare_logits
from rtresnet.engine import build_engine
from rtresnet.environment import cpu_info, package_version
from rtresnet.errors import RtresnetError
from rtresnet.runtime import load
from rtresnet.sidecar import read_sidecar, sidecar_path

OV = package_version("openvino")
OV_MM = ".".join(OV.split(".")[:2])


@pytest.fixture(scope="module")
def blob(onnx_model, tmp_path_factory):
    return build_engine(onnx_model, backend="openvino", max_batch=4, engine_dir=tmp_path_factory.mktemp("ov_engine"))


@pytest.fixture()
def logs(caplog, monkeypatch):
    import logging

    monkeypatch.setattr(logging.getLogger("rtresnet"), "propagate", True)
    caplog.set_level("INFO", logger="rtresnet")
    return caplog


def _x(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32)


def _edit_sidecar(engine: Path, tmp_path: Path, **changes) -> Path:
    """A copy of ``engine`` whose sidecar says other things (as if built elsewhere)."""
    copy = tmp_path / engine.name
    copy.write_bytes(engine.read_bytes())
    data = json.loads(sidecar_path(engine).read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    sidecar_path(copy).write_text(json.dumps(data))
    return copy


def test_build_writes_a_blob_bound_to_this_openvino_and_cpu(blob, onnx_model):
    s = blob.sidecar
    cpu = cpu_info()
    assert blob.path.name == f"r18_fp32_b1-4_ov{OV_MM}_cpu.blob" and not blob.cache_hit
    assert (s.backend, s.openvino_version, s.flags) == ("openvino", OV, {"inference_precision": "f32"})
    assert s.cpu == {"model": cpu["model"], "arch": cpu["arch"], "isa": list(cpu["isa"])}
    assert s.profile == {"min_batch": 1, "opt_batch": 4, "max_batch": 4}
    assert "--backend openvino" in s.extra["build_command"]
    assert build_engine(onnx_model, backend="openvino", max_batch=4, engine_dir=blob.path.parent).cache_hit


def test_blob_runs_like_onnxruntime_on_the_same_onnx(blob, onnx_model):
    x = _x(6)
    with load(onnx_model, threads=1) as ort, load(blob.path, threads=1) as ov:
        assert ov.backend == "openvino" and ov.inference_precision == "f32" and ov.threads == 1
        assert ov.input_spec.describe() == "input[1..4, 3, 32, 32] float32 NCHW"
        result = compare_logits(ort.infer(x), ov.infer(x), FP32_TOLERANCE)  # 6 > max batch 4: split by the runner
        assert result, result.summary()


@pytest.mark.parametrize("change, words", [
    ({"openvino_version": "2024.0.0"}, ["compiled by OpenVINO 2024.0.0", f"this is OpenVINO {OV}"]),
    ({"cpu": {"model": "Some Other CPU"}}, ["compiled for another CPU", "Some Other CPU"]),
    ({"cpu": {"isa": ["avx2"]}}, ["another instruction set", "['avx2']"]),
], ids=["version", "cpu-model", "isa"])
def test_load_guard_refuses_a_blob_from_elsewhere_with_the_rebuild_command(blob, tmp_path, change, words):
    moved = _edit_sidecar(blob.path, tmp_path, **change)
    with pytest.raises(RtresnetError) as err:
        load(moved)
    message = str(err.value)
    assert "\n" not in message and all(w in message for w in words), message
    assert "rtresnet build" in message and "--backend openvino" in message


@pytest.mark.parametrize("change, reason", [
    ({"openvino_version": "2024.0.0"}, "openvino_version"),
    ({"cpu": {"isa": ["avx2"]}}, "cpu"),
], ids=["version", "isa"])
def test_cache_key_holds_the_openvino_version_and_isa(blob, onnx_model, tmp_path, logs, change, reason):
    moved = _edit_sidecar(blob.path, tmp_path, **change)
    art = build_engine(onnx_model, backend="openvino", max_batch=4, output=moved)
    assert not art.cache_hit and reason in logs.text
    assert read_sidecar(moved).openvino_version == OV  # rebuilt here: loads again
    load(moved).close()


def test_onnxruntime_engines_ignore_the_cpu_model(onnx_model, tmp_path):
    """onnxruntime engines run on any CPU of the architecture: another model or ISA is still a cache hit."""
    art = build_engine(onnx_model, backend="onnxruntime", max_batch=4, output=tmp_path / "e.onnx")
    moved = _edit_sidecar(art.path, tmp_path / "..", cpu={"model": "Other", "isa": []})
    assert build_engine(onnx_model, backend="onnxruntime", max_batch=4, output=moved).cache_hit


def test_bf16_is_asked_for_named_and_checked(onnx_model, tmp_path):
    art = build_engine(onnx_model, backend="openvino", max_batch=2, inference_precision="bf16", engine_dir=tmp_path)
    assert art.path.name.endswith("_cpu_bf16.blob") and art.sidecar.flags == {"inference_precision": "bf16"}
    assert "--inference-precision bf16" in art.sidecar.extra["build_command"]
    with load(art.path) as r:  # OpenVINO computes in bf16 where the CPU has it, f32 elsewhere
        assert r.inference_precision == ("bf16" if "avx512_bf16" in cpu_info()["isa"] or "amx_bf16" in
                                         cpu_info()["isa"] else "f32")


def test_a_build_that_fails_the_check_writes_nothing(onnx_model, tmp_path, monkeypatch):
    monkeypatch.setattr("rtresnet.engine.openvino.check_tolerance",
                        lambda precision, hint: Tolerance(max_abs_rel=0.0, min_top1_agreement=1.0))
    with pytest.raises(RtresnetError, match="does not match onnxruntime .* nothing was written") as err:
        build_engine(onnx_model, backend="openvino", max_batch=2, output=tmp_path / "e.blob")
    assert "\n" not in str(err.value)
    assert files_under(tmp_path) == set()


def test_int8_blob_from_the_cpu_qdq_onnx_matches_the_onnxruntime_engine(realistic_onnx, tmp_path):
    """The same calibrated Q/DQ ONNX through two INT8 kernel libraries, on photo crops of a realistic ResNet."""
    from rtresnet.precision import CalibrationSettings
    from rtresnet.realistic import photo_crops

    fp32, crops = realistic_onnx("resnet18", 64)
    settings = CalibrationSettings(crops, method="minmax", calib_size=32)
    ort = build_engine(fp32, precision="int8", backend="onnxruntime", max_batch=8, calibration=settings,
                       output=tmp_path / "r18_int8.onnx")
    ov = build_engine(fp32, precision="int8", backend="openvino", max_batch=8, calibration=settings,
                      output=tmp_path / "r18_int8.blob")
    assert ov.sidecar.precision == "int8" and ov.sidecar.calibration["target"] == "cpu"
    assert ov.sidecar.onnx_sha256 == ort.sidecar.onnx_sha256  # one Q/DQ graph, two engines
    x = photo_crops(16, 64, seed=11)
    with load(ort.path, threads=1) as a, load(ov.path, threads=1) as b, load(fp32, threads=1) as f:
        ref, got_ort, got_ov = f.infer(x), a.infer(x), b.infer(x)
    same_graph = compare_logits(got_ort, got_ov, Tolerance(max_abs_rel=None, min_top1_agreement=0.75,
                                                           min_cosine=0.99))
    assert same_graph, same_graph.summary()
    vs_fp32 = compare_logits(ref, got_ov, Tolerance(max_abs_rel=None, min_top1_agreement=0.0, min_cosine=0.9))
    assert vs_fp32, vs_fp32.summary()
    # onnxruntime's INT8 engine holds QLinearConv/QGemm: OpenVINO reads the Q/DQ ONNX only, and says which one
    with pytest.raises(RtresnetError, match="OpenVINO cannot compile .*QLinearConv.*build the OpenVINO engine from "
                                            "the ONNX it was made from") as err:
        build_engine(ort.path, backend="openvino", max_batch=8, output=tmp_path / "wrong.blob")
    assert "\n" not in str(err.value) and str(ov.onnx_path) in str(err.value)
    assert not (tmp_path / "wrong.blob").exists()


def test_without_openvino_the_build_says_what_to_install(onnx_model, tmp_path, monkeypatch):
    real = package_version
    monkeypatch.setattr("rtresnet.engine.openvino.package_version", lambda d: None if d == "openvino" else real(d))
    monkeypatch.setitem(__import__("sys").modules, "openvino", None)  # `import openvino` now fails
    with pytest.raises(RtresnetError, match=r"OpenVINO is not installed; pip install 'rtresnet\[openvino\]'"):
        build_engine(onnx_model, backend="openvino", max_batch=2, output=tmp_path / "e.blob")


def test_cli_build_predict_inspect_and_triton(blob, onnx_model, tmp_path):
    from PIL import Image

    out = tmp_path / "m.blob"
    result = invoke("build", onnx_model, "--backend", "openvino", "--max-batch", "2", "-o", out)
    assert result.exit_code == 0, result.output
    assert f"backend: OpenVINO {OV} (CPU, f32 inference precision); fp32; batch 1-2" in result.output
    image = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(image)
    result = invoke("predict", out, image, "--json", "-k", "1")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["predictions"][0]["index"] in range(10)
    result = invoke("inspect", out)
    assert result.exit_code == 0 and "OpenVINO compiled blob" in result.output, result.output
    assert_one_line_error(invoke("export-triton", out, "-r", tmp_path / "repo"), "compiled openvino blob",
                          "Triton cannot load")
    assert_one_line_error(invoke("build", onnx_model, "--backend", "onnxruntime", "--inference-precision", "bf16",
                                 "-o", tmp_path / "o.onnx"), "only applies to OpenVINO engines")
    assert_one_line_error(invoke("build", onnx_model, "--backend", "openvino", "-o", tmp_path / "o.onnx"),
                          "compiled blobs", "o.blob")
