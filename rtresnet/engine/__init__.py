"""Engine stage: ONNX (FP32, FP16 or Q/DQ INT8) -> engine (TensorRT plan or onnxruntime-optimized model) + sidecar."""

from rtresnet.engine.build import EngineArtifact, build_engine, resolve_backend

__all__ = ["EngineArtifact", "build_engine", "resolve_backend"]
