"""Run a model: one ``Runner`` contract over PyTorch, onnxruntime and TensorRT, and ``load`` to pick the runner.

    from rtresnet.runtime import load
    with load("engines/resnet50_int8-entropy_b1-32_trt10.16_sm90.engine") as runner:
        logits = runner.infer(batch)                # numpy in -> numpy out; torch tensor in -> tensor out
        print(runner.predict(["cat.jpg"], topk=5))  # [[Prediction(label, index, probability), ...]]
"""

from rtresnet.runtime.base import InputSpec, Prediction, Runner
from rtresnet.runtime.loader import BACKENDS, load, load_torch
from rtresnet.runtime.predict import ImageResult, predict_files

__all__ = ["BACKENDS", "ImageResult", "InputSpec", "Prediction", "Runner", "load", "load_torch", "predict_files"]
