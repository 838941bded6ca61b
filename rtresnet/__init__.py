"""rtresnet: ResNet weights -> verified ONNX -> FP16/INT8 engines -> benchmarks against PyTorch.

The public API is loaded lazily so that ``import rtresnet`` stays fast and never needs TensorRT.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "list_models": "rtresnet.models",
    "create_model": "rtresnet.models",
    "count_macs": "rtresnet.models",
    "count_params": "rtresnet.models",
    "load_model": "rtresnet.models.factory",
    "imagenet_classes": "rtresnet.models.imagenet",
    "save_state_dict": "rtresnet.models.checkpoint",
    "export_onnx": "rtresnet.export",
    "convert_fp16": "rtresnet.precision",
    "quantize_int8": "rtresnet.precision",
    "CalibrationSettings": "rtresnet.precision",
    "build_engine": "rtresnet.engine",
    "load": "rtresnet.runtime",
    "compare_logits": "rtresnet.compare",
    "serve": "rtresnet.serving",
    "export_triton": "rtresnet.serving",
    "loadtest": "rtresnet.serving",
    "ModelInfo": "rtresnet.spec",
    "Preprocessing": "rtresnet.spec",
    "RtresnetError": "rtresnet.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rtresnet' has no attribute {name!r}")
