"""What an engine build is asked to produce, and whether an existing engine already is that.

A ``BuildRequest`` is fully resolved (backend chosen, batch profile fixed, ONNX hashed) before anything is built,
so the same object names the default output file, decides cache hits and fills the sidecar's ``flags``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rtresnet.backends import BUILD_BACKENDS, ENGINE_KINDS, engine_builder
from rtresnet.backends import EngineBackend as Backend
from rtresnet.errors import RtresnetError
from rtresnet.sidecar import Sidecar
from rtresnet.spec import LIMITS, ModelInfo, TensorSpec, check_range, describe_range

log = logging.getLogger(__name__)

HardwareCompat = Literal["none", "ampere+", "same-cc"]
HARDWARE_COMPAT: tuple[str, ...] = ("none", "ampere+", "same-cc")
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
BACKENDS = BUILD_BACKENDS  # --backend's choices: "auto" and the engine backends
ENGINE_DIR = Path("engines")
DEFAULT_MIN_BATCH, DEFAULT_MAX_BATCH = 1, 32
# Portable across CPUs of one architecture: ENABLE_ALL adds layout (NCHWc) transforms tuned to the build CPU.
ORT_OPT_LEVEL = "ORT_ENABLE_EXTENDED"


@dataclass(frozen=True)
class Target:
    """The software and hardware an engine is bound to (part of the cache key)."""

    backend: Backend
    tensorrt_version: str | None = None
    cuda_version: str | None = None
    gpu: dict | None = None                 # {"name", "compute_capability"}
    onnxruntime_version: str | None = None
    execution_providers: tuple[str, ...] = ()
    cpu: dict | None = None                 # {"model", "arch", "isa"}
    openvino_version: str | None = None


@dataclass(frozen=True)
class BuildRequest:
    onnx_path: Path
    onnx_sha256: str
    info: ModelInfo
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    precision: str
    target: Target
    min_batch: int
    opt_batch: int
    max_batch: int
    workspace_bytes: int = 4 << 30
    opt_level: int = 3
    timing_cache: Path | None = None
    dla_core: int | None = None
    gpu_fallback: bool = False
    hardware_compat: HardwareCompat = "none"
    version_compat: bool = False
    tf32: bool = False
    inference_precision: str = "f32"  # OpenVINO's execution precision hint ("bf16" only when asked for)
    calibration: dict | None = None  # INT8: settings and data record (CALIBRATION_KEY: the cache-key part)
    source_path: Path | None = None  # the ONNX `build` was given (onnx_path: the one the engine is built from)
    source_sha256: str | None = None
    conversion: dict | None = None   # FP16/INT8 conversion: precision and the converters' versions (cache key)
    verify: dict = field(default_factory=dict)  # min_cosine/min_agreement/accept_mismatch given (rebuild command)

    @property
    def backend(self) -> Backend:
        return self.target.backend

    @property
    def profile(self) -> dict:
        return {"min_batch": self.min_batch, "opt_batch": self.opt_batch, "max_batch": self.max_batch}

    @property
    def flags(self) -> dict:
        """Every option that changes the engine bytes, as the backend's builder lists them."""
        return engine_builder(self.backend).flags(self)

    @property
    def precision_tag(self) -> str:
        """``int8-entropy``, ``fp16``...: the precision field of file names (rtresnet.precision.naming)."""
        from rtresnet.precision.naming import precision_tag

        cal = self.calibration or {}
        return precision_tag(self.precision, cal.get("method"), cal.get("percentile"))

    def default_output(self, model_name: str | None = None, folder: Path = ENGINE_DIR) -> Path:
        """A name that says what the engine is: ``resnet50_int8-entropy_b1-32_trt11.4_sm90.engine`` (the scheme:
        rtresnet.precision.naming; ``_opt8`` follows the batches when the profile is tuned for another batch).

        ``model_name`` (the source ONNX's stem) leads instead of the arch, so engines of two models of one arch
        (other weights, class counts, sizes) get two files instead of replacing each other.
        """
        extra, suffix = engine_builder(self.backend).name_parts(self)
        batches = [f"b{self.min_batch}-{self.max_batch}"] + ([f"opt{self.opt_batch}"]
                                                             if self.opt_batch != self.max_batch else [])
        parts = [model_name or self.info.arch, self.precision_tag, *batches, *extra]
        return folder / ("_".join(parts) + suffix)

    def cache_key(self) -> dict:
        """Everything an existing engine must match to be reused, known before any conversion runs: an FP16/INT8
        build is keyed by its FP32 source, the conversion and calibration settings and the calibration data's
        fingerprint, not by the converted graph (so a hit skips calibration, quantization and verification)."""
        t = self.target
        key = {"backend": self.backend, "precision": self.precision, "profile": self.profile, "flags": self.flags,
               "tensorrt_version": t.tensorrt_version, "onnxruntime_version": t.onnxruntime_version,
               "openvino_version": t.openvino_version, "gpu": _gpu_key(t.gpu),
               "cpu": _cpu_key(self.backend, t.cpu)}
        if self.conversion is None:
            return {**key, "onnx_sha256": self.onnx_sha256}
        cal = self.calibration or {}
        return {**key, "source_sha256": self.source_sha256, "conversion": self.conversion,
                "calibration": {k: cal.get(k) for k in CALIBRATION_KEY if k in cal} or None}

    def mismatches(self, sidecar: Sidecar) -> list[str]:
        """Why an existing engine is not what this request asks for (empty: it is)."""
        want = self.cache_key()
        source, cal = sidecar.source or {}, sidecar.calibration or {}
        have = {"backend": sidecar.backend, "onnx_sha256": sidecar.onnx_sha256, "precision": sidecar.precision,
                "profile": sidecar.profile, "flags": sidecar.flags, "tensorrt_version": sidecar.tensorrt_version,
                "onnxruntime_version": sidecar.onnxruntime_version, "openvino_version": sidecar.openvino_version,
                "gpu": _gpu_key(sidecar.gpu), "cpu": _cpu_key(sidecar.backend, sidecar.cpu),
                "source_sha256": source.get("sha256"), "conversion": source.get("converter"),
                # every key the old build set, not only those this request sets: dropping --exclude is a change
                "calibration": {k: cal.get(k) for k in CALIBRATION_KEY if k in cal} or None}
        return [f"{k} {have[k]!r} != {want[k]!r}" for k in want if have[k] != want[k]]


# The calibration record's fields that change the INT8 graph (its "data" path and "data_kind" do not: the same
# images moved elsewhere are the same data; "samples" and "cache_key" are only known once calibrated).
CALIBRATION_KEY = ("method", "percentile", "target", "high_precision", "calib_size", "calib_batch", "seed",
                   "exclude", "keep_io_layers_float", "data_count", "data_fingerprint")


def _gpu_key(gpu: dict | None) -> tuple | None:
    return (gpu.get("name"), gpu.get("compute_capability")) if gpu else None


def _cpu_key(backend: str, cpu: dict | None) -> dict | None:
    """The CPU facts an engine of ``backend`` is bound to (``EngineKind.cpu_key``: the architecture for onnxruntime,
    model and ISA too for OpenVINO's compiled blobs)."""
    kind = ENGINE_KINDS.get(backend)
    if not cpu or kind is None:
        return None
    return {k: cpu.get(k) for k in kind.cpu_key}


def major_minor(version: str | None) -> str:
    return ".".join((version or "unknown").split(".")[:2])


def resolve_batches(onnx_batch: int | str, min_batch: int | None, opt_batch: int | None,
                    max_batch: int | None) -> tuple[int, int, int]:
    """The optimization profile: 1..32 for a dynamic batch axis, the fixed size for a static one. Every batch
    given is an integer within ``LIMITS["batch"]``: an engine profile sizes device buffers by its maximum."""
    for name, value in (("--min-batch", min_batch), ("--opt-batch", opt_batch), ("--max-batch", max_batch)):
        if value is not None:
            check_range("batch", value, name)
    if isinstance(onnx_batch, int) and onnx_batch > 0:
        lo = onnx_batch if min_batch is None else min_batch
        hi = onnx_batch if max_batch is None else max_batch
        if (lo, hi) != (onnx_batch, onnx_batch) or opt_batch not in (None, onnx_batch):
            raise RtresnetError(f"this ONNX model has a fixed batch of {onnx_batch}; pass --min-batch/--max-batch "
                                f"{onnx_batch} or re-export it with a dynamic batch (`rtresnet export`)")
        return onnx_batch, onnx_batch, onnx_batch
    lo = DEFAULT_MIN_BATCH if min_batch is None else min_batch
    hi = max(DEFAULT_MAX_BATCH, lo) if max_batch is None else max_batch
    # Optimize for the largest batch by default: TensorRT picks one tactic set per profile (throughput first).
    opt = hi if opt_batch is None else opt_batch
    if lo < 1:
        raise RtresnetError(f"--min-batch must be at least 1, got {lo}")
    if hi < 1:
        raise RtresnetError(f"--max-batch must be at least 1, got {hi}")
    if hi < lo:
        raise RtresnetError(f"--max-batch {hi} is smaller than --min-batch {lo}")
    if not lo <= opt <= hi:
        raise RtresnetError(f"--opt-batch {opt} must lie between --min-batch {lo} and --max-batch {hi}")
    return lo, opt, hi


DLA_VERSIONS = ("TensorRT 10.x on Jetson/DRIVE has DLA; TensorRT 11.x has no DLA support on JetPack or DriveOS")


def check_dla(dla_core: int | None, *, precision: str | None = None, hardware_compat: str = "none",
              version_compat: bool = False) -> None:
    """Refuse DLA builds that TensorRT cannot make: DLA runs FP16 and INT8 only, and its engines are neither
    version- nor hardware-compatible. ``precision`` is the graph's (None: not known yet, checked later)."""
    if dla_core is None:
        return
    if precision == "fp32":
        raise RtresnetError(f"--dla-core runs FP16 or INT8 only, not FP32; build with --fp16 or --int8, or drop "
                            f"--dla-core ({DLA_VERSIONS})")
    compat = [name for name, on in (("--version-compat", version_compat),
                                    ("--hardware-compat", hardware_compat != "none")) if on]
    if compat:
        raise RtresnetError(f"--dla-core cannot be combined with {' and '.join(compat)} (DLA engines are tied to "
                            f"their TensorRT version and device); drop one of them ({DLA_VERSIONS})")


def check_options(backend: Backend, *, opt_level: int, workspace_bytes: int, dla_core: int | None,
                  gpu_fallback: bool, hardware_compat: str, version_compat: bool, timing_cache: Path | None,
                  tf32: bool = False, precision: str | None = None,
                  inference_precision: str = "f32") -> None:
    """Refuse options that do not apply instead of ignoring them. ``precision`` is the precision of the graph
    TensorRT builds (None when not known yet: the DLA precision check is then left to ``check_dla``)."""
    if hardware_compat not in HARDWARE_COMPAT:
        raise RtresnetError(f"unknown hardware compatibility {hardware_compat!r}; use one of "
                            f"{', '.join(HARDWARE_COMPAT)}")
    if isinstance(opt_level, bool) or not isinstance(opt_level, int) or not 0 <= opt_level <= 5:
        raise RtresnetError(f"--opt-level must be 0-5 (TensorRT's builder optimization level), got {opt_level}")
    if gpu_fallback and dla_core is None:
        raise RtresnetError("--gpu-fallback only applies with --dla-core N")
    if dla_core is not None and dla_core < 0:
        raise RtresnetError(f"--dla-core must be 0 or more, got {dla_core}")
    if backend != "tensorrt":  # the TensorRT options: refused for every other engine backend
        used = [name for name, on in (("--dla-core", dla_core is not None), ("--gpu-fallback", gpu_fallback),
                                      ("--hardware-compat", hardware_compat != "none"),
                                      ("--version-compat", version_compat), ("--tf32", tf32),
                                      ("--timing-cache", timing_cache is not None)) if on]
        if used:
            raise RtresnetError(f"{', '.join(used)} only apply to TensorRT engines, but this build uses "
                                f"{backend}; drop them or build with --backend tensorrt on a machine with TensorRT")
    if inference_precision != "f32":
        if inference_precision not in ("bf16",):
            raise RtresnetError(f"unknown --inference-precision {inference_precision!r}; use f32 or bf16")
        if backend != "openvino":
            raise RtresnetError(f"--inference-precision {inference_precision} only applies to OpenVINO engines, but "
                                f"this build uses {backend}; drop it or build with --backend openvino")
    check_dla(dla_core, precision=precision, hardware_compat=hardware_compat, version_compat=version_compat)
    lo, hi = LIMITS["workspace"]
    if isinstance(workspace_bytes, bool) or not isinstance(workspace_bytes, int) or not lo <= workspace_bytes <= hi:
        raise RtresnetError(f"--workspace must be {describe_range('workspace')}, got {workspace_bytes!r} bytes")


def rebuild_command(request: BuildRequest, output: Path) -> str:
    """The exact `rtresnet build` command that produces this engine again from the ONNX `build` was given, with
    the conversion and the calibration data (stored in the sidecar)."""
    import shlex

    args = ["rtresnet", "build", str(request.source_path or request.onnx_path)]
    if request.conversion is not None:
        args.append(f"--{request.precision}")
    if cal := request.calibration:
        args += ["--calib-data", str(cal["data"]), "--calib-method", cal["method"], "--calib-size",
                 str(cal["calib_size"]), "--calib-batch", str(cal["calib_batch"]), "--seed", str(cal["seed"])]
        if cal.get("percentile") is not None:
            args += ["--percentile", f"{cal['percentile']:g}"]
        if cal.get("high_precision") not in (None, "fp16"):
            args += ["--high-precision", cal["high_precision"]]
        for name in cal.get("exclude") or ():
            args += ["--exclude", name]
        if cal.get("keep_io_layers_float"):
            args.append("--keep-io-layers-float")
    for name in ("min_cosine", "min_agreement"):
        if request.verify.get(name) is not None:
            args += ["--" + name.replace("_", "-"), f"{request.verify[name]:g}"]
    if request.verify.get("accept_mismatch"):
        args.append("--accept-mismatch")
    args += ["--backend", request.backend, "--min-batch", str(request.min_batch), "--opt-batch",
             str(request.opt_batch), "--max-batch", str(request.max_batch)]
    if request.inference_precision != "f32":
        args += ["--inference-precision", request.inference_precision]
    if request.backend == "tensorrt":
        args += ["--workspace", str(request.workspace_bytes), "--opt-level", str(request.opt_level)]
        if request.dla_core is not None:
            args += ["--dla-core", str(request.dla_core)] + (["--gpu-fallback"] if request.gpu_fallback else [])
        if request.hardware_compat != "none":
            args += ["--hardware-compat", request.hardware_compat]
        if request.version_compat:
            args.append("--version-compat")
        if request.tf32:
            args.append("--tf32")
    args += ["--output", str(output), "--force"]
    return shlex.join(args)
