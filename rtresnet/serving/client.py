"""Classify images on a running Triton served by rtresnet: the client reads the model's preprocessing from the
model config (``rtresnet.model_info``), preprocesses locally exactly as ``Runner.preprocess`` does, and asks for the
``topk_*`` outputs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rtresnet.errors import RtresnetError
from rtresnet.runtime.base import Prediction
from rtresnet.serving.loadtest import as_dict, client_module, connect, describe_error, parse_url
from rtresnet.serving.model_config import MODEL_INFO_PARAMETER
from rtresnet.spec import ModelInfo

TRITON_TYPES = {"float32": "FP32", "float16": "FP16", "uint8": "UINT8"}


def remote_model_info(url: str, model_name: str, timeout_s: float = 30.0) -> ModelInfo:
    """The ``ModelInfo`` (preprocessing, labels, arch, precision) of a model that ``rtresnet serve`` or
    ``export-triton`` published, from Triton's model configuration."""
    return _remote(url, model_name, timeout_s)[0]


def _remote(url: str, model_name: str, timeout_s: float) -> tuple[ModelInfo, str]:
    protocol, address = parse_url(url)
    module = client_module(protocol)
    client = connect(module, protocol, address, timeout_s)
    try:
        config = client.get_model_config(model_name)
    except Exception as e:  # InferenceServerException or a connection error
        raise RtresnetError(f"cannot read the config of model {model_name!r}: {describe_error(e)}") from None
    finally:
        client.close()
    config = as_dict(config.config if protocol == "grpc" else config, protocol)
    value = (config.get("parameters") or {}).get(MODEL_INFO_PARAMETER)
    if not value:
        raise RtresnetError(f"model {model_name!r} carries no {MODEL_INFO_PARAMETER} parameter; serve it with "
                            f"`rtresnet serve` or write it with `rtresnet export-triton`")
    return ModelInfo.from_dict(json.loads(value["string_value"])), config["input"][0]["name"]


def classify(url: str, model_name: str, images: Sequence[str | Path],
             timeout_s: float = 30.0) -> list[list[Prediction]]:
    """Top-k predictions per image from the served model's ``topk_*`` outputs, best first."""
    from rtresnet.preprocess import preprocess_images

    info, input_name = _remote(url, model_name, timeout_s)
    x = preprocess_images(list(images), info)
    if info.precision == "fp16" and x.dtype == np.float32:
        x = x.astype(np.float16)  # FP16 graphs take their input as FP16
    protocol, address = parse_url(url)
    module = client_module(protocol)
    client = connect(module, protocol, address, timeout_s)
    try:
        inp = module.InferInput(input_name, list(x.shape), TRITON_TYPES[x.dtype.name])
        inp.set_data_from_numpy(x)
        names = ("topk_labels", "topk_probabilities", "topk_indices")
        reply = client.infer(model_name, [inp], outputs=[module.InferRequestedOutput(n) for n in names])
    except Exception as e:
        raise RtresnetError(f"inference on {model_name!r} failed: {describe_error(e)}") from None
    finally:
        client.close()
    labels, probs, idx = (reply.as_numpy(n) for n in names)
    return [[Prediction(lab.decode(), int(i), float(p)) for lab, p, i in zip(row_l, row_p, row_i, strict=True)]
            for row_l, row_p, row_i in zip(labels, probs, idx, strict=True)]
