"""Engine build: ONNX (FP32, FP16 or Q/DQ INT8) -> engine + sidecar.

``build_engine`` resolves the request (backend, precision stage, calibration data, batch profile), returns a
cached engine when its sidecar matches (before converting anything), and otherwise converts (FP16/INT8 ONNX beside
the engine), then builds: engine first (temp file + rename), sidecar last, so a killed build never leaves a
partial engine or a sidecar that claims one.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from rtresnet import environment
from rtresnet.backends import CPU_ENGINE_BACKENDS, ENGINE_KINDS, backend_status, engine_builder, engine_runner
from rtresnet.engine import select
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
from rtresnet.steps import step

if TYPE_CHECKING:
    from rtresnet.compare import Tolerance
    from rtresnet.precision import CalibrationSettings, PrecisionResult

log = logging.getLogger(__name__)

GPU_INSTALL_HINT = "install them with `pip install 'rtresnet[gpu]'` and a CUDA build of torch"


@dataclass(frozen=True)
class EngineArtifact:
    path: Path
    sidecar: Sidecar
    cache_hit: bool
    build_seconds: float  # the engine builder's own time (0.0 on a cache hit); steps.py times the whole command
    onnx_path: Path  # the ONNX the engine was built from (the converted one for --fp16/--int8)
    intermediates: tuple[Path, ...] = ()  # files written beside the engine on the way (the FP16/INT8 ONNX)

    @property
    def sidecar_path(self) -> Path:
        return sidecar_path(self.path)


DEVICES = {"cpu": CPU_ENGINE_BACKENDS, "cuda": ("tensorrt",)}  # --device: the engine backends that run there


def resolve_backend(backend: str, device: str | None = None) -> Target:
    """The engine backend a build uses and what its engine binds to on this machine: ``auto`` is TensorRT where it
    and a GPU exist, else the CPU backends measured against each other (``measured_backends``; the target returned
    is then the first of them, onnxruntime). ``device`` "cpu"/"cuda" keeps the choice to that device's backends."""
    if backend != "auto" and backend not in ENGINE_KINDS:
        raise UsageError(f"unknown backend {backend!r}; use one of auto, {', '.join(ENGINE_KINDS)}")
    asked = f"--backend {backend}"
    if device is not None:
        if device not in DEVICES:
            raise UsageError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")
        if backend not in ("auto", *DEVICES[device]):
            raise UsageError(f"--device {device} builds {' or '.join(DEVICES[device])} engines but --backend "
                             f"{backend} was asked for; give one of them")
        if device == "cpu" and backend == "auto":
            return engine_builder("onnxruntime").target()
        backend, asked = (DEVICES[device][0] if backend == "auto" else backend), f"--device {device}"
    if backend == "auto" and environment.tensorrt_version() is None:
        # Without the package, TensorRT is out whatever the GPU: skip the full check (it imports torch, seconds
        # that a cache hit would otherwise spend). Normal on a CPU machine: said only when asked for (-v).
        log.debug("building a CPU engine: TensorRT is not installed (for TensorRT, %s)", GPU_INSTALL_HINT)
        return engine_builder("onnxruntime").target()
    trt = backend_status("tensorrt") if backend in ("auto", "tensorrt") else None
    if backend == "tensorrt" and not trt:
        raise RtresnetError(f"{asked} needs TensorRT and a CUDA GPU, but {trt.detail}; "
                            f"{GPU_INSTALL_HINT}, or build with --backend onnxruntime")
    if backend == "auto":
        if not trt:  # the normal case on a CPU machine: said only when asked for (-v)
            log.debug("building a CPU engine: %s (for TensorRT, %s)", trt.detail, GPU_INSTALL_HINT)
        backend = "tensorrt" if trt else "onnxruntime"
    return engine_builder(backend).target()


def measured_backends(backend: str, target: Target, output: Path | None) -> tuple[str, ...] | None:
    """``--backend auto`` that resolved to the CPU: the CPU engine backends installed here, whose engines are built
    and timed against each other (None: build ``target`` as is). An ``--output`` suffix keeps those that write
    it (``x.onnx``: onnxruntime; ``x.blob``: OpenVINO)."""
    if backend != "auto" or target.backend not in CPU_ENGINE_BACKENDS:
        return None
    found = select.cpu_backends()
    if output is not None:
        found = tuple(b for b in found if output.suffix.lower() in getattr(engine_builder(b), "SUFFIXES", ()))
    return found or None


def check_engine_suffix(output: Path, backend: str) -> None:
    """Refuse an engine file name that says another format (``-o x.engine`` for an onnxruntime engine, which is
    ONNX): tools and `rtresnet.runtime.load` pick the loader by suffix."""
    suffixes = getattr(engine_builder(backend), "SUFFIXES", None)
    if suffixes and output.suffix.lower() not in suffixes:
        what = {".onnx": "ONNX models", ".blob": "compiled blobs"}.get(suffixes[0], f"{backend} plans")
        raise RtresnetError(f"--output {output}: {backend} engines are {what}; name the file "
                            f"{output.with_suffix(suffixes[0]).name}")


def _graph_io(onnx_path: Path) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    import onnx

    return graph_io(onnx.load(str(onnx_path), load_external_data=False).graph)


def _export_path(arch: str, weights: str | None, folder: Path) -> Path:
    tag = re.sub(r"[^A-Za-z0-9.-]+", "-", Path(weights).stem if weights else "")
    return folder / (f"{arch}_{tag}.onnx" if tag else f"{arch}.onnx")


def _conversion(onnx_path: Path, info: ModelInfo, precision: str, int8_target: str,
                calibration: CalibrationSettings | None) -> tuple[dict | None, dict | None]:
    """What the precision stage will do, before it runs: (conversion, calibration record), both None when the graph
    is built as is. The records are the cache key's conversion part; refuses combinations that cannot work."""
    if calibration is not None and precision != "int8":
        raise RtresnetError("calibration settings only apply with --int8")
    if info.precision != "fp32":
        if precision not in ("fp32", info.precision):
            raise RtresnetError(f"{onnx_path} is already {info.precision}; build it as is or pass the FP32 ONNX "
                                f"to make a {precision} engine")
        if calibration is not None:
            raise RtresnetError(f"{onnx_path} is already {info.precision}; calibration settings do not apply")
        log.info("%s is already %s: building it as is", onnx_path.name, info.precision)
        return None, None
    if precision == "fp32":
        return None, None
    from rtresnet import __version__
    from rtresnet.environment import package_version

    if precision == "fp16":
        return {"from": "fp32", "to": "fp16", "rtresnet": __version__,
                "onnxconverter_common": package_version("onnxconverter-common")}, None
    if calibration is None or calibration.calib_data is None:
        raise RtresnetError("--int8 needs calibration data: pass --calib-data DIR (an image folder, .npy, "
                            "'digits' or 'synthetic')")
    from rtresnet.precision.calib_source import describe_calib_data

    c = calibration
    record = {"method": c.method, "percentile": c.percentile if c.method == "percentile" else None,
              "target": int8_target, "high_precision": c.high_precision if int8_target == "tensorrt" else None,
              "calib_size": c.calib_size, "calib_batch": c.calib_batch, "seed": c.seed, "exclude": list(c.exclude),
              "keep_io_layers_float": c.keep_io_layers_float, **describe_calib_data(c.calib_data).record()}
    record = {k: v for k, v in record.items() if v is not None and v is not False and v != []}  # unset: absent
    conversion = {"from": "fp32", "to": "int8", "rtresnet": __version__,
                  "onnxruntime": package_version("onnxruntime") or package_version("onnxruntime-gpu")}
    return conversion, record


def _convert(request: BuildRequest, out: Path, calibration: CalibrationSettings | None,
             verify: dict) -> PrecisionResult:
    """Run the precision stage on the request's FP32 source, writing the converted ONNX to ``out``."""
    if request.precision == "fp16":
        from rtresnet.precision import convert_fp16

        return convert_fp16(request.onnx_path, out, **verify)
    from rtresnet.precision import quantize_int8

    return quantize_int8(request.onnx_path, out, **verify,
                         **{**calibration.kwargs(), "target": request.calibration["target"]})


def _converted_output(request: BuildRequest, output: Path) -> Path:
    """Where the converted ONNX goes: beside the engine, named after it (rtresnet.precision.naming): one engine,
    one converted ONNX, so builds that differ only in calibration data, seed or settings never share a file."""
    from rtresnet.precision.naming import intermediate_path

    return intermediate_path(output, request.precision)


def _cached(output: Path, request: BuildRequest, tolerance: Tolerance | None,
            accept_mismatch: bool) -> Sidecar | None:
    if not output.exists():
        return None
    try:
        sidecar = read_sidecar(output)
    except RtresnetError as e:
        log.info("rebuilding %s: %s", output, e)
        return None
    reasons = request.mismatches(sidecar)
    if tolerance is not None and not accept_mismatch and not reasons:  # judged again: the thresholds may be new
        from rtresnet.precision.report import recorded_comparison

        recorded = recorded_comparison(sidecar.verification or {}, tolerance)
        if recorded is None:
            reasons.append("no accuracy figures recorded")
        elif not recorded:
            reasons.append(f"its recorded accuracy fails ({', '.join(recorded.failures())})")
    if reasons:
        log.info("rebuilding %s: the existing engine differs (%s)", output, "; ".join(reasons))
        return None
    return sidecar


def _tolerance(precision: str, min_cosine: float | None, min_agreement: float | None) -> Tolerance:
    from rtresnet.compare import FP16_TOLERANCE, INT8_TOLERANCE
    from rtresnet.precision.report import tolerance_for

    return tolerance_for(FP16_TOLERANCE if precision == "fp16" else INT8_TOLERANCE, min_cosine, min_agreement)


def build_engine(onnx_path: str | Path | None = None, *, arch: str | None = None, weights: str | None = None,
                 precision: str = "fp32", backend: str = "auto", device: str | None = None,
                 min_batch: int | None = None, opt_batch: int | None = None, max_batch: int | None = None,
                 workspace_bytes: int = 4 << 30, opt_level: int = 3, timing_cache: str | Path | None = None,
                 dla_core: int | None = None, gpu_fallback: bool = False, hardware_compat: str = "none",
                 version_compat: bool = False, tf32: bool = False, inference_precision: str = "f32",
                 force: bool = False,
                 output: str | Path | None = None, engine_dir: str | Path = ENGINE_DIR,
                 min_cosine: float | None = None, min_agreement: float | None = None, accept_mismatch: bool = False,
                 calibration: CalibrationSettings | None = None) -> EngineArtifact:
    """Build (or reuse) an engine of an ONNX model, or of ``arch``/``weights`` exported first.

    ``precision`` "fp16"/"int8" runs the precision stage on an FP32 ONNX (INT8 calibrated as ``calibration``
    says) and writes the converted ONNX beside the engine; an ONNX that is already FP16/INT8 is built as is.
    Batch sizes default to 1-32 (optimized for the largest) or the ONNX's fixed batch. ``backend="auto"`` uses
    TensorRT where it and a GPU exist; ``device`` "cpu"/"cuda" picks onnxruntime/TensorRT instead. ``output``
    defaults to a name that says what the engine is, in ``engine_dir`` (``BuildRequest.default_output``).
    ``tf32`` lets TensorRT run FP32 layers in TF32 on Ampere and newer (faster; ~1e-3 relative error).
    ``inference_precision`` "bf16" lets OpenVINO compute in bfloat16 (its own default on bf16 CPUs; rtresnet's is
    "f32"); every OpenVINO build is checked against onnxruntime on the same ONNX.
    ``min_cosine``/``min_agreement``/``accept_mismatch`` judge the FP16/INT8 conversion (see ``quantize_int8``).

    The engine cache is checked before any conversion: an existing engine whose sidecar records the same FP32
    source, settings, calibration data fingerprint, profile and versions (and accuracy within the tolerance) is
    returned as is; ``force`` rebuilds.
    """
    if precision not in PRECISIONS:
        raise RtresnetError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if (onnx_path is None) == (arch is None):
        raise RtresnetError("give either an ONNX model or --arch (with optional --weights), not both or neither")
    if weights is not None and arch is None:
        raise RtresnetError("--weights needs --arch; an ONNX model already contains its weights")
    target = resolve_backend(backend, device)
    timing_cache = Path(timing_cache) if timing_cache is not None else None
    check_options(target.backend, opt_level=opt_level, workspace_bytes=workspace_bytes, dla_core=dla_core,
                  gpu_fallback=gpu_fallback, hardware_compat=hardware_compat, version_compat=version_compat,
                  timing_cache=timing_cache, tf32=tf32, inference_precision=inference_precision)
    if output is not None:
        output = check_output_path(output)
    measured = measured_backends(backend, target, output)
    if measured:
        target = engine_builder(measured[0]).target()
    if output is not None:
        check_engine_suffix(output, target.backend)
        if onnx_path is not None and output.resolve() == Path(onnx_path).resolve():
            raise RtresnetError(f"--output {output} is the model being built; choose another engine file name")
    engine_dir = Path(engine_dir)
    if arch is not None:
        export_path = _export_path(arch, weights, output.parent if output is not None else engine_dir)
        if output is not None and output.resolve() == export_path.resolve():  # checked before the export replaces it
            raise RtresnetError(f"--output {output} is where --arch exports the ONNX model; choose another engine "
                                f"file name")
        from rtresnet.export import ensure_onnx

        with step("export"):
            onnx_path = ensure_onnx(arch, export_path, weights=weights, force=force, max_batch=max_batch)
    source = Path(onnx_path)
    if source.is_dir():
        raise RtresnetError(f"{source} is a folder; give an ONNX model file (from `rtresnet export`)")
    info = read_model_info(source)
    # DLA runs FP16/INT8 only: check the precision the engine gets (an FP16/INT8 ONNX is built as is)
    check_dla(dla_core, precision=precision if info.precision == "fp32" else info.precision)
    conversion, calibrated = _conversion(source, info, precision, ENGINE_KINDS[target.backend].int8_target,
                                         calibration)
    inputs, outputs = _graph_io(source)  # conversions keep the I/O (float32 kept); the sidecar reads them again
    if not inputs or not inputs[0].shape:
        raise RtresnetError(f"{source} has no batched input; re-export it with `rtresnet export`")
    # The export's planned --max-batch is the default top of the profile.
    lo, opt, hi = resolve_batches(inputs[0].shape[0], min_batch, opt_batch,
                                  max_batch if max_batch is not None else info.max_batch)
    source_sha256 = sha256_file(source)
    verify = {"min_cosine": min_cosine, "min_agreement": min_agreement, "accept_mismatch": accept_mismatch}
    request = BuildRequest(onnx_path=source, onnx_sha256=source_sha256, info=info, inputs=inputs, outputs=outputs,
                           precision=precision if conversion else info.precision, target=target, min_batch=lo,
                           opt_batch=opt, max_batch=hi, workspace_bytes=workspace_bytes, opt_level=opt_level,
                           timing_cache=timing_cache, dla_core=dla_core, gpu_fallback=gpu_fallback,
                           hardware_compat=hardware_compat, version_compat=version_compat, tf32=tf32,
                           inference_precision=inference_precision, calibration=calibrated, source_path=source,
                           source_sha256=source_sha256,
                           conversion=conversion, verify={k: v for k, v in verify.items() if v})
    if measured and len(select.candidates(measured, environment.cpu_info()["usable_cores"])) > 1:
        return _build_fastest(request, measured, output, engine_dir, calibration=calibration, verify=verify,
                              force=force)
    if output is None:
        output = request.default_output(source.stem, folder=engine_dir)
    if output.resolve() == source.resolve():
        raise RtresnetError(f"--output {output} is the model being built; choose another engine file name")
    if target.backend == "tensorrt" and timing_cache is None:
        request = replace(request, timing_cache=output.parent / "timing.cache")  # shared by builds in the folder
    tolerance = _tolerance(request.precision, min_cosine, min_agreement) if conversion else None
    if not force and (cached := _cached(output, request, tolerance, accept_mismatch)) is not None:
        log.debug("engine cache hit: %s matches the request (use --force to rebuild)", output)
        return _hit(output, cached, source)
    if conversion is None:
        return _build(request, output)
    request, verification = _converted_request(request, output, calibration, verify)
    return _build(request, output, verification=verification, intermediates=(request.onnx_path,))


def _hit(output: Path, cached: Sidecar, source: Path) -> EngineArtifact:
    return EngineArtifact(path=output, sidecar=cached, cache_hit=True, build_seconds=0.0,
                          onnx_path=Path(cached.extra.get("onnx_path", source)),
                          intermediates=_kept_intermediates(cached))


def _converted_request(request: BuildRequest, output: Path, calibration: CalibrationSettings | None,
                       verify: dict) -> tuple[BuildRequest, dict | None]:
    """Run the precision stage (converted ONNX beside ``output``); the request now builds from its result, and the
    conversion's accuracy figures for the sidecar."""
    source = request.onnx_path
    intermediate = _converted_output(request, output)
    if intermediate.resolve() in (output.resolve(), source.resolve()):
        raise RtresnetError(f"--output {output} is where the {request.precision.upper()} ONNX the engine is built "
                            f"from goes; choose another engine file name, e.g. {output.stem}_engine{output.suffix}")
    converted = _convert(request, intermediate, calibration, verify)
    inputs, outputs = _graph_io(converted.path)
    calibrated = request.calibration
    if calibrated is not None:
        calibrated = {**calibrated, "samples": converted.calib_samples, "cache_key": converted.cache_key}
    request = replace(request, onnx_path=converted.path, onnx_sha256=converted.sha256, info=converted.info,
                      inputs=inputs, outputs=outputs, calibration=calibrated)
    from rtresnet.precision.report import comparison_record

    return request, comparison_record(converted.comparison) if converted.comparison is not None else None


def _build_fastest(request: BuildRequest, backends: tuple[str, ...], output: Path | None, engine_dir: Path, *,
                   calibration: CalibrationSettings | None, verify: dict, force: bool) -> EngineArtifact:
    """``--backend auto`` on a CPU: build every candidate backend's engine from one converted ONNX, time each
    (backend x threads) at the opt batch, keep the fastest with the figures in its sidecar (``engine.select``)."""
    import os
    import tempfile

    from rtresnet.data.datasets import random_inputs

    source = request.onnx_path
    requests = {b: replace(request, target=engine_builder(b).target()) for b in backends}
    outputs = {b: output or r.default_output(source.stem, folder=engine_dir) for b, r in requests.items()}
    if any(o.resolve() == source.resolve() for o in outputs.values()):
        raise RtresnetError(f"--output {output} is the model being built; choose another engine file name")
    cores = environment.cpu_info()["usable_cores"]
    wanted = select.candidates(backends, cores)
    tolerance = _tolerance(request.precision, verify["min_cosine"], verify["min_agreement"]) \
        if request.conversion else None
    if not force:
        for b in backends:
            cached = _cached(outputs[b], requests[b], tolerance, verify["accept_mismatch"])
            if cached is not None and _measured_the_same(cached.selection, wanted):
                log.debug("engine cache hit: %s was measured fastest of %s (use --force to measure again)",
                          outputs[b], ", ".join(c.label for c in wanted))
                return _hit(outputs[b], cached, source)
    first = backends[0]
    outputs[first].parent.mkdir(parents=True, exist_ok=True)
    verification = None
    if request.conversion is not None:  # one conversion for every candidate: they consume the same Q/DQ layout
        request, verification = _converted_request(requests[first], outputs[first], calibration, verify)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=outputs[first].parent, prefix=".rtresnet-auto-") as tmp:
        built = {b: _build(replace(request, target=requests[b].target), Path(tmp) / outputs[b].name,
                           verification=verification) for b in backends}
        runners: dict = {}
        try:
            for c in wanted:
                runners[c] = engine_runner(c.backend).from_engine(built[c.backend].path, built[c.backend].sidecar,
                                                                  threads=c.threads)
            with step("measure"):
                times = select.measure(runners, random_inputs(request.info, request.opt_batch))
        finally:
            for r in runners.values():
                r.close()
        chosen = select.fastest(times)
        record = select.selection_record(times, request.opt_batch, chosen)
        log.debug("--backend auto: %s", select.describe(record))  # the CLI prints it: on stdout, a result
        final, win = outputs[chosen.backend], built[chosen.backend]
        onnx_path = request.onnx_path
        if request.conversion is not None:  # the converted ONNX takes the kept engine's name
            onnx_path = _converted_output(requests[chosen.backend], final)
            if onnx_path != request.onnx_path:
                os.replace(request.onnx_path, onnx_path)
        kept = replace(request, target=requests[chosen.backend].target, onnx_path=onnx_path)
        sidecar = replace(win.sidecar, selection=record,
                          extra={**win.sidecar.extra, "onnx_path": str(onnx_path),
                                 "build_command": rebuild_command(kept, final)})
        sidecar_path(final).unlink(missing_ok=True)  # no sidecar ever describes the engine being replaced
        os.replace(win.path, final)
        write_sidecar(final, sidecar)
    return EngineArtifact(path=final, sidecar=sidecar, cache_hit=False, build_seconds=time.perf_counter() - start,
                          onnx_path=onnx_path, intermediates=(onnx_path,) if request.conversion else ())


def _measured_the_same(selection: dict | None, wanted: list) -> bool:
    """Whether a cached auto build measured the candidates this machine has now (OpenVINO installed since: not)."""
    if not isinstance(selection, dict) or not isinstance(selection.get("candidates"), list):
        return False
    try:
        had = {(r["backend"], r["threads"]) for r in selection["candidates"]}
    except (KeyError, TypeError):
        return False
    return had == {(c.backend, c.threads) for c in wanted}


def _kept_intermediates(sidecar: Sidecar) -> tuple[Path, ...]:
    """The converted ONNX a cached engine was built from, when it is still there unchanged."""
    path = sidecar.extra.get("onnx_path")
    if not sidecar.source or not path or path == sidecar.source.get("path") or not Path(path).is_file():
        return ()
    return (Path(path),) if sha256_file(path) == sidecar.onnx_sha256 else ()


def _build(request: BuildRequest, output: Path, *, verification: dict | None = None,
           intermediates: tuple[Path, ...] = ()) -> EngineArtifact:
    start = time.perf_counter()
    with step("build"), atomic_path(output) as tmp:
        engine_builder(request.backend).build(request, tmp)
        engine_sha256 = sha256_file(tmp)
        # The old sidecar goes just before the rename: a failed or killed build keeps the old pair intact, and
        # no sidecar ever describes the new engine before it is complete.
        sidecar_path(output).unlink(missing_ok=True)
    seconds = time.perf_counter() - start
    t = request.target
    from rtresnet import __version__

    source = {"path": str(request.source_path or request.onnx_path),
              "sha256": request.source_sha256 or request.onnx_sha256,
              "precision": "fp32" if request.conversion else request.precision, "converter": request.conversion}
    sidecar = Sidecar(backend=t.backend, precision=request.precision, model=request.info, inputs=request.inputs,
                      outputs=request.outputs, profile=request.profile, onnx_sha256=request.onnx_sha256,
                      engine_sha256=engine_sha256, build_seconds=round(seconds, 3),
                      built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), flags=request.flags,
                      calibration=request.calibration, tensorrt_version=t.tensorrt_version,
                      cuda_version=t.cuda_version, gpu=t.gpu, onnxruntime_version=t.onnxruntime_version,
                      execution_providers=t.execution_providers, cpu=t.cpu, rtresnet_version=__version__,
                      openvino_version=t.openvino_version,
                      extra={"onnx_path": str(request.onnx_path), "build_command": rebuild_command(request, output)},
                      source=source, verification=verification)
    write_sidecar(output, sidecar)
    log.debug("built %s in %.1f s", output, seconds)
    return EngineArtifact(path=output, sidecar=sidecar, cache_hit=False, build_seconds=seconds,
                          onnx_path=request.onnx_path, intermediates=intermediates)
