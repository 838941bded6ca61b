"""rtresnet's TensorRT INT8 graph against NVIDIA ModelOpt's own, on the same realistic model and the same data.

ModelOpt (the ``dev`` extra, installed by ``make test``) is the reference for what TensorRT should be given: the
same activation tensors quantized, tensor by tensor; the same entropy scales; the same accuracy in onnxruntime.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from rtresnet.compare import compare_logits
from rtresnet.precision import quantize_int8
from rtresnet.precision.modelopt_ref import activation_scales, compare_placement, modelopt_quantize
from rtresnet.precision.report import run_logits

pytestmark = [pytest.mark.modelopt, pytest.mark.slow]
SIZE = 96  # placement does not depend on the image size; scales and cosines are compared at the same size


@pytest.fixture(scope="module")
def pair(realistic_onnx, tmp_path_factory):
    """arch -> (FP32 path, crops .npy, rtresnet's INT8 model path, ModelOpt's INT8 model path), entropy."""
    out, done = tmp_path_factory.mktemp("modelopt"), {}

    def get(arch: str):
        if arch not in done:
            source, crops = realistic_onnx(arch, SIZE)
            ours = quantize_int8(source, out / f"{arch}-rtresnet.onnx", calib_data=str(crops), method="entropy",
                                 target="tensorrt", cache_dir=out / "calib", accept_mismatch=True).path
            theirs = modelopt_quantize(source, crops, out / f"{arch}-modelopt.onnx", method="entropy")
            done[arch] = (source, crops, ours, theirs)
        return done[arch]
    return get


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_same_activation_tensors_as_modelopt(pair, arch):
    _, _, ours, theirs = pair(arch)
    diff = compare_placement(onnx.load(str(ours)), onnx.load(str(theirs)))
    assert not diff.only_ours and not diff.only_reference, diff.table()
    assert len(diff.ours) == {"resnet18": 23, "resnet50": 56}[arch], diff.table()


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_entropy_scales_match_modelopt(pair, arch):
    _, _, ours, theirs = pair(arch)
    a, b = activation_scales(onnx.load(str(ours))), activation_scales(onnx.load(str(theirs)))
    ratios = np.array([a[t] / b[t] for t in b])
    # both are stored in FP16 (relative rounding 2^-11); per-batch histogram merging was off by 1.07-5x
    assert np.abs(ratios - 1).max() < 2e-3, (ratios.min(), np.median(ratios), ratios.max())


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_cosine_to_fp32_within_0_01_of_modelopt(pair, arch):
    source, crops, ours, theirs = pair(arch)
    x = np.load(crops)
    ref = run_logits(source, x)
    ours_cmp, theirs_cmp = compare_logits(ref, run_logits(ours, x)), compare_logits(ref, run_logits(theirs, x))
    assert ours_cmp.nonfinite == 0 and ours_cmp.saturated == 0
    assert ours_cmp.cosine_mean >= theirs_cmp.cosine_mean - 0.01, (ours_cmp.summary(), theirs_cmp.summary())
