"""The onnxruntime "engine": onnxruntime's graph-optimized model, saved once so loading skips the optimizer.

Saved at ORT_ENABLE_EXTENDED, not ORT_ENABLE_ALL. onnxruntime's graph-optimization docs ("Online/Offline
Mode") say an offline-optimized model must run with the options and hardware it was optimized for; what ties it
to one machine is the ENABLE_ALL layout pass (NCHWc), whose channel blocks follow the build CPU's vector width
(8 floats with AVX2, 16 with AVX-512). EXTENDED fusions (Conv+Add+Relu into FusedConv...) are CPU execution
provider kernels that run on any CPU of the architecture; sessions still apply the layout pass when they load it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rtresnet.engine.request import ORT_OPT_LEVEL, BuildRequest, Target, major_minor
from rtresnet.environment import cpu_info, package_version
from rtresnet.errors import RtresnetError

log = logging.getLogger(__name__)

PROVIDERS = ("CPUExecutionProvider",)
SUFFIXES = (".onnx",)  # the optimized model is ONNX (onnxruntime would write its ORT format under ".ort")


def target() -> Target:
    cpu = cpu_info()
    version = package_version("onnxruntime") or package_version("onnxruntime-gpu")
    return Target(backend="onnxruntime", onnxruntime_version=version, execution_providers=PROVIDERS,
                  cpu={"model": cpu["model"], "arch": cpu["arch"], "isa": list(cpu["isa"])})


def flags(request: BuildRequest) -> dict:
    return {"graph_optimization_level": ORT_OPT_LEVEL}


def name_parts(request: BuildRequest) -> tuple[list[str], str]:
    """File-name parts after model, precision and batches (``..._ort1.32_cpu.onnx``), and the suffix."""
    return [f"ort{major_minor(request.target.onnxruntime_version)}", "cpu"], ".onnx"


def describe(sidecar) -> str:
    return f"onnxruntime {sidecar.onnxruntime_version} ({', '.join(sidecar.execution_providers)})"


def build(request: BuildRequest, engine_path: Path) -> None:
    """Write the optimized model of ``request.onnx_path`` to ``engine_path`` (a temporary path)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_OPT_LEVEL)
    # The file name decides the format: anything but ".ort" is saved as ONNX, which trtexec-style tools can read.
    options.optimized_model_filepath = str(engine_path)
    options.log_severity_level = 3
    log.debug("optimizing %s with onnxruntime %s (%s)", request.onnx_path.name, ort.__version__, ORT_OPT_LEVEL)
    try:
        ort.InferenceSession(str(request.onnx_path), options, providers=list(PROVIDERS))
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RtresnetError(f"onnxruntime cannot load {request.onnx_path}: {msg}; re-export the model with "
                            f"`rtresnet export`") from None
    if not engine_path.is_file() or engine_path.stat().st_size == 0:
        raise RtresnetError(f"onnxruntime wrote no optimized model for {request.onnx_path}; check free disk space")
