"""Shared fixtures and the GPU/TensorRT skips. Expensive artifacts are session-scoped."""

from __future__ import annotations

import importlib.util
import os

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
        if "gpu" in item.keywords and not cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
        if "tensorrt" in item.keywords and not trt:
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
