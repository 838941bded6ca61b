"""Precision in the graph: FP16 conversion and INT8 post-training quantization (Q/DQ) of FP32 ONNX models."""

from rtresnet.precision.fp16 import convert_fp16
from rtresnet.precision.int8 import METHODS, TARGETS, CalibrationSettings, quantize_int8
from rtresnet.precision.report import PrecisionResult

__all__ = ["METHODS", "CalibrationSettings", "PrecisionResult", "TARGETS", "convert_fp16", "quantize_int8"]
