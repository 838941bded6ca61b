"""Compare a candidate's logits with a reference's: one function, a truthy result that carries the figures."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtresnet.errors import RtresnetError

# Outputs at or beyond FP16's largest finite value are saturated: an overflow somewhere in the graph, not a logit.
SATURATION = 65504.0


@dataclass(frozen=True)
class Tolerance:
    """Pass criteria. ``max_abs_rel`` bounds the max abs error relative to the largest |reference logit|;
    ``min_cosine`` bounds the mean cosine similarity over samples. Non-finite or saturated outputs always fail.
    ``max_abs_logit`` bounds |candidate logit|: set to ``SATURATION`` for logits computed in FP16, which onnxruntime's
    CPU kernels compute in FP32 (so a value that is inf in an FP16 engine comes back finite there)."""

    max_abs_rel: float | None = 1e-3
    min_top1_agreement: float = 1.0
    min_cosine: float | None = None
    max_abs_logit: float | None = None


FP32_TOLERANCE = Tolerance(max_abs_rel=1e-3, min_top1_agreement=1.0)
FP16_TOLERANCE = Tolerance(max_abs_rel=None, min_top1_agreement=0.99, min_cosine=0.999)
# INT8 on realistic ResNets (BN statistics from real photos, ModelOpt's placement): cosine 0.95-0.99 and top-1
# agreement 70-95 % on calibration crops; a broken graph (quantized logits, FP16 bias overflow) gave 0.25-0.77.
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
    nonfinite: int = 0  # candidate values that are NaN or infinite
    saturated: int = 0  # finite candidate values at or beyond FP16's limit where the reference is within it (all
    # of them beyond tolerance.max_abs_logit when that is set)

    @property
    def max_abs_rel(self) -> float:
        return self.max_abs_error / max(self.logit_scale, 1e-12)

    @property
    def passed(self) -> bool:
        return not self.failures()

    def __bool__(self) -> bool:
        return self.passed

    def failures(self) -> list[str]:
        """What fails the tolerance, one phrase each (empty when it passes)."""
        t, out = self.tolerance, []
        if self.nonfinite:
            out.append(f"{self.nonfinite} non-finite outputs (NaN or inf logits)")
        if self.saturated:
            limit = t.max_abs_logit or SATURATION
            out.append(f"{self.saturated} logits at or beyond +-{limit:g} (FP16's limit: inf in an FP16 engine)")
        if t.max_abs_rel is not None and self.max_abs_rel > t.max_abs_rel:
            out.append(f"max abs error {self.max_abs_rel:.2e} of max |logit| > {t.max_abs_rel:g}")
        if t.min_cosine is not None and self.cosine_mean < t.min_cosine:
            out.append(f"cosine {self.cosine_mean:.4f} < {t.min_cosine:g}")
        if self.top1_agreement < t.min_top1_agreement:
            out.append(f"top-1 agreement {self.top1_agreement:.1%} < {t.min_top1_agreement:.0%}")
        return out

    def summary(self) -> str:
        bad = f"{self.nonfinite} non-finite and {self.saturated} saturated outputs, " \
            if self.nonfinite or self.saturated else ""
        # max_rel_error stays in the object and the JSON, not here: element-wise relative error of logits near
        # zero is huge and says nothing (1.72e+03 for an INT8 model that agrees on every sample)
        return (f"{bad}cosine {self.cosine_mean:.6f} (min {self.cosine_min:.6f}), top-1 agreement "
                f"{self.top1_agreement:.2%} over {self.samples} samples, max abs err {self.max_abs_error:.3g} "
                f"({self.max_abs_rel:.2e} of max |logit| {self.logit_scale:.3g})")


def topk_indices(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores per row, best first (ties broken by index)."""
    k = min(k, x.shape[1])
    return np.argsort(-x, axis=1, kind="stable")[:, :k]


def count_nonfinite(x: np.ndarray) -> str:
    """'3 NaN and 1 infinite values in 2 of 8 samples': what is wrong with a batch (N, ...), for messages."""
    x = np.asarray(x)
    bad = ~np.isfinite(x)
    nan = int(np.isnan(x).sum())
    rows = int(bad.reshape(len(x), -1).any(axis=1).sum()) if x.ndim else int(bad.any())
    return f"{nan} NaN and {int(bad.sum()) - nan} infinite values in {rows} of {len(x) if x.ndim else 1} samples"


def compare_logits(reference: np.ndarray, candidate: np.ndarray,
                   tolerance: Tolerance = FP32_TOLERANCE, *, reference_name: str = "reference") -> Comparison:
    """Figures of ``candidate`` against ``reference`` (both (N, classes)); top-5 agreement is the share of
    samples whose reference top-1 is in the candidate's top-5. A non-finite reference (``reference_name`` says
    whose logits those are) leaves nothing to compare with: ``RtresnetError``."""
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    out = np.asarray(candidate, dtype=np.float64).reshape(len(candidate), -1)
    if ref.shape != out.shape:
        raise ValueError(f"shape mismatch: reference {ref.shape} vs candidate {out.shape}")
    if not np.isfinite(ref).all():
        raise RtresnetError(f"the {reference_name} logits hold {count_nonfinite(ref)}, so there is nothing to "
                            "compare against; the model overflows float32 or has non-finite weights or inputs: fix "
                            "that first")
    finite = np.isfinite(out)
    magnitude = np.abs(np.where(finite, out, 0.0))
    if tolerance.max_abs_logit is not None:  # logits computed in FP16: no larger value is representable
        saturated = int((magnitude >= tolerance.max_abs_logit).sum())
    else:  # at FP16's limit where the reference is not (an FP32 model's own logits may legitimately be that large)
        saturated = int(((magnitude >= SATURATION) & (np.abs(ref) < SATURATION)).sum())
    nonfinite = int((~finite).sum())
    out = np.where(finite, out, 0.0)  # the figures below describe the finite part; the counts fail the check
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
        nonfinite=nonfinite,
        saturated=saturated,
    )
