"""What a conversion produced, and the figures that judge it: one result type for FP16 and INT8."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from rtresnet.compare import SATURATION, Comparison, Tolerance, compare_logits
from rtresnet.errors import RtresnetError
from rtresnet.spec import INPUT_NAME, ModelInfo

log = logging.getLogger(__name__)

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class PrecisionResult:
    path: Path
    sha256: str
    precision: str  # "fp16" | "int8"
    info: ModelInfo  # precision updated
    source_path: Path
    source_sha256: str
    size_bytes: int
    source_size_bytes: int
    quantized_nodes: int  # compute nodes fed by a DequantizeLinear (INT8); FP16: nodes computing in FP16
    target: str | None  # INT8: "tensorrt" | "cpu"
    method: str | None  # INT8 calibration method
    calibration_seconds: float | None  # time spent calibrating (0.0 on a cache hit)
    cache_key: str | None
    cache_hit: bool
    comparison: Comparison | None  # against the FP32 source on the verification batch
    calib_samples: int | None = None
    calib_source: str | None = None
    cache_path: Path | None = None
    calibration_table: Path | None = None  # TensorRT-style table (onnxruntime TensorRT EP format)
    seconds: float = 0.0

    def summary(self) -> str:
        parts = [f"{self.precision} model {self.path} ({self.size_bytes / 1e6:.2f} MB, "
                 f"{self.size_bytes / max(self.source_size_bytes, 1):.0%} of FP32)"]
        if self.precision == "int8":
            parts.append(f"target {self.target}, {self.quantized_nodes} quantized nodes, method {self.method}")
            cal = "cached" if self.cache_hit else f"{self.calibration_seconds:.1f} s"
            parts.append(f"calibration {cal} on {self.calib_samples} samples")
        if self.comparison is not None:
            parts.append(f"vs FP32: {accuracy(self.comparison)}")
        return "; ".join(parts)


def accuracy(comparison: Comparison) -> str:
    """The figures a user judges a conversion by, in one phrase: 'cosine 0.9970 (min 0.9922), top-1 agreement
    100.0% on 32 samples' (max abs/rel errors of single logits say little about a classifier: left out)."""
    bad = f"{comparison.nonfinite} non-finite and {comparison.saturated} saturated outputs, " \
        if comparison.nonfinite or comparison.saturated else ""
    return (f"{bad}cosine {comparison.cosine_mean:.4f} (min {comparison.cosine_min:.4f}), top-1 agreement "
            f"{comparison.top1_agreement:.1%} on {comparison.samples} samples")


def comparison_record(comparison: Comparison) -> dict:
    """``comparison``'s figures for the sidecar (its tolerance is the caller's, checked again on every reuse)."""
    return {k: v for k, v in asdict(comparison).items() if k != "tolerance"}


def recorded_comparison(record: dict, tolerance: Tolerance) -> Comparison | None:
    """The comparison a sidecar recorded, judged by ``tolerance`` (None: nothing or something unreadable recorded)."""
    try:
        return Comparison(**{k: record[k] for k in RECORD_FIELDS}, tolerance=tolerance)
    except (KeyError, TypeError):
        return None


RECORD_FIELDS = tuple(f.name for f in fields(Comparison) if f.name != "tolerance")


def session(path: str | Path, *, exact: bool = False):
    """A CPU onnxruntime session (every produced model must run there). ``exact``: no graph optimization, so
    each node computes what the graph says; onnxruntime's CPU fusions of an FP16-remainder Q/DQ graph (meant for
    TensorRT) can differ from it, e.g. a float bias of 300 re-quantized through FP16 inside a fused Conv."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if exact:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise RtresnetError(f"onnxruntime cannot load {Path(path).name} ({first}); if rtresnet wrote it, this is a "
                            f"bug: please report it with the model's `rtresnet export` command") from None


def run_logits(path: str | Path, inputs: np.ndarray, batch: int = 32, *, exact: bool = False) -> np.ndarray:
    """Logits of ``inputs`` from an ONNX model in onnxruntime CPU, in batches (``exact``: see ``session``)."""
    sess = session(path, exact=exact)
    out = [sess.run(None, {INPUT_NAME: inputs[i:i + batch]})[0] for i in range(0, len(inputs), batch)]
    return np.concatenate(out).astype(np.float32)


def top1_accuracy(path: str | Path, inputs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy (0..1) of an ONNX model on labeled inputs."""
    return float((run_logits(path, inputs).argmax(axis=1) == labels).mean())


def count_quantized_nodes(model) -> int:  # model: onnx.ModelProto
    """Compute nodes that take at least one input from a DequantizeLinear (they run in INT8 in an engine)."""
    dq_outputs = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return sum(1 for n in model.graph.node if n.op_type not in QDQ_OPS and any(i in dq_outputs for i in n.input))


def fp16_logits_tolerance(model, tolerance: Tolerance) -> Tolerance:
    """``tolerance`` bounding |logit| by FP16's limit when ``model``'s logits are computed in FP16 (the converter's
    float32 output is then a Cast of them). onnxruntime's CPU kernels compute FP16 ops in FP32, so a logit of 2e5
    comes back finite here and is inf in a TensorRT FP16 engine; --keep-fp32 on the last layer keeps it finite."""
    producer = {o: n for n in model.graph.node for o in n.output}
    node = producer.get(model.graph.output[0].name)
    if node is None or node.op_type != "Cast":
        return tolerance
    return replace(tolerance, max_abs_logit=SATURATION)


DIVERGENCE_SAMPLES = 4  # per-layer comparison on a failed check: a few samples keep ResNet-50's tensors small


def tolerance_for(base: Tolerance, min_cosine: float | None = None,
                  min_agreement: float | None = None) -> Tolerance:
    """``base`` with the user's thresholds (None keeps the default); values outside [0, 1] are refused."""
    for name, value in (("--min-cosine", min_cosine), ("--min-agreement", min_agreement)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise RtresnetError(f"{name} must lie in [0, 1], got {value}")
    return replace(base, min_cosine=base.min_cosine if min_cosine is None else min_cosine,
                   min_top1_agreement=base.min_top1_agreement if min_agreement is None else min_agreement)


def verify_conversion(source: Path, converted: Path, inputs: np.ndarray, tolerance: Tolerance, *, precision: str,
                      hint: str, accept_mismatch: bool = False, exact: bool = False) -> Comparison:
    """Compare ``converted`` with its FP32 ``source`` on ``inputs``; a failure raises (so the caller's atomic
    write leaves nothing behind) naming the layers that diverge most, unless ``accept_mismatch``. ``exact`` runs
    the converted graph unoptimized: for graphs that onnxruntime's CPU kernels do not consume (TensorRT's)."""
    from rtresnet.precision.divergence import layer_divergence

    comparison = compare_logits(run_logits(source, inputs), run_logits(converted, inputs, exact=exact), tolerance,
                                reference_name=f"FP32 model {source.name}")
    if comparison:
        return comparison
    worst = layer_divergence(source, converted, inputs[:DIVERGENCE_SAMPLES], top=3)
    layers = "; ".join(d.describe() for d in worst) or "none found"
    message = (f"{precision.upper()} model fails verification against FP32 on {comparison.samples} samples "
               f"({', '.join(comparison.failures())}); layers diverging most: {layers}; {hint}")
    if comparison.saturated:  # FP16 cannot hold these logits: no layer diverges on the CPU, the range is the fault
        fix = "--keep-fp32 Gemm" if precision == "fp16" else "--high-precision fp32"
        raise RtresnetError(f"{message}; the logits exceed FP16's range: compute the classifier in FP32 ({fix})")
    if comparison.nonfinite:  # garbage logits, not a mismatch to accept
        raise RtresnetError(f"{message}; --accept-mismatch does not write a model with NaN or inf logits")
    if accept_mismatch:
        log.warning("%s (written anyway: --accept-mismatch)", message)
        return comparison
    raise RtresnetError(f"{message}, or pass --accept-mismatch to write it anyway")
