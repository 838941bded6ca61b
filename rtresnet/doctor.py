"""`rtresnet doctor`: what this machine can run, and for each backend that cannot, what to install.

A missing GPU backend is a status with a reason, never an error. TensorRT is detected from package metadata and
never imported here (only the TensorRT builder and runner import it).
"""

from __future__ import annotations

import logging
import platform
import warnings
from dataclasses import asdict, dataclass

from rtresnet.environment import cpu_info, gpu_info, package_version, tensorrt_version

log = logging.getLogger(__name__)

GPU_EXTRA = "pip install 'rtresnet[gpu]'"
# onnxruntime and onnxruntime-gpu install the same `onnxruntime` module: one must go before the other comes.
ORT_GPU_SWITCH = f"pip uninstall -y onnxruntime onnxruntime-gpu && {GPU_EXTRA}"
TORCH_CUDA_HINT = "install a CUDA build of PyTorch, e.g. pip install torch --index-url https://download.pytorch.org/whl/cu128"
BACKENDS = ("pytorch-cpu", "pytorch-cuda", "onnxruntime-cpu", "onnxruntime-cuda", "onnxruntime-tensorrt", "tensorrt")


@dataclass(frozen=True)
class BackendStatus:
    name: str
    usable: bool
    detail: str  # version and device when usable, what is missing otherwise
    fix: str | None = None  # the command or step that makes it usable


@dataclass(frozen=True)
class GpuReport:
    name: str
    compute_capability: str
    memory_gib: float
    cuda_version: str | None
    driver: str | None
    count: int


@dataclass(frozen=True)
class CpuReport:
    model: str
    arch: str
    logical_cores: int
    usable_cores: int
    isa: tuple[str, ...]


@dataclass(frozen=True)
class DoctorReport:
    rtresnet: str
    python: str
    platform: str
    torch: str | None
    torch_cuda: str | None  # CUDA version PyTorch was built with; None for CPU builds
    onnx: str | None
    onnxruntime: str | None
    onnxruntime_package: str | None  # "onnxruntime" | "onnxruntime-gpu" | "onnxruntime + onnxruntime-gpu"
    ort_providers: tuple[str, ...]
    tensorrt: str | None
    cpu: CpuReport
    gpu: GpuReport | None
    backends: tuple[BackendStatus, ...]
    warnings: tuple[str, ...]

    def backend(self, name: str) -> BackendStatus:
        return next(b for b in self.backends if b.name == name)

    @property
    def usable_backends(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.backends if b.usable)

    def to_dict(self) -> dict:
        return asdict(self)


def diagnose() -> DoctorReport:
    """Inspect Python packages, CPU, GPU and each inference backend."""
    from rtresnet import __version__

    cpu = cpu_info()
    gpu = gpu_info()
    notes: list[str] = []
    torch_version, torch_cuda = _torch_versions()
    ort_cpu, ort_gpu = package_version("onnxruntime"), package_version("onnxruntime-gpu")
    if ort_cpu and ort_gpu:
        notes.append("onnxruntime and onnxruntime-gpu are both installed and overwrite each other's files; "
                     f"keep one: {ORT_GPU_SWITCH}")
    ort_package = " + ".join(n for n, v in (("onnxruntime", ort_cpu), ("onnxruntime-gpu", ort_gpu)) if v) or None
    providers = _ort_providers()
    trt = tensorrt_version()
    gpu_report = GpuReport(**gpu) if gpu else None
    backends = (
        _pytorch_cpu(torch_version),
        _pytorch_cuda(torch_version, torch_cuda, gpu_report),
        _ort_backend("onnxruntime-cpu", "CPUExecutionProvider", providers, gpu_report, ort_package),
        _ort_backend("onnxruntime-cuda", "CUDAExecutionProvider", providers, gpu_report, ort_package),
        _ort_backend("onnxruntime-tensorrt", "TensorrtExecutionProvider", providers, gpu_report, ort_package, trt),
        _tensorrt(trt, gpu_report),
    )
    for b in backends:
        log.debug("backend %s: %s (%s)", b.name, "usable" if b.usable else "unavailable", b.detail)
    return DoctorReport(
        rtresnet=__version__, python=platform.python_version(), platform=platform.platform(terse=True),
        torch=torch_version, torch_cuda=torch_cuda, onnx=package_version("onnx"),
        onnxruntime=ort_cpu or ort_gpu, onnxruntime_package=ort_package, ort_providers=providers, tensorrt=trt,
        cpu=CpuReport(**{**cpu, "isa": tuple(cpu["isa"])}), gpu=gpu_report, backends=backends,
        warnings=tuple(notes))


def _torch_versions() -> tuple[str | None, str | None]:
    try:
        import torch
    except ImportError:
        return None, None
    return torch.__version__, torch.version.cuda


def _ort_providers() -> tuple[str, ...]:
    try:
        import onnxruntime
    except ImportError:
        return ()
    return tuple(onnxruntime.get_available_providers())


def _pytorch_cpu(torch_version: str | None) -> BackendStatus:
    if torch_version is None:
        return BackendStatus("pytorch-cpu", False, "torch is not installed", "pip install torch")
    import torch

    return BackendStatus("pytorch-cpu", True, f"torch {torch_version}, {torch.get_num_threads()} threads")


def _pytorch_cuda(torch_version: str | None, torch_cuda: str | None, gpu: GpuReport | None) -> BackendStatus:
    name = "pytorch-cuda"
    if torch_version is None:
        return BackendStatus(name, False, "torch is not installed", TORCH_CUDA_HINT)
    if torch_cuda is None:
        return BackendStatus(name, False, f"torch {torch_version} is a CPU-only build", TORCH_CUDA_HINT)
    if gpu is None:
        return BackendStatus(name, False, f"torch {torch_version} (CUDA {torch_cuda}) sees no GPU",
                             "check the NVIDIA driver with nvidia-smi and CUDA_VISIBLE_DEVICES")
    return BackendStatus(name, True, f"{gpu.name} (sm {gpu.compute_capability}), CUDA {torch_cuda}")


def _ort_backend(name: str, provider: str, providers: tuple[str, ...], gpu: GpuReport | None,
                 ort_package: str | None, trt: str | None = None) -> BackendStatus:
    if ort_package is None:
        fix = "pip install onnxruntime" if provider == "CPUExecutionProvider" else GPU_EXTRA
        return BackendStatus(name, False, "onnxruntime is not installed", fix)
    if provider not in providers:
        if "gpu" not in ort_package:
            return BackendStatus(name, False, f"{ort_package} is the CPU build (no {provider})", ORT_GPU_SWITCH)
        return BackendStatus(name, False, f"{ort_package} does not offer {provider}", ORT_GPU_SWITCH)
    if provider == "CPUExecutionProvider":
        return BackendStatus(name, True, f"{ort_package} {package_version(ort_package.split(' ')[0])}")
    if gpu is None:
        return BackendStatus(name, False, f"{provider} is built in but no CUDA GPU is visible",
                             "run on a machine with an NVIDIA GPU and driver (check nvidia-smi)")
    if provider == "TensorrtExecutionProvider" and trt is None:
        return BackendStatus(name, False, f"{provider} is built in but the TensorRT libraries are not installed",
                             GPU_EXTRA)
    error = _ort_session_error(provider)
    if error:
        return BackendStatus(name, False, f"{provider} is built in but does not load: {error}",
                             GPU_EXTRA if provider == "TensorrtExecutionProvider" else
                             "install the CUDA and cuDNN libraries matching onnxruntime-gpu (see its install docs)")
    return BackendStatus(name, True, f"{provider} on {gpu.name}")


def _ort_session_error(provider: str) -> str | None:
    """Run a one-node model on ``provider``: onnxruntime lists GPU providers even when their CUDA, cuDNN or
    TensorRT libraries are missing, and then falls back to the CPU silently."""
    import onnxruntime
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "doctor",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4  # the failure is reported below, not as onnxruntime's log spam
    try:
        with warnings.catch_warnings():  # the "fell back" warning is this function's answer, not noise for users
            warnings.simplefilter("ignore")
            session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                                   providers=[provider, "CPUExecutionProvider"])
    except Exception as e:  # provider libraries failing to load surface as assorted exception types
        return str(e).splitlines()[0][:160] if str(e) else type(e).__name__
    return None if provider in session.get_providers() else "onnxruntime fell back to the CPU"


def _tensorrt(trt: str | None, gpu: GpuReport | None) -> BackendStatus:
    if trt is None:
        return BackendStatus("tensorrt", False, "the tensorrt Python package is not installed", GPU_EXTRA)
    if gpu is None:
        return BackendStatus("tensorrt", False, f"TensorRT {trt} is installed but no CUDA GPU is visible",
                             "run on a machine with an NVIDIA GPU and driver (check nvidia-smi)")
    return BackendStatus("tensorrt", True, f"TensorRT {trt} on {gpu.name} (sm {gpu.compute_capability})")
