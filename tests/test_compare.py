import numpy as np
import pytest

from rtresnet.compare import FP16_TOLERANCE, FP32_TOLERANCE, compare_logits


def test_identical_logits_pass_with_exact_figures():
    ref = np.array([[1.0, 3.0, 2.0], [0.5, -1.0, 4.0]])
    c = compare_logits(ref, ref.copy())
    assert c and c.max_abs_error == 0 and c.top1_agreement == 1.0 and c.cosine_min == pytest.approx(1.0)
    assert c.logit_scale == 4.0 and c.samples == 2


def test_abs_error_is_judged_relative_to_the_largest_logit():
    ref = np.array([[100.0, 0.0, 50.0]])
    assert compare_logits(ref, ref + [[0.09, 0, 0]])  # 9e-4 of 100: within 1e-3
    c = compare_logits(ref, ref + [[0.2, 0, 0]])
    assert not c and c.max_abs_rel == pytest.approx(2e-3)


def test_top1_flip_fails_fp32_and_counts_top5():
    ref = np.array([[1.0, 2.0, 0.0], [3.0, 0.0, 1.0]])
    out = np.array([[2.0, 1.0, 0.0], [3.0, 0.0, 1.0]])
    c = compare_logits(ref, out, FP32_TOLERANCE)
    assert c.top1_agreement == 0.5 and c.top5_agreement == 1.0 and not c


def test_fp16_tolerance_uses_cosine_and_agreement():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(64, 10))
    assert compare_logits(ref, ref + rng.normal(scale=1e-3, size=ref.shape), FP16_TOLERANCE)
    assert not compare_logits(ref, rng.normal(size=ref.shape), FP16_TOLERANCE)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        compare_logits(np.zeros((2, 3)), np.zeros((2, 4)))


def test_non_finite_or_saturated_outputs_always_fail():
    from rtresnet.compare import INT8_TOLERANCE, Tolerance

    ref = np.random.default_rng(1).normal(size=(8, 1000))
    bad = ref.copy()
    bad[0, :151] = -np.inf  # what FP16 bias overflow did to a ResNet-50's logits
    c = compare_logits(ref, bad, Tolerance(max_abs_rel=None, min_top1_agreement=0.0, min_cosine=None))
    assert not c and c.nonfinite == 151 and "151 non-finite outputs (NaN or inf logits)" in c.failures()
    assert np.isfinite(c.cosine_mean) and "151 non-finite" in c.summary()  # figures stay numbers, not NaN
    saturated = ref.copy()
    saturated[1, 3] = 65504.0
    c = compare_logits(ref, saturated, INT8_TOLERANCE)
    assert not c and c.saturated == 1 and c.nonfinite == 0


def test_a_non_finite_reference_is_an_error_not_a_pass():
    from rtresnet.errors import RtresnetError

    ref = np.ones((2, 3))
    ref[0, 0] = np.nan
    with pytest.raises(RtresnetError, match=r"the FP32 model logits hold 1 NaN and 0 infinite values in 1 of 2"):
        compare_logits(ref, ref, reference_name="FP32 model")


def test_failures_name_each_threshold():
    from rtresnet.compare import Tolerance

    ref = np.eye(4) * 5
    out = np.roll(ref, 1, axis=1)
    c = compare_logits(ref, out, Tolerance(max_abs_rel=None, min_top1_agreement=0.5, min_cosine=0.9))
    assert c.failures() == ["cosine 0.0000 < 0.9", "top-1 agreement 0.0% < 50%"]
