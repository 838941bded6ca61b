"""Export stage: PyTorch -> one verified FP32 ONNX (BN folded, metadata, optional uint8 NHWC input)."""

from rtresnet.export.exporter import (
    DEFAULT_OPSET,
    ExportResult,
    check_input_size,
    ensure_onnx,
    export_onnx,
    make_preprocessing,
    parse_input_size,
)
from rtresnet.spec import read_labels  # shared with predict, which must not import torch

__all__ = ["DEFAULT_OPSET", "ExportResult", "check_input_size", "ensure_onnx", "export_onnx", "make_preprocessing",
           "parse_input_size", "read_labels"]
