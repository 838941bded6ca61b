"""The backend vocabulary: one availability check (its answers: tests/test_doctor.py), and an engine backend added
by one entry, its builder and its runner, with nothing else edited."""

from __future__ import annotations

import numpy as np
import pytest

from rtresnet import backends
from rtresnet.backends import ENGINE_KINDS, EngineKind, backend_name


def test_names_of_runtimes_on_devices():
    assert backend_name("torch", "cpu") == "torch" and backend_name("torch", "cuda:1") == "torch-cuda"
    assert backend_name("onnxruntime", "cuda") == "onnxruntime-cuda"
    assert backend_name("onnxruntime", "tensorrt:0") == "onnxruntime-tensorrt"
    assert backend_name("tensorrt", "cuda") == "tensorrt"
    assert set(backends.ENGINE_BACKENDS) == set(ENGINE_KINDS) and backends.BUILD_BACKENDS[0] == "auto"


def test_a_new_engine_backend_builds_and_loads(tmp_path, monkeypatch):
    from rtresnet.engine import build_engine
    from rtresnet.export import export_onnx
    from rtresnet.runtime import load

    monkeypatch.setitem(ENGINE_KINDS, "copy", EngineKind("copy_backend", "copy_backend:CopyRunner", "cpu"))
    monkeypatch.chdir(tmp_path)  # the default output folder, engines/, is relative
    onnx_path = export_onnx("resnet18", tmp_path / "r18.onnx", num_classes=10, input_size=32).path
    art = build_engine(onnx_path, backend="copy", max_batch=2)
    assert art.path.name == "r18_fp32_b1-2_copy.onnx" and art.sidecar.backend == "copy"
    assert art.sidecar.flags == {"copied": True}
    with load(art.path, threads=1) as runner:
        assert runner.backend == "copy"
        assert runner.infer(np.zeros((2, 3, 32, 32), np.float32)).shape == (2, 10)


def test_unknown_backend_is_refused_with_the_choices():
    from rtresnet.engine import build_engine
    from rtresnet.errors import RtresnetError

    with pytest.raises(RtresnetError, match="unknown backend 'coreml'; use one of auto, tensorrt, onnxruntime, "
                                            "openvino"):
        build_engine("missing.onnx", backend="coreml")
