"""Accuracy of a backend on the bench inputs: agreement with the PyTorch FP32 logits and, with labels, top-k."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rtresnet.bench.results import AccuracyResult
from rtresnet.compare import compare_logits, count_nonfinite, topk_indices
from rtresnet.errors import RtresnetError


def to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    return x.detach().float().cpu().numpy()  # torch tensor (possibly FP16 or on a GPU)


def evaluate(infer: Callable[[Any], Any], inputs: np.ndarray, batch_size: int) -> np.ndarray:
    """Logits (N, classes) as float32 for ``inputs``, run in batches of ``batch_size``. Non-finite logits are an
    error: their argmax is an arbitrary class, so top-1 and agreement figures on them would be silently wrong."""
    if len(inputs) == 0:
        raise RtresnetError("no inputs to evaluate accuracy on; give a data set with at least one sample")
    # copies: data sets are read-only arrays, which torch.from_numpy warns about
    parts = [to_numpy(infer(inputs[i:i + batch_size].copy())) for i in range(0, len(inputs), batch_size)]
    logits = np.concatenate(parts).astype(np.float32, copy=False)
    if not np.isfinite(logits).all():
        inputs_bad = "" if inputs.dtype.kind != "f" or np.isfinite(inputs).all() else \
            f" (the inputs hold {count_nonfinite(inputs)}: fix the data)"
        raise RtresnetError(f"the logits hold {count_nonfinite(logits)}{inputs_bad}; no accuracy is computed on "
                            "them: the model overflows or has non-finite weights")
    return logits


def topk_accuracy_pct(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share (in %) of samples whose label is among the ``k`` highest logits (ties broken by index)."""
    if len(logits) != len(labels):
        raise ValueError(f"{len(logits)} logit rows but {len(labels)} labels")
    return float((topk_indices(logits, k) == labels[:, None]).any(axis=1).mean() * 100)


def accuracy_result(reference: np.ndarray, logits: np.ndarray, labels: np.ndarray | None) -> AccuracyResult:
    """Figures of ``logits`` against the ``reference`` (PyTorch FP32) logits on the same inputs."""
    c = compare_logits(reference, logits)
    figures: dict = {}
    if labels is not None:
        ref1, ref5 = topk_accuracy_pct(reference, labels, 1), topk_accuracy_pct(reference, labels, 5)
        top1, top5 = topk_accuracy_pct(logits, labels, 1), topk_accuracy_pct(logits, labels, 5)
        figures = {"top1_pct": top1, "top5_pct": top5, "top1_drop_pts": ref1 - top1, "top5_drop_pts": ref5 - top5}
    return AccuracyResult(samples=c.samples, top1_agreement_pct=c.top1_agreement * 100,
                          top5_agreement_pct=c.top5_agreement * 100, max_abs_diff=c.max_abs_error,
                          cosine_mean=c.cosine_mean, **figures)
