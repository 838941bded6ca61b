"""Shared fixtures and the GPU/TensorRT skips. Expensive artifacts are session-scoped."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    cuda = _has_cuda()
    trt = cuda and importlib.util.find_spec("tensorrt") is not None
    for item in items:
        # markers, not keywords: a parametrize id such as "tensorrt" (an INT8 target) is a keyword too
        if item.get_closest_marker("gpu") and not cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
        if item.get_closest_marker("tensorrt") and not trt:
            item.add_marker(pytest.mark.skip(reason="needs TensorRT and a CUDA GPU"))


@pytest.fixture(scope="session", autouse=True)
def rtresnet_home(tmp_path_factory):
    """Keep caches (downloads, digits checkpoint, calibration) out of the user's home during tests."""
    home = os.environ.get("RTRESNET_TEST_HOME") or str(tmp_path_factory.mktemp("rtresnet_home"))
    os.environ["RTRESNET_HOME"] = home
    return home


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tiny test models gain nothing from threads; on a shared 2-core machine intra-op threads contend badly."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory):
    """A tiny FP32 ONNX (ResNet-18, 10 classes, 32x32, random weights) for tests of stages after export; nothing is
    written beside it."""
    from rtresnet.export import export_onnx

    folder = tmp_path_factory.mktemp("build_onnx")
    return Path(export_onnx("resnet18", folder / "r18.onnx", num_classes=10, input_size=32, verify=False).path)


@pytest.fixture(scope="session")
def realistic_onnx(tmp_path_factory):
    """(arch, input size) -> FP32 ONNX of ``rtresnet.realistic.realistic_resnet`` (BN statistics re-estimated on
    photo crops) and a .npy of 32 other photo crops to calibrate on; built once per session."""
    import numpy as np

    from rtresnet.export import export_onnx
    from rtresnet.realistic import photo_crops, save_realistic_checkpoint

    folder, built = tmp_path_factory.mktemp("realistic"), {}

    def get(arch: str, size: int):
        if (arch, size) not in built:
            ckpt = save_realistic_checkpoint(arch, folder / f"{arch}_{size}.safetensors", input_size=size)
            onnx_path = export_onnx(arch, folder / f"{arch}_{size}.onnx", weights=ckpt, input_size=size).path
            crops = folder / f"crops_{size}.npy"
            if not crops.exists():
                np.save(crops, photo_crops(32, size, seed=7))
            built[arch, size] = (onnx_path, crops)
        return built[arch, size]
    return get
