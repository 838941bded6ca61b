"""INT8 calibration: activation ranges of an FP32 ONNX over calibration batches, with onnxruntime's calibrators, made
fast at the three places where ResNet-50 spent its time (2 cores, 512 images: minmax 55 s, entropy 196 s before):

- the calibration session: onnxruntime's calibrators run their augmented model with every graph optimization off
  (ORT_DISABLE_ALL); here it runs optimized (fusions keep every calibrated tensor: they are graph outputs), which
  changes activations only by float rounding;
- histogram collection: per sample, as ModelOpt does (onnxruntime's bin width is set by the first update, so
  per-batch updates gave entropy scales up to 5x ModelOpt's), but every run of samples that does not widen a
  tensor's histogram is added in one ``np.histogram`` call (the same counts, bit for bit, as one call per sample),
  and tensors are histogrammed on every core;
- only the tensors quantization reads are calibrated (``needed_tensors``);
- the entropy (KL) threshold search: onnxruntime's ``get_entropy_threshold`` sums numpy arrays with Python's
  ``sum`` bin by bin (about 1.5 s per tensor); ``entropy_threshold`` computes the same integers with numpy
  (cumulative sums, reshaped group sums) and calls onnxruntime's own smoothing and KL functions on them, so the
  thresholds are identical.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from rtresnet.precision.calib_cache import quiet

log = logging.getLogger(__name__)

# graph optimization of the calibration session: min/max reductions gain most from all fusions; the histogram
# methods export every tensor, where the NCHWc layout pass adds a reorder per output and EXTENDED is fastest
SESSION_LEVEL = {"minmax": "ORT_ENABLE_ALL", "entropy": "ORT_ENABLE_EXTENDED", "percentile": "ORT_ENABLE_EXTENDED"}
_ORT_METHODS = {"entropy": "Entropy", "minmax": "MinMax", "percentile": "Percentile"}


class _Batches:
    """A CalibrationDataReader over one batch (collect_data is called per batch to bound memory)."""

    def __init__(self, batch, name: str) -> None:
        self._items = [{name: batch}]

    def get_next(self):
        return self._items.pop() if self._items else None


def calibrate(model_path: Path, data, method: str, percentile: float, target: str, batch: int, tmp: Path,
              *, fast: bool = True, tensors: set[str] | None = None):
    """onnxruntime ``TensorsData`` (per-tensor ranges) of ``model_path`` over ``data``'s samples. ``tensors``: only
    these (the ones quantization reads, ``needed_tensors``); others are neither exported nor histogrammed.
    ``fast=False`` runs onnxruntime's calibrators as shipped (the reference the tests and benchmarks compare with)."""
    from onnxruntime.quantization import CalibrationMethod

    from rtresnet.progress import track
    from rtresnet.spec import INPUT_NAME

    options: dict = {"symmetric": target == "tensorrt"}
    if method == "percentile":
        options = {"symmetric": True, "percentile": percentile}  # clipped to [min, max]: ReLU outputs stay >= 0
    with quiet():
        calibrator = _create_calibrator(model_path, tmp / "augmented.onnx", CalibrationMethod[_ORT_METHODS[method]],
                                        options, tensors)
    try:
        if fast:
            calibrator.infer_session = _session(tmp / "augmented.onnx", SESSION_LEVEL[method],
                                                calibrator.execution_providers)
        n_batches = (len(data) + batch - 1) // batch
        for x in track(data.batches(batch), total=n_batches, description=f"calibrating ({method})"):
            with quiet():
                if method == "minmax":  # the range of a batch is the range of its samples: no difference
                    calibrator.collect_data(_Batches(x, INPUT_NAME))
                else:
                    collect_histograms(calibrator, x, INPUT_NAME, fast=fast)
        with quiet():
            return calibrator.compute_data()
    finally:
        del calibrator


def _create_calibrator(model_path: Path, augmented: Path, method, options: dict, tensors: set[str] | None):
    """onnxruntime's ``create_calibrator``, its augmented model limited to ``tensors`` when given (onnxruntime selects
    tensors by op type only: its selection is filtered while the calibrator is made)."""
    from onnxruntime.quantization import create_calibrator
    from onnxruntime.quantization.calibrate import CalibraterBase

    def make():
        return create_calibrator(model_path, None, augmented_model_path=str(augmented), calibrate_method=method,
                                 extra_options=options)

    if tensors is None:
        return make()
    select = CalibraterBase.select_tensors_to_calibrate

    def only_needed(self, model):
        found, value_infos = select(self, model)
        return found & tensors, value_infos

    CalibraterBase.select_tensors_to_calibrate = only_needed
    try:
        return make()
    finally:
        CalibraterBase.select_tensors_to_calibrate = select


def needed_tensors(model, quantize, method: str) -> set[str]:
    """The activations quantization reads a range for: ``quantize(ranges)`` (the real quantizer and settings) is run
    once with placeholder ranges for every tensor, and the inputs of its QuantizeLinear nodes are the answer (for a
    ResNet-50, 73 of the 123 tensors onnxruntime would calibrate: a Conv or Add output that only feeds a ReLU is
    quantized after the ReLU, which onnxruntime removes). Run without exclusions: excluding nodes only drops
    tensors, so the cached ranges serve every --exclude."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData

    names = {i.name for i in model.graph.input} | {o for n in model.graph.node for o in n.output if o}
    one = np.array(1.0, dtype=np.float32)
    # quantize_static refuses ranges recorded for another method than the one it is told
    placeholder = TensorsData(CalibrationMethod[_ORT_METHODS[method]],
                              {n: TensorData(lowest=-one, highest=one) for n in names})
    quantized = quantize(placeholder)
    return {n.input[0] for n in quantized.graph.node if n.op_type == "QuantizeLinear"} & names


def complete_ranges(model, ranges):
    """``ranges`` with the entries onnxruntime's quantizer overwrites anyway: the input of a ReLU (or Clip) that only
    feeds it takes the ReLU output's range (``adjust_tensor_ranges``), but only when the input has an entry. Those
    inputs are not calibrated (``needed_tensors``); here they get the value onnxruntime would give them."""
    from onnxruntime.quantization.calibrate import TensorsData

    consumers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    data = dict(ranges.data)
    for node in model.graph.node:
        if node.op_type in ("Relu", "Clip") and consumers.get(node.input[0]) == 1 and node.output[0] in data:
            data.setdefault(node.input[0], data[node.output[0]])
    return TensorsData(ranges.calibration_method, data)


def _session(path: Path, level: str, providers):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=providers)


def collect_histograms(calibrator, batch, input_name: str, *, fast: bool = True) -> None:
    """Run a batch, then add each sample's activations to the histograms in sample order, as ModelOpt does (its
    reader feeds one sample per step): onnxruntime's histograms keep the bin width of their first update and grow by
    whole bins, so updating per batch instead gave entropy scales up to 5x (median 2x) ModelOpt's on ResNet-50;
    per sample they match it to FP16 rounding."""
    names = [o.name for o in calibrator.infer_session.get_outputs()]
    outputs = calibrator.infer_session.run(None, {input_name: batch})
    wanted = [(name, out) for name, out in zip(names, outputs, strict=True) if name in calibrator.tensors_to_calibrate]
    if calibrator.collector is None:
        calibrator.collector = (fast_collector if fast else _stock_collector())(
            method=calibrator.method, symmetric=calibrator.symmetric, num_bins=calibrator.num_bins,
            num_quantized_bins=calibrator.num_quantized_bins, percentile=calibrator.percentile,
            scenario=calibrator.scenario)
    collector = calibrator.collector
    if hasattr(collector, "collect_samples"):
        # numpy's histogram runs on one core while the other cores idle: tensors are independent (each one's own
        # sample order is kept), so they are spread over a thread per core (numpy's loops release the GIL)
        from concurrent.futures import ThreadPoolExecutor

        from rtresnet.environment import cpu_info

        with ThreadPoolExecutor(max(1, cpu_info()["usable_cores"])) as pool:
            list(pool.map(lambda item: collector.collect_samples(*item), wanted))
    else:
        for i in range(len(batch)):
            collector.collect({name: [out[i:i + 1]] for name, out in wanted})


def _stock_collector():
    from onnxruntime.quantization.calibrate import HistogramCollector

    return HistogramCollector


def _fast_collector_class():
    from onnxruntime.quantization.calibrate import HistogramCollector

    class Fast(HistogramCollector):
        """FastHistogramCollector: onnxruntime's HistogramCollector with per-sample semantics over a whole batch, and a
        numpy KL search."""

        def collect_samples(self, name: str, out: np.ndarray) -> None:
            """Add the samples of ``out`` (N, ...) to ``name``'s histogram as N per-sample updates would."""
            absolute = self.method == "percentile" and self.symmetric
            flat = out.reshape(len(out), -1)
            lows, highs = np.nanmin(flat, axis=1), np.nanmax(flat, axis=1)
            reach = np.maximum(np.abs(lows), np.abs(highs))  # per sample: what may widen the histogram
            i, n = 0, len(flat)
            while i < n:
                if name not in self.histogram_dict or reach[i] > self._limit(name, absolute):
                    self.collect({name: [out[i:i + 1]]})  # onnxruntime's own update: the first, or one that widens
                    i += 1
                    continue
                limit, j = self._limit(name, absolute), i
                while j < n and reach[j] <= limit:
                    j += 1
                self._add_run(name, flat[i:j], lows[i:j].min(), highs[i:j].max(), absolute)
                i = j

        def _limit(self, name: str, absolute: bool) -> float:
            """The largest magnitude the histogram holds without growing (onnxruntime's growth conditions)."""
            entry = self.histogram_dict[name]
            return entry[1][-1] if absolute else entry[4]

        def _add_run(self, name: str, rows: np.ndarray, low, high, absolute: bool) -> None:
            entry = self.histogram_dict[name]
            if absolute:
                hist, edges, old_min, old_max = entry
                add, _ = np.histogram(np.abs(rows), bins=edges)
                self.histogram_dict[name] = (hist + add, edges, min(old_min, low), max(old_max, high))
            else:
                hist, edges, old_min, old_max, threshold = entry
                add, _ = np.histogram(rows, len(hist), range=(-threshold, threshold))
                self.histogram_dict[name] = (add + hist, edges, min(old_min, low), max(old_max, high), threshold)

        def get_entropy_threshold(self, histogram, num_quantized_bins):
            return entropy_threshold(histogram, num_quantized_bins)

    return Fast


_FAST: list = []


def fast_collector(**kwargs):
    """A ``FastHistogramCollector`` (its class is made on first use: importing onnxruntime.quantization costs ~1 s)."""
    if not _FAST:
        _FAST.append(_fast_collector_class())
    return _FAST[0](**kwargs)


def entropy_threshold(histogram, num_quantized_bins: int):
    """onnxruntime's ``HistogramCollector.get_entropy_threshold`` with the same integers computed by numpy: the
    reference distribution p (outliers folded into its end bins), its merge into ``num_quantized_bins`` bins and the
    expansion q (integer division truncated, as onnxruntime's int64 array assignment does), then onnxruntime's own
    ``smooth_distribution`` and ``entropy`` on them."""
    from onnxruntime.quantization.calibrate import entropy, smooth_distribution

    hist, edges = histogram[0], histogram[1]
    num_bins = hist.size
    zero_bin_index = num_bins // 2
    half = num_quantized_bins // 2
    dtype = edges.dtype
    cumulative = np.concatenate([[0], np.cumsum(hist, dtype=np.int64)])
    total = cumulative[-1]
    kl = np.zeros(zero_bin_index - half + 1)
    thresholds = []
    for i in range(half, zero_bin_index + 1):
        start, end = zero_bin_index - i, min(zero_bin_index + i + 1, num_bins)
        thresholds.append((edges[start], edges[end]))
        sliced = hist[start:end]
        p = sliced.copy()
        p[0] += cumulative[start]
        p[-1] += total - cumulative[end]
        merged = sliced.size // num_quantized_bins
        body = num_quantized_bins * merged
        quantized = sliced[:body].reshape(num_quantized_bins, merged).sum(axis=1)
        quantized[-1] += sliced[body:].sum()
        norm = (p[:body] != 0).reshape(num_quantized_bins, merged).sum(axis=1)
        values = np.zeros(num_quantized_bins, dtype=np.int64)
        nonzero = norm != 0
        values[nonzero] = quantized[nonzero] / norm[nonzero]  # float64 -> int64: truncated, as onnxruntime's
        q = np.zeros(p.size, dtype=np.int64)
        q[:body] = np.repeat(values, merged)
        p, q = smooth_distribution(p), smooth_distribution(q)
        kl[i - half] = np.inf if p is None or q is None else np.array(entropy(p, q), dtype=dtype)
    best = thresholds[int(np.argmin(kl))]
    low, high = histogram[2], histogram[3]
    if best[0] < low:
        best = (low, best[1])
    if best[1] > high:
        best = (best[0], high)
    return best
