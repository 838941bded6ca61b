"""The fast calibration path against onnxruntime's calibrators as shipped, on a realistic ResNet-18 (BN statistics from
photo crops) calibrated on other photo crops: the same ranges, from fewer passes."""

from __future__ import annotations

import numpy as np
import pytest

from rtresnet.data.datasets import load_dataset
from rtresnet.precision.calibrate import calibrate, entropy_threshold
from rtresnet.spec import read_model_info


@pytest.fixture(scope="module")
def model_and_data(realistic_onnx):
    source, crops = realistic_onnx("resnet18", 64)
    return source, load_dataset(str(crops), read_model_info(source)), crops


def ranges(source, data, method, target, tmp_path, fast):
    out = calibrate(source, data, method, 99.99, target, 8, tmp_path, fast=fast)
    return {name: tuple(float(v) for v in np.asarray(r.range_value).ravel()) for name, r in out.data.items()}


@pytest.mark.parametrize("method, target, rel", [
    ("minmax", "cpu", 1e-5), ("entropy", "cpu", 1e-5), ("entropy", "tensorrt", 1e-5), ("percentile", "cpu", 1e-5),
], ids=["minmax", "entropy-cpu", "entropy-tensorrt", "percentile"])
def test_fast_ranges_equal_onnxruntime_stock(model_and_data, tmp_path, method, target, rel):
    """Only the calibration session's float rounding differs (optimized graph): ranges agree to 1e-5."""
    source, data, crops = model_and_data
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    stock = ranges(source, data, method, target, tmp_path / "a", fast=False)
    fast = ranges(source, data, method, target, tmp_path / "b", fast=True)
    assert stock.keys() == fast.keys() and len(stock) > 40
    worst = max(abs(f - s) / max(abs(s), 1e-6) for name in stock for f, s in zip(fast[name], stock[name],
                                                                                  strict=True))
    assert worst <= rel, worst


def test_entropy_threshold_is_onnxruntime_s_bit_for_bit():
    """The numpy KL search returns exactly onnxruntime's threshold, on histograms of the shapes calibration makes
    (skewed ReLU outputs with empty bins, grown beyond 2048 bins, odd sizes)."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    stock = HistogramCollector("entropy", False, 2048, 128, 99.99, "same")
    rng = np.random.default_rng(0)
    for size, data in ((2048, np.maximum(rng.standard_normal(50000), 0)), (2300, rng.laplace(size=30000)),
                       (2051, np.concatenate([rng.standard_normal(20000), [40.0]]))):
        hist, edges = np.histogram(data.astype(np.float32), size)
        histogram = (hist, edges.astype(np.float32), np.float32(data.min()), np.float32(data.max()))
        want = stock.get_entropy_threshold(histogram, 128)
        got = entropy_threshold(histogram, 128)
        assert [float(v) for v in got] == [float(v) for v in want]


def test_run_grouping_gives_the_per_sample_histograms():
    """Adding samples in runs (one np.histogram per run) leaves the same histograms as one update per sample,
    including the updates that widen them."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    from rtresnet.precision.calibrate import fast_collector

    rng = np.random.default_rng(1)
    batches = [rng.standard_normal((8, 4, 5, 5)).astype(np.float32) * (1 + 3 * (i == 2)) for i in range(4)]
    for method, symmetric in (("entropy", False), ("percentile", True)):
        kw = {"method": method, "symmetric": symmetric, "num_bins": 128, "num_quantized_bins": 16,
              "percentile": 99.9, "scenario": "same"}
        stock, fast = HistogramCollector(**kw), fast_collector(**kw)
        for b in batches:
            for i in range(len(b)):
                stock.collect({"t": [b[i:i + 1]]})
            fast.collect_samples("t", b)
        for want, got in zip(stock.histogram_dict["t"], fast.histogram_dict["t"], strict=True):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


@pytest.mark.parametrize("target", ["cpu", "tensorrt"])
def test_calibrating_only_the_needed_tensors_gives_the_same_int8_graph(model_and_data, tmp_path, target):
    """Ranges for the tensors quantization reads, and nothing else: the quantized graph is byte for byte the one
    made from every tensor's range (same session on both sides, so the ranges themselves are equal)."""
    import onnx

    from rtresnet.precision.calibrate import complete_ranges, needed_tensors
    from rtresnet.precision.int8 import QuantSettings, _pre_process, _quantize

    source, data, crops = model_and_data
    prepared = _pre_process(source, tmp_path / "prepared.onnx")
    model = onnx.load(str(prepared))
    settings = QuantSettings.for_target(target, model)
    for name in ("all", "needed", "q1", "q2"):
        (tmp_path / name).mkdir()
    needed = needed_tensors(model, lambda r: _quantize(prepared, settings, r, "minmax", [], tmp_path / "q1"), "minmax")
    every = calibrate(prepared, data, "minmax", 99.99, target, 8, tmp_path / "all", fast=False)
    only = calibrate(prepared, data, "minmax", 99.99, target, 8, tmp_path / "needed", fast=False, tensors=needed)
    assert set(only.data) == needed and len(needed) < 0.8 * len(every.data)
    a = _quantize(prepared, settings, every, "minmax", [], tmp_path / "q1")
    b = _quantize(prepared, settings, complete_ranges(model, only), "minmax", [], tmp_path / "q2")
    assert a.SerializeToString() == b.SerializeToString()


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_every_method_quantizes_through_the_needed_tensors(model_and_data, tmp_path, method):
    """quantize_int8 end to end with the histogram methods (quantize_static checks the ranges' method)."""
    from rtresnet.precision import quantize_int8

    source, data, crops = model_and_data
    result = quantize_int8(source, tmp_path / "q.onnx", calib_data=crops, method=method, calib_size=16,
                           cache_dir=tmp_path / "cache")
    assert result.comparison and result.quantized_nodes > 20
