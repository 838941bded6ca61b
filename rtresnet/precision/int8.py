"""FP32 ONNX + calibration data -> INT8 Q/DQ ONNX, with onnxruntime.quantization's calibrators.

Two targets, because the fastest graph differs by consumer:
- ``tensorrt``: symmetric INT8 everywhere (TensorRT reads UINT8 Q/DQ as INT8), per-channel weights on axis 0,
  bias left float, Q/DQ only on the identity input of residual Adds, the float remainder in FP16 by default.
- ``cpu``: UINT8 asymmetric activations with INT8 per-channel weights, the layout onnxruntime's CPU kernels
  run fastest (ResNet-50 b1 on 2 cores: 9.2 ms vs 44.9 ms for symmetric S8S8 and 29.3 ms FP32).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from rtresnet.compare import INT8_TOLERANCE, count_nonfinite
from rtresnet.errors import RtresnetError
from rtresnet.fileutil import atomic_path, check_output_path, sha256_file
from rtresnet.precision import calib_cache, qdq_placement
from rtresnet.precision.calib_cache import quiet
from rtresnet.precision.calibrate import calibrate, complete_ranges, needed_tensors
from rtresnet.precision.fp16 import check_fp32_source, split_names
from rtresnet.precision.naming import converted_path
from rtresnet.precision.report import (
    PrecisionResult,
    count_quantized_nodes,
    fp16_logits_tolerance,
    tolerance_for,
    verify_conversion,
)
from rtresnet.spec import QUANT_META_PREFIX
from rtresnet.steps import step

log = logging.getLogger(__name__)

# Our method name -> onnxruntime CalibrationMethod member (onnxruntime has no MSE calibrator).
_CALIBRATION_METHODS = {"entropy": "Entropy", "minmax": "MinMax", "percentile": "Percentile"}
METHODS = tuple(_CALIBRATION_METHODS)
TARGETS = ("tensorrt", "cpu")
HIGH_PRECISIONS = ("fp16", "fp32")
MIN_RECOMMENDED_CALIB = 300  # NVIDIA's guidance: at least ~500 images, warn well below that
VERIFY_SAMPLES = 32


@dataclass(frozen=True)
class CalibrationSettings:
    """How INT8 ranges are calibrated: what ``build_engine`` and the CLI pass on to ``quantize_int8``."""

    calib_data: str | Path  # anything load_dataset takes: image folder, .txt list, .npy/.npz, "digits", "synthetic"
    method: str = "entropy"
    percentile: float = 99.99
    high_precision: str = "fp16"
    calib_size: int = 512
    calib_batch: int = 16
    seed: int = 0
    exclude: tuple[str, ...] = ()
    keep_io_layers_float: bool = False
    cache_dir: str | Path | None = None

    def kwargs(self) -> dict:
        """``quantize_int8``'s keyword arguments."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class QuantSettings:
    """onnxruntime quantize_static arguments for one target and model."""

    activation_type: str  # QuantType member name
    weight_type: str
    extra_options: dict
    nodes_to_quantize: tuple[str, ...] | None = None  # None: every node of a quantizable op type

    @classmethod
    def for_target(cls, target: str, model) -> QuantSettings:
        """``model``: the FP32 graph to quantize. The tensorrt settings are ModelOpt's (``configure_ort``)."""
        heads = qdq_placement.output_producers(model)
        if target == "tensorrt":
            every_op = sorted({n.op_type for n in model.graph.node})
            return cls("QInt8", "QInt8", {"ActivationSymmetric": True, "WeightSymmetric": True,
                                          "QuantizeBias": False, "OpTypesToExcludeOutputQuantization": every_op,
                                          "ForceQuantizeNoInputCheck": True, "DedicatedQDQPair": False},
                       tuple(qdq_placement.tensorrt_nodes(model)))
        # U8 activations everywhere onnxruntime's CPU kernels take them, but never on the logits.
        head_ops = sorted({n.op_type for n in model.graph.node if n.name in heads})
        return cls("QUInt8", "QInt8", {"ActivationSymmetric": False, "WeightSymmetric": True,
                                       "OpTypesToExcludeOutputQuantization": head_ops})


def quantize_int8(onnx_path: str | Path, output: str | Path | None = None, *, calib_data: str | Path,
                  method: str = "entropy", percentile: float = 99.99, target: str = "cpu",
                  high_precision: str = "fp16", calib_size: int = 512, calib_batch: int = 16, seed: int = 0,
                  exclude: Sequence[str] = (), keep_io_layers_float: bool = False,
                  cache_dir: str | Path | None = None, verify: bool = True, min_cosine: float | None = None,
                  min_agreement: float | None = None, accept_mismatch: bool = False) -> PrecisionResult:
    """Calibrate ``onnx_path`` on ``calib_data`` (anything ``load_dataset`` takes) and write a Q/DQ model.

    Ranges are cached (``calib_cache``); a rerun with the same model, method, target and data reuses them.
    ``high_precision`` applies to the tensorrt target only (the CPU target stays FP32 outside INT8 ops).
    The result is compared with FP32 on calibration samples (``INT8_TOLERANCE``, or ``min_cosine`` /
    ``min_agreement``); a failure raises ``RtresnetError`` naming the worst layers and writes nothing, unless
    ``accept_mismatch``.
    """
    import onnx

    start = time.perf_counter()
    _check_args(method, percentile, target, high_precision, calib_size, calib_batch)
    tolerance = tolerance_for(INT8_TOLERANCE, min_cosine, min_agreement)
    source = Path(onnx_path)
    info = check_fp32_source(source)
    percentile_used = percentile if method == "percentile" else None
    out_path = check_output_path(output if output is not None else converted_path(
        source, precision="int8", method=method, percentile=percentile_used, target=target))
    if out_path.resolve() == source.resolve():
        raise RtresnetError("the output would overwrite the FP32 source; give another --output")
    if exclude:
        split_names(onnx.load(str(source), load_external_data=False), exclude)  # bad names fail before calibrating
    with step("calibrate"):
        data = _load_calibration_data(calib_data, info, calib_size, seed, target)
    key = calib_cache.CalibrationKey(
        model_sha256=sha256_file(source), method=method, percentile=percentile_used,
        target=target, data_fingerprint=data.fingerprint, calib_batch=calib_batch, onnxruntime=_ort_version())
    cache_path = calib_cache.cache_file(key, cache_dir)

    with tempfile.TemporaryDirectory(prefix="rtresnet-quant-") as tmp_dir:
        tmp = Path(tmp_dir)
        with step("quantize"):
            prepared = _pre_process(source, tmp / "prepared.onnx")
            prepared_model = onnx.load(str(prepared))
        with step("calibrate"):
            cached = calib_cache.load_ranges(cache_path, key)
            if cached is not None:
                ranges, first_seconds = cached
                calib_seconds = 0.0
                log.debug("reusing calibration ranges from %s (key %s..., first calibrated in %.1f s)", cache_path,
                          key.digest[:12], first_seconds)
            else:
                t0 = time.perf_counter()
                settings = QuantSettings.for_target(target, prepared_model)
                tensors = needed_tensors(prepared_model, lambda r: _quantize(prepared, settings, r, method, [], tmp),
                                         method)
                ranges = calibrate(prepared, data, method, percentile, target, calib_batch, tmp, tensors=tensors)
                calib_seconds = time.perf_counter() - t0
                calib_cache.save_ranges(cache_path, key, ranges, calib_seconds)
                log.debug("calibrated %d tensors on %d samples in %.1f s (%s); ranges cached in %s",
                          len(ranges.data), len(data), calib_seconds, method, cache_path)
            table = calib_cache.write_trt_table(ranges, cache_path.with_suffix(".flatbuffers"))
        with step("quantize"):
            excluded = _excluded_nodes(prepared_model, exclude, keep_io_layers_float)
            model = _quantize(prepared, QuantSettings.for_target(target, prepared_model),
                              complete_ranges(prepared_model, ranges), method, excluded, tmp)
            if target == "tensorrt":
                moved = qdq_placement.keep_identity_qdq_only(model,
                                                             qdq_placement.residual_conv_inputs(prepared_model))
                log.debug("kept Q/DQ on the identity input only for %d residual Adds", moved)
                if high_precision == "fp16":
                    model = qdq_placement.to_fp16_remainder(model)
            qdq_placement.prune_opset_imports(model)
            qdq_placement.set_ir_version(model)
            if quantized := qdq_placement.quantized_outputs(model):
                raise RtresnetError(f"quantization put Q/DQ on the graph output {', '.join(quantized)}; this is a bug "
                                    "in rtresnet's placement, please report it (--exclude the last Gemm meanwhile)")

    new_info = info.with_precision("int8")
    _write_metadata(model, new_info, target=target, method=method,
                    high_precision=high_precision if target == "tensorrt" else None, percentile=percentile_used)
    comparison = None
    with atomic_path(out_path) as tmp_out:
        with step("quantize"):
            tmp_out.write_bytes(model.SerializeToString())
        if verify:
            with step("verify"):
                comparison = verify_conversion(source, tmp_out, data.inputs[:VERIFY_SAMPLES],
                                               fp16_logits_tolerance(model, tolerance),
                                               precision="int8", accept_mismatch=accept_mismatch,
                                               exact=target == "tensorrt",
                                               hint="keep those layers in float with --exclude NAME, calibrate on "
                                                    "more real images or try another --calib-method")
    result = PrecisionResult(
        path=out_path, sha256=sha256_file(out_path), precision="int8", info=new_info, source_path=source,
        source_sha256=key.model_sha256, size_bytes=out_path.stat().st_size, source_size_bytes=source.stat().st_size,
        quantized_nodes=count_quantized_nodes(model), target=target, method=method,
        calibration_seconds=calib_seconds, cache_key=key.digest, cache_hit=cached is not None,
        comparison=comparison, calib_samples=len(data), calib_source=data.source, cache_path=cache_path,
        calibration_table=table, seconds=time.perf_counter() - start)
    log.debug("%s", result.summary())
    return result


def _load_calibration_data(calib_data: str | Path, info, calib_size: int, seed: int, target: str):
    """``calib_size`` samples of ``calib_data`` (all of them when it holds fewer), and at most one warning when
    they are few: fewer than asked for, and for TensorRT, below NVIDIA's guidance."""
    from rtresnet.data.datasets import load_dataset
    from rtresnet.precision.calib_source import describe_calib_data

    described = describe_calib_data(calib_data)
    # Asking for no more than the source holds keeps load_dataset's own "asked for N" warning out: one warning here.
    size = min(calib_size, described.count) if described.count else calib_size
    data = load_dataset(calib_data, info, size=size, seed=seed, split="train")
    _check_finite_calibration(data.inputs, calib_data)
    few = len(data) < calib_size and described.count is not None
    low = target == "tensorrt" and len(data) < MIN_RECOMMENDED_CALIB
    if few or low:
        what = (f"all {len(data)} samples of {described.kind} {calib_data} (--calib-size {calib_size} asks for more)"
                if few else f"{len(data)} samples")
        advice = (f"; NVIDIA recommends at least 500 for TensorRT INT8 (ranges from fewer than "
                  f"{MIN_RECOMMENDED_CALIB} are less reliable)" if low else "")
        log.warning("calibrating on %s%s", what, advice)
    return data


def _check_finite_calibration(inputs, calib_data: str | Path) -> None:
    """Refuse NaN/inf samples before calibrating: onnxruntime's calibrators turn them into NaN ranges (or fail inside
    numpy), and a model quantized with those ranges outputs garbage."""
    import numpy as np

    if inputs.dtype.kind != "f" or np.isfinite(inputs).all():
        return  # uint8 frames are always finite
    raise RtresnetError(f"calibration data {calib_data} holds {count_nonfinite(inputs)}; refused before calibrating "
                        "(they would make the ranges NaN): drop or fix those samples, or the model's "
                        "preprocessing (mean/std) that made them")


def _check_args(method: str, percentile: float, target: str, high_precision: str, calib_size: int,
                calib_batch: int) -> None:
    if method not in METHODS:
        extra = " (onnxruntime has no MSE calibrator)" if method == "mse" else ""
        raise RtresnetError(f"unknown calibration method {method!r}{extra}; choose one of {', '.join(METHODS)}")
    if target not in TARGETS:
        raise RtresnetError(f"unknown INT8 target {target!r}; choose one of {', '.join(TARGETS)}")
    if high_precision not in HIGH_PRECISIONS:
        raise RtresnetError(f"high precision must be one of {', '.join(HIGH_PRECISIONS)}, got {high_precision!r}")
    if not 0 < percentile <= 100:
        raise RtresnetError(f"percentile must be in (0, 100], got {percentile}")
    if isinstance(calib_size, bool) or not isinstance(calib_size, int) or calib_size <= 0:
        raise RtresnetError(f"calibration size must be a positive number of samples, got {calib_size!r}; "
                            "use 512 (NVIDIA recommends at least 500)")
    if isinstance(calib_batch, bool) or not isinstance(calib_batch, int) or calib_batch <= 0:
        raise RtresnetError(f"calibration batch must be a positive integer, got {calib_batch!r}")


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _pre_process(source: Path, output: Path) -> Path:
    """onnxruntime's quant_pre_process: graph optimization and ONNX shape inference, so every tensor has a shape.

    Its symbolic shape inference is skipped: it exists for symbolic dims inside transformers; a ResNet's only
    symbolic dim is the batch, which ONNX shape inference carries (and it halves the pre-processing time).
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with quiet():
        quant_pre_process(str(source), str(output), skip_symbolic_shape=True)
    return output


def _excluded_nodes(model, exclude: Sequence[str], keep_io_layers_float: bool) -> list[str]:
    ops, names = split_names(model, exclude)
    nodes = set(names) | {n.name for n in model.graph.node if n.op_type in ops}
    if keep_io_layers_float:
        first_conv = next((n for n in model.graph.node if n.op_type == "Conv"), None)
        last_fc = next((n for n in reversed(model.graph.node) if n.op_type in ("Gemm", "MatMul")), None)
        nodes |= {n.name for n in (first_conv, last_fc) if n is not None}
    if any(not name for name in nodes):
        raise RtresnetError("cannot exclude unnamed nodes; re-export the model with `rtresnet export`")
    return sorted(nodes)


def _quantize(prepared: Path, settings: QuantSettings, ranges, method: str, excluded: list[str], tmp: Path):
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    ranges_file = tmp / "ranges.json"
    save_tensors_data(ranges, ranges_file)  # quantize_static takes precomputed ranges as its cache file
    out = tmp / "quantized.onnx"
    with quiet():
        quantize_static(str(prepared), str(out), None, quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=False, activation_type=QuantType[settings.activation_type],
                        weight_type=QuantType[settings.weight_type], nodes_to_exclude=excluded,
                        nodes_to_quantize=list(settings.nodes_to_quantize or []),
                        calibrate_method=CalibrationMethod[_CALIBRATION_METHODS[method]],
                        extra_options=dict(settings.extra_options),
                        calibration_cache_path=str(ranges_file))
    return onnx.load(str(out))


def _write_metadata(model, info, **settings) -> None:
    """``info`` as rtresnet metadata, plus the quantization settings (None values left out) under their prefix."""
    from onnx.helper import set_model_props

    from rtresnet.spec import write_model_info

    write_model_info(model, info)
    props = {p.key: p.value for p in model.metadata_props if not p.key.startswith(QUANT_META_PREFIX)}
    props.update((QUANT_META_PREFIX + k, str(v)) for k, v in sorted(settings.items()) if v is not None)
    set_model_props(model, props)
