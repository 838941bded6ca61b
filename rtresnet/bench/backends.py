"""Backend names -> how to produce a runner for them, through the pipeline's own stage functions.

A name fixes the runtime, precision and device. Engine backends are produced in a work folder the way a user
would: export the FP32 ONNX once, convert/quantize it, build the engine, then ``rtresnet.runtime`` loads it.
Availability (CUDA, onnxruntime's CUDA provider, TensorRT) is checked before any work is done.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtresnet.errors import RtresnetError, UsageError
from rtresnet.spec import ModelInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendSpec:
    name: str
    runtime: str            # "torch" | "onnxruntime" | "openvino" | "tensorrt"
    precision: str          # "fp32" | "fp16" | "int8"
    device: str             # "cpu" | "cuda"
    channels_last: bool = False
    description: str = ""


BACKENDS: dict[str, BackendSpec] = {s.name: s for s in (
    BackendSpec("torch", "torch", "fp32", "cpu", description="PyTorch eager FP32 (the baseline)"),
    BackendSpec("torch-cuda", "torch", "fp32", "cuda",
                description="PyTorch eager FP32 on CUDA, TF32 off (as in rtresnet's TensorRT FP32 engines)"),
    BackendSpec("torch-cuda-fp16", "torch", "fp16", "cuda", description="PyTorch eager, FP16 autocast"),
    BackendSpec("torch-cuda-fp16-cl", "torch", "fp16", "cuda", channels_last=True,
                description="PyTorch eager, FP16 autocast, channels_last"),
    BackendSpec("onnxruntime", "onnxruntime", "fp32", "cpu", description="onnxruntime CPU, FP32 engine"),
    BackendSpec("onnxruntime-fp16", "onnxruntime", "fp16", "cpu", description="onnxruntime CPU, FP16 engine"),
    BackendSpec("onnxruntime-int8", "onnxruntime", "int8", "cpu",
                description="onnxruntime CPU, INT8 QDQ engine (U8 activations, S8 per-channel weights)"),
    BackendSpec("openvino", "openvino", "fp32", "cpu", description="OpenVINO CPU, FP32 engine (f32 precision hint)"),
    BackendSpec("openvino-int8", "openvino", "int8", "cpu",
                description="OpenVINO CPU, INT8 engine compiled from the same Q/DQ ONNX as onnxruntime-int8"),
    BackendSpec("onnxruntime-cuda", "onnxruntime", "fp32", "cuda",
                description="onnxruntime CUDA EP, FP32 (its defaults let convolutions use TF32)"),
    BackendSpec("onnxruntime-cuda-fp16", "onnxruntime", "fp16", "cuda", description="onnxruntime CUDA EP, FP16"),
    BackendSpec("tensorrt", "tensorrt", "fp32", "cuda", description="TensorRT FP32 engine, TF32 off"),
    BackendSpec("tensorrt-fp16", "tensorrt", "fp16", "cuda", description="TensorRT FP16 engine"),
    BackendSpec("tensorrt-int8", "tensorrt", "int8", "cuda",
                description="TensorRT INT8 engine (explicit Q/DQ, FP16 elsewhere)"),
)}
# On the GPU "fp32" is only comparable with TF32 off everywhere: rtresnet builds TensorRT FP32 engines without TF32
# (unless --tf32), while cuDNN runs PyTorch's convolutions in TF32 by default.
FP32_GPU_NOTE = ("FP32 on the GPU: torch-cuda runs with TF32 off (cuDNN would use TF32 for convolutions by default) "
                 "and the TensorRT FP32 engines are built without TF32; onnxruntime-cuda keeps its CUDA EP defaults, "
                 "which allow TF32")

RUNTIME_ABBREVIATIONS = {"torch": "torch", "onnxruntime": "ort", "openvino": "ov", "tensorrt": "trt"}


def short_label(runtime: str, precision: str, device: str, channels_last: bool = False) -> str:
    """The row label of the terminal table: ``torch``, ``ort int8``, ``ort cuda fp16``, ``trt fp16``. PyTorch's
    FP32 row is the baseline and is plain ``torch``; the device shows where the runtime has both."""
    parts = [RUNTIME_ABBREVIATIONS.get(runtime, runtime or "?")]
    if device == "cuda" and runtime != "tensorrt":
        parts.append("cuda")
    if not (runtime == "torch" and precision == "fp32"):
        parts.append(precision or "?")
    if channels_last:
        parts.append("cl")
    return " ".join(parts)


GPU_BACKENDS = ("torch-cuda", "torch-cuda-fp16", "torch-cuda-fp16-cl", "onnxruntime-cuda", "onnxruntime-cuda-fp16",
                "tensorrt", "tensorrt-fp16", "tensorrt-int8")


def parse_backends(names: str | list[str] | tuple[str, ...]) -> tuple[BackendSpec, ...]:
    items = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    if not items:
        raise RtresnetError(f"no backends given; choose from {', '.join(BACKENDS)}")
    unknown = [n for n in items if n not in BACKENDS]
    if unknown:
        raise UsageError(f"unknown backend {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
    if len(set(items)) != len(items):
        raise RtresnetError(f"a backend is listed twice in {', '.join(items)}")
    return tuple(BACKENDS[n] for n in items)


@contextlib.contextmanager
def numerics(spec: BackendSpec | None) -> Iterator[None]:
    """Run ``spec`` in its stated precision: the torch-cuda FP32 baseline with TF32 off, as rtresnet's TensorRT
    FP32 engines; PyTorch's flags are restored afterwards."""
    if spec is None or (spec.runtime, spec.device, spec.precision) != ("torch", "cuda", "fp32"):
        yield
        return
    import torch

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def unavailable_reason(spec: BackendSpec) -> str | None:
    """Why ``spec`` cannot run on this machine (with the fix), or None when it can: the one availability check."""
    from rtresnet.backends import backend_name, backend_status

    status = backend_status(backend_name(spec.runtime, spec.device))
    return None if status else f"{status.detail} ({status.fix})" if status.fix else status.detail


class Workspace:
    """Produces each backend's artifact once in ``work_dir``: FP32 ONNX -> FP16/INT8 ONNX -> engine."""

    def __init__(self, work_dir: Path, *, weights: str | Path | None, info: ModelInfo, max_batch: int,
                 calib_data: str | Path, calib_size: int, calib_method: str = "entropy", seed: int = 0) -> None:
        self.work_dir = Path(work_dir)
        self.weights, self.info = weights, info
        self.max_batch, self.calib_data, self.calib_size, self.seed = max_batch, calib_data, calib_size, seed
        self.calib_method = calib_method
        self._fp32: Path | None = None

    def fp32_onnx(self) -> Path:
        """The FP32 export of the benchmarked model, made once (and reused across runs when it still matches)."""
        if self._fp32 is None:
            from rtresnet.export import ensure_onnx
            from rtresnet.steps import step

            info = self.info
            with step("export"):
                self._fp32 = ensure_onnx(info.arch, self.work_dir / f"{info.arch}.onnx", weights=self.weights,
                                         num_classes=info.num_classes, in_channels=info.in_channels,
                                         input_size=info.input_size, preprocessing=info.preprocessing,
                                         labels=info.labels or None, input_format=info.input_format,
                                         verify=False)
        return self._fp32

    def engines(self, spec: BackendSpec, sizes: Sequence[int]) -> dict[int, Path]:
        """TensorRT: one engine per timed batch size, each optimized for that size (opt = batch, as trtexec's
        --shapes; TensorRT picks one set of tactics per profile) and valid for batches 1..max_batch."""
        return {b: self.engine(spec, opt_batch=b) for b in sizes}

    def engine(self, spec: BackendSpec, opt_batch: int | None = None) -> Path:
        """The file the runtime loads: an engine built from the FP32 ONNX (the build stage converts or quantizes
        it, INT8 calibrated for the backend's target), TensorRT ones optimized for ``opt_batch`` (default: the
        largest). For onnxruntime's CUDA provider it is the ONNX itself, because onnxruntime engines are optimized
        for the CPU provider's kernels."""
        fp32 = self.fp32_onnx()
        if spec.runtime == "onnxruntime" and spec.device == "cuda":
            if spec.precision == "fp32":
                return fp32
            from rtresnet.precision import convert_fp16
            from rtresnet.precision.naming import converted_path

            return Path(convert_fp16(fp32, converted_path(fp32, precision="fp16"), verify=False).path)
        from rtresnet.engine import build_engine
        from rtresnet.precision import CalibrationSettings
        from rtresnet.precision.calib_cache import default_cache_dir

        calibration = CalibrationSettings(self.calib_data, method=self.calib_method, calib_size=self.calib_size,
                                          seed=self.seed, cache_dir=default_cache_dir(self.work_dir)) \
            if spec.precision == "int8" else None
        # build's own names (precision, calibration method, profile, opt batch, backend): one scheme everywhere
        artifact = build_engine(fp32, precision=spec.precision, backend=spec.runtime, min_batch=1,
                                opt_batch=opt_batch or self.max_batch, max_batch=self.max_batch,
                                engine_dir=self.work_dir, calibration=calibration)
        return Path(artifact.path)


def load_runner(spec: BackendSpec, *, engine: Path | None, weights: Path | str | None, info: ModelInfo,
                threads: int) -> Any:
    """A runtime ``Runner`` for ``spec``: the engine (or ONNX) through ``rtresnet.runtime.load``; torch backends
    load the weights afresh, so their memory counts against the backend that holds them."""
    from rtresnet.runtime import load

    if spec.runtime == "torch":
        return load(info.arch, backend="torch", weights=weights, num_classes=info.num_classes,
                    in_channels=info.in_channels, input_size=info.input_size, preprocessing=info.preprocessing,
                    labels=info.labels or None, device=spec.device, fp16=spec.precision == "fp16",
                    channels_last=spec.channels_last)
    options: dict[str, Any] = {"threads": threads} if spec.device == "cpu" else {}
    return load(engine, backend=spec.runtime, device=spec.device, **options)


def load_model_file(path: Path, *, threads: int, device: str | None = None) -> Any:
    """A runner for an existing engine or ONNX file given with ``--models`` (threads apply on the CPU), on
    ``device`` when given (an onnxruntime file then runs on onnxruntime's CUDA provider)."""
    from rtresnet.runtime import load
    from rtresnet.sidecar import read_sidecar, sidecar_path

    cpu_file = not sidecar_path(path).is_file() or \
        read_sidecar(path, verify_hash=False).backend in ("onnxruntime", "openvino")
    cpu = cpu_file and device != "cuda"
    return load(path, **({"threads": threads} if cpu else {}), **({"device": device} if device else {}))
