"""Engine build: ONNX (FP32, FP16 or Q/DQ INT8) -> engine + sidecar.

``build_engine`` resolves the request (backend, precision stage, batch profile), returns a cached engine when
its sidecar matches, and otherwise builds: engine first (temp file + rename), sidecar last, so a killed build
never leaves a partial engine or a sidecar that claims one.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from rtresnet.backends import ENGINE_KINDS, backend_status, engine_builder
from rtresnet.engine.request import (
    ENGINE_DIR,
    PRECISIONS,
    BuildRequest,
    Target,
    check_dla,
    check_options,
    rebuild_command,
    resolve_batches,
)
from rtresnet.errors import RtresnetError, UsageError
from rtresnet.fileutil import atomic_path, check_output_path, sha256_file
from rtresnet.sidecar import Sidecar, read_sidecar, sidecar_path, write_sidecar
from rtresnet.spec import ModelInfo, TensorSpec, graph_io, read_model_info

if TYPE_CHECKING:
    from rtresnet.precision import CalibrationSettings, PrecisionResult

log = logging.getLogger(__name__)

GPU_INSTALL_HINT = "install them with `pip install 'rtresnet[gpu]'` and a CUDA build of torch"


@dataclass(frozen=True)
class EngineArtifact:
    path: Path
    sidecar: Sidecar
    cache_hit: bool
    build_seconds: float
    onnx_path: Path

    @property
    def sidecar_path(self) -> Path:
        return sidecar_path(self.path)


def resolve_backend(backend: str) -> Target:
    """The engine backend a build uses (``auto``: TensorRT where it and a GPU exist, else onnxruntime) and what its
    engine binds to on this machine."""
    if backend != "auto" and backend not in ENGINE_KINDS:
        raise UsageError(f"unknown backend {backend!r}; use one of auto, {', '.join(ENGINE_KINDS)}")
    trt = backend_status("tensorrt") if backend in ("auto", "tensorrt") else None
    if backend == "tensorrt" and not trt:
        raise RtresnetError(f"--backend tensorrt needs TensorRT and a CUDA GPU, but {trt.detail}; "
                            f"{GPU_INSTALL_HINT}, or build with --backend onnxruntime")
    if backend == "auto":
        if not trt:
            log.info("building an onnxruntime engine: %s (for TensorRT, %s)", trt.detail, GPU_INSTALL_HINT)
        backend = "tensorrt" if trt else "onnxruntime"
    return engine_builder(backend).target()


def _graph_io(onnx_path: Path) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    import onnx

    return graph_io(onnx.load(str(onnx_path), load_external_data=False).graph)


def _export_path(arch: str, weights: str | None, folder: Path) -> Path:
    tag = re.sub(r"[^A-Za-z0-9.-]+", "-", Path(weights).stem if weights else "")
    return folder / (f"{arch}_{tag}.onnx" if tag else f"{arch}.onnx")


def _apply_precision(onnx_path: Path, info: ModelInfo, precision: str, backend: str,
                     calibration: CalibrationSettings | None, verify: dict) -> PrecisionResult | None:
    """Run the precision stage when the graph is FP32 and another precision is asked for (None: build as is)."""
    if calibration is not None and precision != "int8":
        raise RtresnetError("calibration settings only apply with --int8")
    if info.precision != "fp32":
        if precision not in ("fp32", info.precision):
            raise RtresnetError(f"{onnx_path} is already {info.precision}; build it as is or pass the FP32 ONNX "
                                f"to make a {precision} engine")
        if calibration is not None:
            raise RtresnetError(f"{onnx_path} is already {info.precision}; calibration settings do not apply")
        log.info("%s is already %s: building it as is", onnx_path.name, info.precision)
        return None
    if precision == "fp32":
        return None
    if precision == "fp16":
        from rtresnet.precision import convert_fp16

        return convert_fp16(onnx_path, **verify)
    if calibration is None or calibration.calib_data is None:
        raise RtresnetError("--int8 needs calibration data: pass --calib-data DIR (an image folder, .npy, "
                            "'digits' or 'synthetic')")
    from rtresnet.precision import quantize_int8

    return quantize_int8(onnx_path, target=ENGINE_KINDS[backend].int8_target, **verify, **calibration.kwargs())


def _cached(output: Path, request: BuildRequest) -> Sidecar | None:
    if not output.exists():
        return None
    try:
        sidecar = read_sidecar(output)
    except RtresnetError as e:
        log.info("rebuilding %s: %s", output, e)
        return None
    if reasons := request.mismatches(sidecar):
        log.info("rebuilding %s: the existing engine differs (%s)", output, "; ".join(reasons))
        return None
    return sidecar


def build_engine(onnx_path: str | Path | None = None, *, arch: str | None = None, weights: str | None = None,
                 precision: str = "fp32", backend: str = "auto", min_batch: int | None = None,
                 opt_batch: int | None = None, max_batch: int | None = None, workspace_bytes: int = 4 << 30,
                 opt_level: int = 3, timing_cache: str | Path | None = None, dla_core: int | None = None,
                 gpu_fallback: bool = False, hardware_compat: str = "none", version_compat: bool = False,
                 tf32: bool = False, force: bool = False, output: str | Path | None = None,
                 min_cosine: float | None = None, min_agreement: float | None = None, accept_mismatch: bool = False,
                 calibration: CalibrationSettings | None = None) -> EngineArtifact:
    """Build (or reuse) an engine of an ONNX model, or of ``arch``/``weights`` exported first.

    ``precision`` "fp16"/"int8" runs the precision stage on an FP32 ONNX (INT8 calibrated as ``calibration``
    says); an ONNX that is already FP16/INT8 is built as is. Batch sizes default to 1-32 (optimized
    for the largest) or the ONNX's fixed batch. ``backend="auto"`` uses TensorRT where it and a GPU exist.
    ``tf32`` lets TensorRT run FP32 layers in TF32 on Ampere and newer (faster; ~1e-3 relative error).
    ``min_cosine``/``min_agreement``/``accept_mismatch`` judge the FP16/INT8 conversion (see ``quantize_int8``).
    """
    if precision not in PRECISIONS:
        raise RtresnetError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if (onnx_path is None) == (arch is None):
        raise RtresnetError("give either an ONNX model or --arch (with optional --weights), not both or neither")
    if weights is not None and arch is None:
        raise RtresnetError("--weights needs --arch; an ONNX model already contains its weights")
    target = resolve_backend(backend)
    timing_cache = Path(timing_cache) if timing_cache is not None else None
    check_options(target.backend, opt_level=opt_level, workspace_bytes=workspace_bytes, dla_core=dla_core,
                  gpu_fallback=gpu_fallback, hardware_compat=hardware_compat, version_compat=version_compat,
                  timing_cache=timing_cache, tf32=tf32)
    if output is not None:
        output = check_output_path(output)
        if onnx_path is not None and output.resolve() == Path(onnx_path).resolve():
            raise RtresnetError(f"--output {output} is the model being built; choose another engine file name")
    if arch is not None:
        export_path = _export_path(arch, weights, output.parent if output is not None else ENGINE_DIR)
        if output is not None and output.resolve() == export_path.resolve():  # checked before the export replaces it
            raise RtresnetError(f"--output {output} is where --arch exports the ONNX model; choose another engine "
                                f"file name")
        from rtresnet.export import ensure_onnx

        onnx_path = ensure_onnx(arch, export_path, weights=weights, force=force, max_batch=max_batch)
    source = Path(onnx_path)
    if source.is_dir():
        raise RtresnetError(f"{source} is a folder; give an ONNX model file (from `rtresnet export`)")
    info = read_model_info(source)
    # DLA runs FP16/INT8 only: check the precision the engine gets (an FP16/INT8 ONNX is built as is)
    check_dla(dla_core, precision=precision if info.precision == "fp32" else info.precision)
    onnx_path, onnx_sha256, calibrated = source, None, None  # calibrated: the sidecar's record of it
    verify = {"min_cosine": min_cosine, "min_agreement": min_agreement, "accept_mismatch": accept_mismatch}
    if (converted := _apply_precision(source, info, precision, target.backend, calibration,
                                      verify)) is not None:
        onnx_path, info, onnx_sha256 = converted.path, converted.info, converted.sha256  # hashed once, there
        if converted.precision == "int8":
            calibrated = {"method": converted.method, "cache_key": converted.cache_key, "target": converted.target}
    inputs, outputs = _graph_io(onnx_path)
    if not inputs or not inputs[0].shape:
        raise RtresnetError(f"{onnx_path} has no batched input; re-export it with `rtresnet export`")
    # The export's planned --max-batch is the default top of the profile.
    lo, opt, hi = resolve_batches(inputs[0].shape[0], min_batch, opt_batch,
                                  max_batch if max_batch is not None else info.max_batch)
    request = BuildRequest(onnx_path=onnx_path, onnx_sha256=onnx_sha256 or sha256_file(source), info=info,
                           inputs=inputs, outputs=outputs, precision=info.precision, target=target, min_batch=lo,
                           opt_batch=opt, max_batch=hi, workspace_bytes=workspace_bytes, opt_level=opt_level,
                           timing_cache=timing_cache, dla_core=dla_core, gpu_fallback=gpu_fallback,
                           hardware_compat=hardware_compat, version_compat=version_compat, tf32=tf32,
                           calibration=calibrated)
    if output is None:
        output = request.default_output(source.stem)
        output.parent.mkdir(parents=True, exist_ok=True)
    if output.resolve() in (source.resolve(), Path(onnx_path).resolve()):
        raise RtresnetError(f"--output {output} is the model being built; choose another engine file name")
    if target.backend == "tensorrt" and timing_cache is None:
        request = replace(request, timing_cache=output.parent / "timing.cache")  # shared by builds in the folder
    if not force and (cached := _cached(output, request)) is not None:
        log.info("engine cache hit: %s matches the request (use --force to rebuild)", output)
        return EngineArtifact(path=output, sidecar=cached, cache_hit=True, build_seconds=0.0, onnx_path=onnx_path)
    return _build(request, output)


def _build(request: BuildRequest, output: Path) -> EngineArtifact:
    start = time.perf_counter()
    with atomic_path(output) as tmp:
        engine_builder(request.backend).build(request, tmp)
        engine_sha256 = sha256_file(tmp)
        # The old sidecar goes just before the rename: a failed or killed build keeps the old pair intact, and
        # no sidecar ever describes the new engine before it is complete.
        sidecar_path(output).unlink(missing_ok=True)
    seconds = time.perf_counter() - start
    t = request.target
    from rtresnet import __version__

    sidecar = Sidecar(backend=t.backend, precision=request.precision, model=request.info, inputs=request.inputs,
                      outputs=request.outputs, profile=request.profile, onnx_sha256=request.onnx_sha256,
                      engine_sha256=engine_sha256, build_seconds=round(seconds, 3),
                      built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), flags=request.flags,
                      calibration=request.calibration, tensorrt_version=t.tensorrt_version,
                      cuda_version=t.cuda_version, gpu=t.gpu, onnxruntime_version=t.onnxruntime_version,
                      execution_providers=t.execution_providers, cpu=t.cpu, rtresnet_version=__version__,
                      extra={"onnx_path": str(request.onnx_path), "build_command": rebuild_command(request, output)})
    write_sidecar(output, sidecar)
    log.info("built %s in %.1f s", output, seconds)
    return EngineArtifact(path=output, sidecar=sidecar, cache_hit=False, build_seconds=seconds,
                          onnx_path=request.onnx_path)
