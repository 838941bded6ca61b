"""`rtresnet doctor`: real facts about this machine, and each backend's status (simulated GPUs for the GPU paths)."""

from __future__ import annotations

import importlib.metadata
import json
import sys

import pytest
from click.testing import CliRunner

from rtresnet import backends as backends_mod
from rtresnet.backends import BACKENDS, backend_status
from rtresnet.cli import main
from rtresnet.doctor import diagnose

H100 = {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0", "memory_gib": 79.1, "cuda_version": "12.8",
        "driver": "570.86", "count": 1}


def test_report_on_this_machine():
    tensorrt_loaded = "tensorrt" in sys.modules
    report = diagnose()
    assert report.torch == importlib.metadata.version("torch")
    assert report.onnx == importlib.metadata.version("onnx")
    assert "CPUExecutionProvider" in report.ort_providers
    assert [b.name for b in report.backends] == list(BACKENDS)
    assert {"torch", "onnxruntime"} <= set(report.usable_backends)
    assert report.cpu.usable_cores >= 1 and isinstance(report.cpu.isa, tuple)
    for b in report.backends:
        assert b.detail and (b.usable or b.fix), b
    if report.gpu is None:
        assert not report.backend("torch-cuda").usable and not report.backend("tensorrt").usable
    assert ("tensorrt" in sys.modules) == tensorrt_loaded  # doctor never imports TensorRT itself


def test_cpu_only_build_says_how_to_get_gpu_backends(monkeypatch):
    monkeypatch.setattr("rtresnet.environment.gpu_info", lambda: None)
    monkeypatch.setattr("rtresnet.environment.tensorrt_version", lambda: None)
    monkeypatch.setattr(backends_mod, "_torch_versions", lambda: ("2.13.0+cpu", None))
    monkeypatch.setattr(backends_mod, "_ort_providers", lambda: ("CPUExecutionProvider",))
    monkeypatch.setattr("rtresnet.environment.package_version",
                        lambda d: {"onnxruntime": "1.32.0", "onnx": "1.19.0"}.get(d))
    report = diagnose()
    cuda, ort_cuda, trt = (report.backend(n) for n in ("torch-cuda", "onnxruntime-cuda", "tensorrt"))
    assert not cuda.usable and "CPU-only build" in cuda.detail and "--index-url" in cuda.fix
    assert not ort_cuda.usable and "pip uninstall -y onnxruntime" in ort_cuda.fix and "rtresnet[gpu]" in ort_cuda.fix
    assert not trt.usable and trt.fix == "pip install 'rtresnet[gpu]'"
    ov = report.backend("openvino")  # an optional extra: not installed here, and doctor says how to add it
    assert not ov.usable and "not installed" in ov.detail and ov.fix == "pip install 'rtresnet[openvino]'"
    assert report.warnings == ()


def test_gpu_machine_with_everything(monkeypatch):
    monkeypatch.setattr("rtresnet.environment.gpu_info", lambda: dict(H100))
    monkeypatch.setattr("rtresnet.environment.tensorrt_version", lambda: "10.13.0")
    monkeypatch.setattr(backends_mod, "_torch_versions", lambda: ("2.13.0+cu128", "12.8"))
    monkeypatch.setattr(backends_mod, "_ort_providers",
                        lambda: ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"))
    monkeypatch.setattr("rtresnet.environment.package_version",
                        lambda d: {"onnxruntime-gpu": "1.32.0", "openvino": "2026.4.1"}.get(d))
    monkeypatch.setattr(backends_mod, "_ort_session_error", lambda provider: None)
    report = diagnose()
    assert report.usable_backends == tuple(BACKENDS)
    assert report.openvino == "2026.4.1" and "OpenVINO 2026.4.1" in report.backend("openvino").detail
    assert report.gpu.compute_capability == "9.0" and "H100" in report.backend("tensorrt").detail
    assert report.onnxruntime_package == "onnxruntime-gpu"


def test_listed_provider_that_does_not_load_is_not_usable(monkeypatch):
    # onnxruntime lists GPU providers even when CUDA/cuDNN are missing; the CPU build here cannot run CUDA.
    monkeypatch.setattr("rtresnet.environment.gpu_info", lambda: dict(H100))
    monkeypatch.setattr(backends_mod, "_ort_providers", lambda: ("CUDAExecutionProvider", "CPUExecutionProvider"))
    monkeypatch.setattr("rtresnet.environment.package_version", lambda d: {"onnxruntime-gpu": "1.32.0"}.get(d))
    status = diagnose().backend("onnxruntime-cuda")
    assert not status.usable and "does not load" in status.detail


def test_both_onnxruntime_packages_warn(monkeypatch):
    monkeypatch.setattr("rtresnet.environment.package_version",
                        lambda d: {"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.32.0"}.get(d))
    report = diagnose()
    assert report.onnxruntime_package == "onnxruntime + onnxruntime-gpu"
    assert any("both installed" in w for w in report.warnings)


def test_doctor_command_table():
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 0, result.output  # missing GPU backends are reported, not errors
    for name in BACKENDS:
        assert name in result.output
    assert "usable" in result.output and "onnxruntime" in result.output


@pytest.mark.parametrize("gpu", [None, H100])
def test_doctor_command_json(monkeypatch, gpu):
    monkeypatch.setattr("rtresnet.environment.gpu_info", lambda: dict(gpu) if gpu else None)
    monkeypatch.setattr(backends_mod, "_ort_session_error", lambda provider: "libcudnn.so.9: not found")
    result = CliRunner().invoke(main, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [b["name"] for b in data["backends"]] == list(BACKENDS)
    assert data["python"] == ".".join(map(str, sys.version_info[:3]))
    assert data["gpu"] == gpu


def test_doctor_help_has_an_example():
    result = CliRunner().invoke(main, ["doctor", "--help"])
    assert result.exit_code == 0 and "rtresnet doctor --json" in result.output


def test_one_check_serves_every_stage(monkeypatch):
    """doctor's rows are backend_status, the check engine builds and bench use: same answer, same fix."""
    monkeypatch.setattr("rtresnet.environment.tensorrt_version", lambda: None)
    status = backend_status("tensorrt")
    assert not status and status.fix == "pip install 'rtresnet[gpu]'"
    assert diagnose().backend("tensorrt") == status
