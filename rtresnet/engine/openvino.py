"""The OpenVINO engine: the ONNX (FP32, FP16 or INT8 Q/DQ) compiled for this CPU by OpenVINO's CPU plugin and saved
as its exported blob (``CompiledModel.export_model``), so loading skips compilation.

The blob is bound to the OpenVINO version and the CPU it was compiled on (its kernels follow the build CPU's ISA:
AVX2, AVX-512, VNNI, AMX): both are in the cache key and checked again when it is loaded
(``rtresnet.runtime.openvino_runner``). OpenVINO reads rtresnet's Q/DQ ONNX (the ``cpu`` target layout) and turns
it into INT8 kernels itself; it cannot read onnxruntime's optimized engine (QLinearConv), so it always compiles the
ONNX. Its default inference precision is bf16 on CPUs that have bf16 (AVX512_BF16, AMX): that changed ResNet-50 FP32
logits by up to 2.3, so engines use the f32 hint unless bf16 is asked for, and every build is checked against
onnxruntime on the same ONNX before it is kept.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np

from rtresnet.engine.request import BuildRequest, Target, major_minor
from rtresnet.environment import cpu_info, package_version
from rtresnet.errors import RtresnetError

log = logging.getLogger(__name__)

SUFFIXES = (".blob",)  # OpenVINO's name for an exported compiled model
DEVICE = "CPU"
INFERENCE_PRECISIONS = ("f32", "bf16")
CHECK_SAMPLES = 8


def _openvino():
    try:
        import openvino
    except ImportError:
        raise RtresnetError("OpenVINO is not installed; pip install 'rtresnet[openvino]' (or build with "
                            "--backend onnxruntime)") from None
    return openvino


def target() -> Target:
    cpu = cpu_info()
    version = package_version("openvino")
    if version is None:
        _openvino()  # the one install message
    return Target(backend="openvino", openvino_version=version,
                  cpu={"model": cpu["model"], "arch": cpu["arch"], "isa": list(cpu["isa"])})


def flags(request: BuildRequest) -> dict:
    return {"inference_precision": request.inference_precision}


def name_parts(request: BuildRequest) -> tuple[list[str], str]:
    """File-name parts after model, precision and batches (``..._ov2026.4_cpu.blob``), and the suffix."""
    hint = [] if request.inference_precision == "f32" else [request.inference_precision]
    return [f"ov{major_minor(request.target.openvino_version)}", "cpu", *hint], ".blob"


def describe(sidecar) -> str:
    hint = (sidecar.flags or {}).get("inference_precision", "f32")
    return f"OpenVINO {sidecar.openvino_version} ({DEVICE}, {hint} inference precision)"


def compile_config(inference_precision: str = "f32", threads: int | None = None) -> dict:
    """The CPU plugin properties rtresnet compiles and loads with: one stream (the runner calls synchronously, one
    batch at a time) using every thread, at the asked precision."""
    if inference_precision not in INFERENCE_PRECISIONS:
        raise RtresnetError(f"unknown inference precision {inference_precision!r}; use one of "
                            f"{', '.join(INFERENCE_PRECISIONS)}")
    config = {"INFERENCE_PRECISION_HINT": inference_precision, "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


def compile_onnx(onnx_path: Path, *, min_batch: int | None, max_batch: int | None,
                 inference_precision: str = "f32", threads: int | None = None):
    """OpenVINO's compiled model of an ONNX file, its batch axis bounded to ``min_batch..max_batch`` (None: as
    the file says). One error line when OpenVINO cannot read or compile it."""
    ov = _openvino()
    core = ov.Core()
    try:
        model = core.read_model(str(onnx_path))
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise RtresnetError(f"{onnx_path} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
                                f"rtresnet runs classifiers with one input and one output")
        shape = model.inputs[0].get_partial_shape()
        if min_batch is not None and max_batch is not None and shape.rank.is_static and shape[0].is_dynamic:
            dims = [ov.Dimension(min_batch, max_batch) if min_batch != max_batch else ov.Dimension(min_batch),
                    *(shape[i] for i in range(1, shape.rank.get_length()))]
            model.reshape({model.inputs[0]: ov.PartialShape(dims)})
        return core.compile_model(model, DEVICE, compile_config(inference_precision, threads))
    except RtresnetError:
        raise
    except Exception as e:  # OpenVINO raises RuntimeError/GeneralFailure with multi-line C++ traces
        raise RtresnetError(f"OpenVINO cannot compile {onnx_path}: {_reason(e)}; {_what_to_do(onnx_path)}") from None


def _reason(e: Exception) -> str:
    """The informative part of OpenVINO's multi-line error: its conversion summary, else the first line that is
    not a C++ source location."""
    text = str(e)
    if "Summary:" in text:
        lines = [line.strip("- ").strip() for line in text.split("Summary:", 1)[1].splitlines()]
        return "; ".join(line for line in lines if line)[:300]
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.startswith(("Check ", "Exception from"))]
    return (lines[0] if lines else type(e).__name__)[:300]


def _what_to_do(onnx_path: Path) -> str:
    from rtresnet.sidecar import read_sidecar, sidecar_path

    if sidecar_path(onnx_path).is_file():  # an onnxruntime engine: its fused QLinear*/com.microsoft ops
        try:
            source = read_sidecar(onnx_path, verify_hash=False).extra.get("onnx_path")
        except RtresnetError:
            source = None
        return (f"it is an onnxruntime engine, optimized for onnxruntime's own kernels: build the OpenVINO engine "
                f"from the ONNX it was made from ({source or 'the exported or quantized .onnx'})")
    return "re-export the model with `rtresnet export`, or build with --backend onnxruntime"


def build(request: BuildRequest, engine_path: Path) -> None:
    """Compile ``request.onnx_path`` for this CPU, check it against onnxruntime, write the blob to ``engine_path``
    (a temporary path)."""
    compiled = compile_onnx(request.onnx_path, min_batch=request.min_batch, max_batch=request.max_batch,
                            inference_precision=request.inference_precision)
    check = check_against_onnxruntime(compiled, request)
    log.debug("OpenVINO engine vs onnxruntime on the same ONNX: %s", check.summary())
    if not check and not request.verify.get("accept_mismatch"):
        raise RtresnetError(f"the OpenVINO engine does not match onnxruntime on {request.onnx_path.name} "
                            f"({', '.join(check.failures())}); nothing was written. "
                            + ("Build with --inference-precision f32" if request.inference_precision != "f32"
                               else "Report it with `rtresnet doctor` output, or build with --backend onnxruntime"))
    stream = io.BytesIO()
    compiled.export_model(stream)
    engine_path.write_bytes(stream.getvalue())
    if engine_path.stat().st_size == 0:
        raise RtresnetError(f"OpenVINO wrote no compiled model for {request.onnx_path}; check free disk space")


def check_tolerance(precision: str, inference_precision: str):
    """How close an OpenVINO engine must come to onnxruntime running the same ONNX. Both compute FP32 graphs in
    FP32; FP16 graphs run in FP32 here but in FP16 in onnxruntime, INT8 graphs through two INT8 kernel libraries
    (rounding of requantized activations differs); bf16 keeps 8 mantissa bits."""
    from rtresnet.compare import FP16_TOLERANCE, FP32_TOLERANCE, Tolerance

    if inference_precision == "bf16" or precision == "int8":
        return Tolerance(max_abs_rel=None, min_top1_agreement=0.75, min_cosine=0.99)
    return FP16_TOLERANCE if precision == "fp16" else FP32_TOLERANCE


def check_against_onnxruntime(compiled, request: BuildRequest):
    """The compiled model's logits vs onnxruntime's on the same ONNX, on ``CHECK_SAMPLES`` seeded random images."""
    from rtresnet.compare import compare_logits
    from rtresnet.data.datasets import random_inputs
    from rtresnet.precision.report import run_logits

    n = min(CHECK_SAMPLES, request.max_batch)
    x = random_inputs(request.info, n)
    if x.dtype != np.dtype(compiled.inputs[0].get_element_type().to_dtype()):
        x = x.astype(compiled.inputs[0].get_element_type().to_dtype())
    reference = run_logits(request.onnx_path, x, batch=n)
    got = run(compiled.create_infer_request(), x)
    return compare_logits(reference, got, check_tolerance(request.precision, request.inference_precision),
                          reference_name="onnxruntime")


def run(infer_request, x: np.ndarray) -> np.ndarray:
    """One synchronous inference; the output copied out of OpenVINO's buffer (reused by the next call)."""
    infer_request.infer({0: x}, share_inputs=True)
    return np.array(infer_request.get_output_tensor(0).data, copy=True)
