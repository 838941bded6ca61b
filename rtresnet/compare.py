"""Compare a candidate's logits with a reference's: one function, a truthy result that carries the figures."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    """Pass criteria. ``max_abs_rel`` bounds the max abs error relative to the largest |reference logit|."""

    max_abs_rel: float | None = 1e-3
    min_top1_agreement: float = 1.0
    min_cosine: float | None = None


FP32_TOLERANCE = Tolerance(max_abs_rel=1e-3, min_top1_agreement=1.0)
FP16_TOLERANCE = Tolerance(max_abs_rel=None, min_top1_agreement=0.99, min_cosine=0.999)
INT8_TOLERANCE = Tolerance(max_abs_rel=None, min_top1_agreement=0.0, min_cosine=0.9)


@dataclass(frozen=True)
class Comparison:
    max_abs_error: float
    max_rel_error: float
    logit_scale: float  # largest |reference logit|
    cosine_mean: float
    cosine_min: float
    top1_agreement: float
    top5_agreement: float
    samples: int
    tolerance: Tolerance = FP32_TOLERANCE

    @property
    def max_abs_rel(self) -> float:
        return self.max_abs_error / max(self.logit_scale, 1e-12)

    @property
    def passed(self) -> bool:
        t = self.tolerance
        if t.max_abs_rel is not None and self.max_abs_rel > t.max_abs_rel:
            return False
        if t.min_cosine is not None and self.cosine_min < t.min_cosine:
            return False
        return self.top1_agreement >= t.min_top1_agreement

    def __bool__(self) -> bool:
        return self.passed

    def summary(self) -> str:
        return (f"max abs err {self.max_abs_error:.3g} ({self.max_abs_rel:.2e} of max |logit| {self.logit_scale:.3g}), "
                f"max rel err {self.max_rel_error:.3g}, cosine {self.cosine_mean:.6f} (min {self.cosine_min:.6f}), "
                f"top-1 agreement {self.top1_agreement:.2%} over {self.samples} samples")


def topk_indices(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores per row, best first (ties broken by index)."""
    k = min(k, x.shape[1])
    return np.argsort(-x, axis=1, kind="stable")[:, :k]


def compare_logits(reference: np.ndarray, candidate: np.ndarray,
                   tolerance: Tolerance = FP32_TOLERANCE) -> Comparison:
    """Figures of ``candidate`` against ``reference`` (both (N, classes)); top-5 agreement is the share of
    samples whose reference top-1 is in the candidate's top-5."""
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    out = np.asarray(candidate, dtype=np.float64).reshape(len(candidate), -1)
    if ref.shape != out.shape:
        raise ValueError(f"shape mismatch: reference {ref.shape} vs candidate {out.shape}")
    diff = np.abs(ref - out)
    denom = np.maximum(np.abs(ref), 1e-6)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    cos = np.where(norms > 0, (ref * out).sum(axis=1) / np.maximum(norms, 1e-30), 1.0)
    ref_top1 = ref.argmax(axis=1)
    return Comparison(
        max_abs_error=float(diff.max(initial=0.0)),
        max_rel_error=float((diff / denom).max(initial=0.0)),
        logit_scale=float(np.abs(ref).max(initial=0.0)),
        cosine_mean=float(cos.mean()) if len(cos) else 1.0,
        cosine_min=float(cos.min()) if len(cos) else 1.0,
        top1_agreement=float((out.argmax(axis=1) == ref_top1).mean()) if len(ref) else 1.0,
        top5_agreement=float((topk_indices(out, 5) == ref_top1[:, None]).any(axis=1).mean()) if len(ref) else 1.0,
        samples=len(ref),
        tolerance=tolerance,
    )
