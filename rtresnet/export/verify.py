"""Check an exported ONNX file against the PyTorch model it came from, on onnxruntime's CPU provider."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rtresnet.compare import FP32_TOLERANCE, Comparison, Tolerance, compare_logits
from rtresnet.preprocess import normalize, pixels_to_input, random_pixels
from rtresnet.spec import INPUT_NAME, OUTPUT_NAME, ModelInfo

log = logging.getLogger(__name__)


def verification_batches(batch: int | None, max_batch: int | None) -> tuple[int, ...]:
    """Batch sizes to verify: seeded batches of 1 and 2 images for a dynamic axis (so the axis is shown to be
    dynamic), two of the fixed size otherwise. Few images: the eager reference is the slow side."""
    if batch is not None:
        return (batch, batch)
    return (1, min(2, max_batch or 2), 1)


def verify_onnx(onnx_path: str | Path, reference: nn.Module, info: ModelInfo, batches: Sequence[int], *,
                seed: int = 0, tolerance: Tolerance = FP32_TOLERANCE) -> Comparison:
    """Run ``onnx_path`` in onnxruntime and ``reference`` (the unfused eager model, float NCHW) on the same
    seeded random frames, one batch per entry of ``batches``; compare all logits at once.

    The reference always gets the float pipeline's input (``normalize``), the ONNX graph gets whatever its
    input format says (``pixels_to_input``), so a uint8 graph is checked for its fused preprocessing too.
    """
    import onnxruntime as ort

    # PyTorch first, then onnxruntime: its idle worker threads spin and would steal the cores from PyTorch.
    frames = [random_pixels(info, n, seed + i) for i, n in enumerate(batches)]
    with torch.inference_mode():
        refs = [reference(torch.from_numpy(normalize(p, info.preprocessing))).numpy() for p in frames]
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    outs = [session.run([OUTPUT_NAME], {INPUT_NAME: pixels_to_input(p, info)})[0] for p in frames]
    comparison = compare_logits(np.concatenate(refs), np.concatenate(outs), tolerance, reference_name="PyTorch")
    log.debug("verification at batches %s: %s", list(batches), comparison.summary())
    return comparison
