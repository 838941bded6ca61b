"""The load guard: TensorRT engines built by another TensorRT version or for another GPU are refused with the
command that rebuilds them, before TensorRT's own deserialization error. No TensorRT needed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from rtresnet.errors import RtresnetError
from rtresnet.fileutil import sha256_file
from rtresnet.runtime.guard import check_engine_loadable
from rtresnet.sidecar import Sidecar, write_sidecar
from rtresnet.spec import ModelInfo, Preprocessing, TensorSpec

COMMAND = "rtresnet build engines/r18.onnx --backend tensorrt --output engines/r18.engine --force"


@pytest.fixture()
def engine(tmp_path) -> tuple[Path, Sidecar]:
    path = tmp_path / "r18.engine"
    path.write_bytes(b"plan bytes as TensorRT wrote them")
    info = ModelInfo(arch="resnet18", num_classes=10, in_channels=3, input_size=(32, 32),
                     preprocessing=Preprocessing.default(3, (32, 32)))
    sidecar = Sidecar(backend="tensorrt", precision="fp16", model=info,
                      inputs=(TensorSpec("input", ("batch", 3, 32, 32), "float32"),),
                      outputs=(TensorSpec("logits", ("batch", 10), "float32"),),
                      profile={"min_batch": 1, "opt_batch": 8, "max_batch": 8}, onnx_sha256="0" * 64,
                      engine_sha256=sha256_file(path), build_seconds=1.0, built_at="2026-11-26T00:00:00+00:00",
                      flags={"version_compat": False, "hardware_compat": "none"}, tensorrt_version="10.16.1.11",
                      cuda_version="12.8", gpu={"name": "NVIDIA A100", "compute_capability": "8.0"},
                      extra={"build_command": COMMAND})
    write_sidecar(path, sidecar)
    return path, sidecar


def test_same_version_and_gpu_loads(engine):
    path, sidecar = engine
    assert check_engine_loadable(sidecar, path, trt_version="10.16.1.11", compute_capability="8.0") == sidecar
    # without a sidecar object, the guard reads (and hash-checks) the file beside the engine
    assert check_engine_loadable(None, path, trt_version="10.16.1.11", compute_capability="8.0") == sidecar


def test_other_tensorrt_version_is_refused_with_the_rebuild_command(engine):
    path, sidecar = engine
    with pytest.raises(RtresnetError) as e:
        check_engine_loadable(sidecar, path, trt_version="11.4.0.106", compute_capability="8.0")
    msg = str(e.value)
    assert "TensorRT 10.16.1.11" in msg and "TensorRT 11.4.0.106" in msg and f"`{COMMAND}`" in msg
    assert "--version-compat" in msg and "\n" not in msg


def test_other_gpu_is_refused(engine):
    path, sidecar = engine
    with pytest.raises(RtresnetError, match=r"compute capability 8\.0 \(NVIDIA A100.*this GPU is 9\.0") as e:
        check_engine_loadable(sidecar, path, trt_version="10.16.1.11", compute_capability="9.0")
    assert COMMAND in str(e.value)


def test_version_compatible_engine_runs_on_newer_tensorrt_only(engine):
    path, sidecar = engine
    vc = replace(sidecar, flags={**sidecar.flags, "version_compat": True})
    assert check_engine_loadable(vc, path, trt_version="11.4.0.106", compute_capability="8.0") == vc
    built_on_11 = replace(vc, tensorrt_version="11.4.0.106")
    with pytest.raises(RtresnetError, match="only newer runtimes"):
        check_engine_loadable(built_on_11, path, trt_version="10.16.1.11", compute_capability="8.0")


def test_hardware_compatible_engine_runs_on_ampere_and_newer(engine):
    path, sidecar = engine
    hc = replace(sidecar, flags={**sidecar.flags, "hardware_compat": "ampere+"})
    assert check_engine_loadable(hc, path, trt_version="10.16.1.11", compute_capability="9.0") == hc
    with pytest.raises(RtresnetError, match="this GPU is 7.5"):
        check_engine_loadable(hc, path, trt_version="10.16.1.11", compute_capability="7.5")
    same_cc = replace(sidecar, flags={**sidecar.flags, "hardware_compat": "same-cc"})
    with pytest.raises(RtresnetError, match="hardware compatibility: same-cc"):
        check_engine_loadable(same_cc, path, trt_version="10.16.1.11", compute_capability="8.6")


def test_modified_engine_is_refused(engine):
    path, sidecar = engine
    path.write_bytes(b"another plan")
    with pytest.raises(RtresnetError, match="sha256 differs.*" + COMMAND.split()[0]):
        check_engine_loadable(sidecar, path, trt_version="10.16.1.11", compute_capability="8.0")
    with pytest.raises(RtresnetError, match="sha256 differs"):
        check_engine_loadable(None, path, trt_version="10.16.1.11", compute_capability="8.0")


def test_onnxruntime_engine_and_missing_tensorrt(engine, monkeypatch):
    path, sidecar = engine
    with pytest.raises(RtresnetError, match="onnxruntime engine, not a TensorRT plan"):
        check_engine_loadable(replace(sidecar, backend="onnxruntime"), path, trt_version="10.16.1.11",
                              compute_capability="8.0")
    monkeypatch.setattr("rtresnet.environment.tensorrt_version", lambda: None)
    monkeypatch.setattr("rtresnet.environment.gpu_info", lambda index=0: None)
    with pytest.raises(RtresnetError, match=r"TensorRT is not installed; install it with `pip install 'rtresnet"):
        check_engine_loadable(sidecar, path)
    with pytest.raises(RtresnetError, match="no CUDA GPU 0 is visible"):
        check_engine_loadable(sidecar, path, trt_version="10.16.1.11")


def test_the_gpu_checked_is_the_one_the_engine_loads_on(engine, monkeypatch):
    """A machine with an A100 as GPU 0 and an H100 as GPU 1: an H100 engine loads on cuda:1 only."""
    path, sidecar = engine
    h100 = replace(sidecar, gpu={"name": "NVIDIA H100", "compute_capability": "9.0"})
    gpus = [{"name": "NVIDIA A100", "compute_capability": "8.0"}, {"name": "NVIDIA H100", "compute_capability": "9.0"}]
    monkeypatch.setattr("rtresnet.environment.gpu_info", lambda index=0: gpus[index] if index < len(gpus) else None)
    assert check_engine_loadable(h100, path, device_index=1, trt_version="10.16.1.11") == h100
    with pytest.raises(RtresnetError, match="built for compute capability 9.0 .* this GPU is 8.0"):
        check_engine_loadable(h100, path, device_index=0, trt_version="10.16.1.11")
    with pytest.raises(RtresnetError, match="no CUDA GPU 2 is visible"):
        check_engine_loadable(h100, path, device_index=2, trt_version="10.16.1.11")


def test_sidecar_without_a_build_command_still_says_how_to_rebuild(engine):
    path, sidecar = engine
    bare = replace(sidecar, extra={})
    with pytest.raises(RtresnetError, match=r"rtresnet build MODEL.onnx --backend tensorrt --output \S+ --force"):
        check_engine_loadable(bare, path, trt_version="10.15.1.29", compute_capability="8.0")
