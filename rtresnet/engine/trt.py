"""TensorRT engine builder for TensorRT 10.x and 11.x: the only build module that uses tensorrt (through
``rtresnet._trt``, lazily).

Precision lives in the ONNX graph (FP16 tensors, Q/DQ nodes): the network is strongly typed, so no precision
builder flag or calibrator is used (both were removed in TensorRT 11). Every TensorRT name used here is checked
against the 10.16 and 11.4 bindings by tests/test_trt_api_surface.py.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from pathlib import Path

from rtresnet._trt import import_tensorrt, logger
from rtresnet.engine.request import DLA_VERSIONS, BuildRequest, Target, major_minor
from rtresnet.errors import RtresnetError
from rtresnet.fileutil import atomic_write_bytes

log = logging.getLogger(__name__)

SUFFIXES = (".engine", ".plan", ".trt")  # a plain plan, as trtexec, Triton and rtresnet.runtime name them


def _make_progress_monitor(trt):
    """Log build phases while TensorRT works (a ResNet-50 INT8 build takes minutes)."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.steps: dict[str, int] = {}

        def phase_start(self, phase_name, parent_phase, num_steps) -> None:
            self.steps[phase_name] = num_steps
            level = logging.INFO if parent_phase is None else logging.DEBUG
            log.log(level, "TensorRT build: %s (%d steps)", phase_name, num_steps)

        def step_complete(self, phase_name, step) -> bool:
            log.debug("TensorRT build: %s %d/%d", phase_name, step + 1, self.steps.get(phase_name, 0))
            return True  # False would cancel the build

        def phase_finish(self, phase_name) -> None:
            log.debug("TensorRT build: %s done", phase_name)

    return Monitor()


def parser_errors(parser, onnx_path: Path) -> RtresnetError:
    """One error per failing ONNX node: logged in full, the first one in the exception's single line."""
    lines = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        where = f"node {err.node()}" if err.node() >= 0 else "graph"
        if err.node_name():
            where += f" {err.node_name()!r}"
        if err.node_operator():
            where += f" ({err.node_operator()})"
        lines.append(f"{where}: {err.desc()}")
    for line in lines:
        log.error("TensorRT ONNX parser: %s", line)
    first = lines[0] if lines else "no details"
    return RtresnetError(f"TensorRT cannot parse {onnx_path} ({len(lines)} error(s)); first: {first}; "
                         f"check the export with `rtresnet export` and the TensorRT ONNX operator support")


def _load_timing_cache(config, path: Path | None):
    """Give the builder the cache in ``path``, or an empty one when there is none or it cannot be used."""
    data = path.read_bytes() if path is not None and path.is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is None and data:  # None for truncated bytes or another TensorRT's format
        log.warning("timing cache %s is truncated or from another TensorRT version; starting an empty one", path)
        cache = config.create_timing_cache(b"")
    if cache is None:
        raise RtresnetError("TensorRT could not create an empty timing cache; see its log above "
                            "(`rtresnet --debug build ...`)")
    if data:
        log.info("using TensorRT timing cache %s (%d bytes)", path, len(data))
    # A cache from another GPU would mislead tactic selection: start empty instead of ignoring the mismatch.
    if not config.set_timing_cache(cache, False):
        log.warning("timing cache %s was made on another GPU or TensorRT; starting a new one", path)
        config.set_timing_cache(config.create_timing_cache(b""), False)


@contextlib.contextmanager
def _locked(path: Path):
    """Hold an exclusive lock on ``path.lock``: builds sharing a cache file save it one at a time."""
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _save_timing_cache(config, path: Path) -> None:
    """Merge the builder's cache into the file, as trtexec does: another build may have saved entries since this
    one read it, and a plain overwrite would drop them."""
    cache = config.get_timing_cache()
    with _locked(path):
        data = path.read_bytes() if path.is_file() else b""
        on_disk = config.create_timing_cache(data) if data else None
        if on_disk is not None and on_disk.combine(cache, False):
            cache = on_disk  # the file's entries plus this build's
        elif data:
            log.warning("timing cache %s is unreadable or from another GPU or TensorRT; replacing it", path)
        atomic_write_bytes(path, bytes(memoryview(cache.serialize())))
    log.info("saved TensorRT timing cache %s", path)


def _configure(trt, builder, network, config, request: BuildRequest) -> None:
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, request.workspace_bytes)
    config.builder_optimization_level = request.opt_level
    # TF32 is on by default and costs ~1e-3 relative error: FP32 layers stay FP32 unless asked otherwise.
    if not request.tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = tuple(tensor.shape)
        shapes = [tuple(b if d == -1 and axis == 0 else d for axis, d in enumerate(dims))
                  for b in (request.min_batch, request.opt_batch, request.max_batch)]
        if any(d < 0 for s in shapes for d in s):
            raise RtresnetError(f"input {tensor.name!r} has dynamic axes other than the batch {dims}; "
                                f"re-export with a fixed image size (`rtresnet export --input-size`)")
        profile.set_shape(tensor.name, *shapes)
    config.add_optimization_profile(profile)
    if request.dla_core is not None:
        cores = builder.num_DLA_cores
        if request.dla_core >= cores:
            raise RtresnetError(f"--dla-core {request.dla_core} asks for a DLA core but this device has {cores} "
                                f"(TensorRT {trt.__version__}; {DLA_VERSIONS}); drop --dla-core")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = request.dla_core
        if request.gpu_fallback:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if request.hardware_compat == "ampere+":
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    elif request.hardware_compat == "same-cc":
        if not hasattr(trt.HardwareCompatibilityLevel, "SAME_COMPUTE_CAPABILITY"):  # added in TensorRT 10.9
            raise RtresnetError(f"--hardware-compat same-cc needs TensorRT 10.9 or newer, this is {trt.__version__}; "
                                f"use --hardware-compat ampere+ or upgrade TensorRT")
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY
    if request.version_compat:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)


def target() -> Target:
    """The TensorRT version and GPU an engine built here is bound to (read without importing tensorrt)."""
    from rtresnet.environment import gpu_info, tensorrt_version

    gpu = gpu_info() or {}
    return Target(backend="tensorrt", tensorrt_version=tensorrt_version(), cuda_version=gpu.get("cuda_version"),
                  gpu={"name": gpu.get("name"), "compute_capability": gpu.get("compute_capability")})


def flags(request: BuildRequest) -> dict:
    """Every option that changes the engine bytes (the timing cache only speeds the build up)."""
    return {"workspace_bytes": request.workspace_bytes, "opt_level": request.opt_level, "dla_core": request.dla_core,
            "gpu_fallback": request.gpu_fallback, "hardware_compat": request.hardware_compat,
            "version_compat": request.version_compat, "tf32": request.tf32, "strongly_typed": True}


def name_parts(request: BuildRequest) -> tuple[list[str], str]:
    """File-name parts after model, precision and batches (``..._trt11.4_sm90.engine``), and the suffix."""
    cc = (request.target.gpu or {}).get("compute_capability", "")
    parts = [f"trt{major_minor(request.target.tensorrt_version)}", "sm" + cc.replace(".", "")]
    if request.dla_core is not None:
        parts.append(f"dla{request.dla_core}")
    if request.hardware_compat != "none":
        parts.append({"ampere+": "ampereplus", "same-cc": "samecc"}[request.hardware_compat])
    if request.version_compat:
        parts.append("vc")
    return parts, ".engine"


def describe(sidecar) -> str:
    return f"TensorRT {sidecar.tensorrt_version} on {(sidecar.gpu or {}).get('name')}"


def build(request: BuildRequest, engine_path: Path) -> None:
    """Build a plain TensorRT plan from ``request.onnx_path`` into ``engine_path`` (a temporary path)."""
    trt = import_tensorrt()
    builder = trt.Builder(logger())
    # One path for 10.x and 11.x; the enum's value differs between them, so never a literal.
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger())
    if not parser.parse_from_file(str(request.onnx_path)):
        raise parser_errors(parser, request.onnx_path)
    config = builder.create_builder_config()
    _configure(trt, builder, network, config, request)
    _load_timing_cache(config, request.timing_cache)
    monitor = _make_progress_monitor(trt)  # a local: TensorRT needs the object alive until the build ends
    config.progress_monitor = monitor
    log.info("building a TensorRT %s %s engine (batch %d-%d, opt %d)", trt.__version__, request.precision,
             request.min_batch, request.max_batch, request.opt_batch)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RtresnetError(f"TensorRT could not build an engine from {request.onnx_path}; see the TensorRT "
                            f"errors above (`rtresnet --debug build ...` shows all of its messages)")
    with open(engine_path, "wb") as f:
        f.write(memoryview(plan))
    if request.timing_cache is not None:
        _save_timing_cache(config, request.timing_cache)
