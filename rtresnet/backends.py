"""One backend vocabulary and one availability check, for doctor, engine builds, the runtime and bench.

A backend is a runtime on a device: ``torch``, ``torch-cuda``, ``onnxruntime``, ``onnxruntime-cuda``,
``onnxruntime-tensorrt`` (onnxruntime's TensorRT execution provider), ``openvino`` (CPU, an optional extra) and
``tensorrt``. The runtimes are the names
``rtresnet.runtime.load(backend=...)`` and sidecars use; the engine backends are what ``rtresnet build`` makes.
``backend_status(name)`` says whether this machine can run one and, when not, what to install. TensorRT is
detected from package metadata, never imported here.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from dataclasses import dataclass
from typing import Any, Literal

from rtresnet import environment  # module access: tests and callers may swap its probes

log = logging.getLogger(__name__)

Runtime = Literal["torch", "onnxruntime", "openvino", "tensorrt"]
RUNTIMES: tuple[str, ...] = ("torch", "onnxruntime", "openvino", "tensorrt")
EngineBackend = Literal["tensorrt", "onnxruntime", "openvino"]


@dataclass(frozen=True)
class EngineKind:
    """How one engine backend is built and run. ``builder``: a module with ``target()`` (what the engine binds to on
    this machine), ``flags(request)`` (options that change the engine bytes), ``name_parts(request)`` (default file
    name), ``build(request, path)`` and ``describe(sidecar)``. ``runner``: "module:Class" with
    ``from_engine(path, sidecar, device=..., **options)``. ``int8_target``: the Q/DQ layout it consumes.
    ``cpu_key``: the CPU facts (``environment.cpu_info`` keys) an engine is bound to, part of its cache key: an
    onnxruntime engine runs on any CPU of its architecture, an OpenVINO blob is compiled for one CPU's ISA."""

    builder: str
    runner: str
    int8_target: str
    cpu_key: tuple[str, ...] = ("arch",)


# Adding an engine backend: one entry here (plus its branch of backend_status below), its builder, its runner.
ENGINE_KINDS: dict[str, EngineKind] = {
    "tensorrt": EngineKind("rtresnet.engine.trt", "rtresnet.runtime.trt_runner:TrtRunner", "tensorrt"),
    "onnxruntime": EngineKind("rtresnet.engine.ort", "rtresnet.runtime.ort_runner:OrtRunner", "cpu"),
    "openvino": EngineKind("rtresnet.engine.openvino", "rtresnet.runtime.openvino_runner:OpenVinoRunner", "cpu",
                           cpu_key=("model", "arch", "isa")),
}
CPU_ENGINE_BACKENDS: tuple[str, ...] = ("onnxruntime", "openvino")  # what `--backend auto` measures on a CPU
ENGINE_BACKENDS: tuple[str, ...] = tuple(ENGINE_KINDS)  # what `build` produces
BUILD_BACKENDS: tuple[str, ...] = ("auto", *ENGINE_BACKENDS)


def engine_builder(backend: str) -> Any:
    """The builder module of engine backend ``backend`` (imported on first use: tensorrt's only when asked)."""
    return importlib.import_module(ENGINE_KINDS[backend].builder)


def engine_runner(backend: str) -> Any:
    """The runner class that loads ``backend``'s engines."""
    module, cls = ENGINE_KINDS[backend].runner.split(":")
    return getattr(importlib.import_module(module), cls)

GPU_EXTRA = "pip install 'rtresnet[gpu]'"
OPENVINO_EXTRA = "pip install 'rtresnet[openvino]'"
# onnxruntime and onnxruntime-gpu install the same `onnxruntime` module: one must go before the other comes.
ORT_GPU_SWITCH = f"pip uninstall -y onnxruntime onnxruntime-gpu && {GPU_EXTRA}"
TORCH_CUDA_HINT = "install a CUDA build of PyTorch, e.g. pip install torch --index-url https://download.pytorch.org/whl/cu128"
NO_GPU_FIX = "run on a machine with an NVIDIA GPU and driver (check nvidia-smi)"


@dataclass(frozen=True)
class Backend:
    name: str
    runtime: Runtime
    device: str  # "cpu" | "cuda"
    provider: str | None = None  # onnxruntime's execution provider


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("torch", "torch", "cpu"),
    Backend("torch-cuda", "torch", "cuda"),
    Backend("onnxruntime", "onnxruntime", "cpu", "CPUExecutionProvider"),
    Backend("onnxruntime-cuda", "onnxruntime", "cuda", "CUDAExecutionProvider"),
    Backend("onnxruntime-tensorrt", "onnxruntime", "cuda", "TensorrtExecutionProvider"),
    Backend("openvino", "openvino", "cpu"),
    Backend("tensorrt", "tensorrt", "cuda"),
)}


def backend_name(runtime: str, device: str) -> str:
    """The vocabulary's name for ``runtime`` on ``device`` (cpu, cuda[:N], or tensorrt[:N]: onnxruntime's EP)."""
    kind = device.split(":")[0]
    if runtime == "tensorrt":
        return "tensorrt"
    if kind == "tensorrt":
        return f"{runtime}-tensorrt"
    return f"{runtime}-cuda" if kind == "cuda" else runtime


@dataclass(frozen=True)
class BackendStatus:
    name: str
    usable: bool
    detail: str  # version and device when usable, what is missing otherwise
    fix: str | None = None  # the command or step that makes it usable

    def __bool__(self) -> bool:
        return self.usable


@dataclass(frozen=True)
class MachineFacts:
    """What the checks read, gathered once (doctor shows them too)."""

    torch: str | None
    torch_cuda: str | None  # CUDA version PyTorch was built with; None for CPU builds
    onnxruntime_package: str | None  # "onnxruntime" | "onnxruntime-gpu" | "onnxruntime + onnxruntime-gpu"
    ort_providers: tuple[str, ...]
    tensorrt: str | None
    gpu: dict | None  # environment.gpu_info()
    openvino: str | None = None


def machine_facts() -> MachineFacts:
    torch_version, torch_cuda = _torch_versions()
    ort_cpu, ort_gpu = environment.package_version("onnxruntime"), environment.package_version("onnxruntime-gpu")
    package = " + ".join(n for n, v in (("onnxruntime", ort_cpu), ("onnxruntime-gpu", ort_gpu)) if v) or None
    return MachineFacts(torch_version, torch_cuda, package, _ort_providers(), environment.tensorrt_version(),
                        environment.gpu_info(), environment.package_version("openvino"))


def backend_status(name: str, facts: MachineFacts | None = None) -> BackendStatus:
    """Whether this machine can run backend ``name``, and when not, what is missing and how to fix it."""
    if name not in BACKENDS:
        from rtresnet.errors import UsageError

        raise UsageError(f"unknown backend {name!r}; use one of {', '.join(BACKENDS)}")
    backend, facts = BACKENDS[name], facts or machine_facts()
    if backend.runtime == "torch":
        return _torch(name, facts) if backend.device == "cpu" else _torch_cuda(name, facts)
    if backend.runtime == "onnxruntime":
        return _onnxruntime(name, backend.provider or "CPUExecutionProvider", facts)
    if backend.runtime == "openvino":
        return _openvino(name, facts)
    return _tensorrt(name, facts)


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


def _gpu_text(gpu: dict) -> str:
    return f"{gpu['name']} (sm {gpu['compute_capability']})"


def _torch(name: str, facts: MachineFacts) -> BackendStatus:
    if facts.torch is None:
        return BackendStatus(name, False, "torch is not installed", "pip install torch")
    import torch

    return BackendStatus(name, True, f"torch {facts.torch}, {torch.get_num_threads()} threads")


def _torch_cuda(name: str, facts: MachineFacts) -> BackendStatus:
    if facts.torch is None:
        return BackendStatus(name, False, "torch is not installed", TORCH_CUDA_HINT)
    if facts.torch_cuda is None:
        return BackendStatus(name, False, f"torch {facts.torch} is a CPU-only build", TORCH_CUDA_HINT)
    if facts.gpu is None:
        return BackendStatus(name, False, f"torch {facts.torch} (CUDA {facts.torch_cuda}) sees no GPU",
                             "check the NVIDIA driver with nvidia-smi and CUDA_VISIBLE_DEVICES")
    return BackendStatus(name, True, f"{_gpu_text(facts.gpu)}, CUDA {facts.torch_cuda}")


def _onnxruntime(name: str, provider: str, facts: MachineFacts) -> BackendStatus:
    package = facts.onnxruntime_package
    if package is None:
        fix = "pip install onnxruntime" if provider == "CPUExecutionProvider" else GPU_EXTRA
        return BackendStatus(name, False, "onnxruntime is not installed", fix)
    if provider not in facts.ort_providers:
        if "gpu" not in package:
            return BackendStatus(name, False, f"{package} is the CPU build (no {provider})", ORT_GPU_SWITCH)
        return BackendStatus(name, False, f"{package} does not offer {provider}", ORT_GPU_SWITCH)
    if provider == "CPUExecutionProvider":
        return BackendStatus(name, True, f"{package} {environment.package_version(package.split(' ')[0])}")
    if facts.gpu is None:
        return BackendStatus(name, False, f"{provider} is built in but no CUDA GPU is visible", NO_GPU_FIX)
    if provider == "TensorrtExecutionProvider" and facts.tensorrt is None:
        return BackendStatus(name, False, f"{provider} is built in but the TensorRT libraries are not installed",
                             GPU_EXTRA)
    error = _ort_session_error(provider)
    if error:
        return BackendStatus(name, False, f"{provider} is built in but does not load: {error}",
                             GPU_EXTRA if provider == "TensorrtExecutionProvider" else
                             "install the CUDA and cuDNN libraries matching onnxruntime-gpu (see its install docs)")
    return BackendStatus(name, True, f"{provider} on {facts.gpu['name']}")


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


def _openvino(name: str, facts: MachineFacts) -> BackendStatus:
    if facts.openvino is None:
        return BackendStatus(name, False, "OpenVINO is not installed (optional)", OPENVINO_EXTRA)
    return BackendStatus(name, True, f"OpenVINO {facts.openvino} on {environment.cpu_info()['model']}")


def _tensorrt(name: str, facts: MachineFacts) -> BackendStatus:
    missing = (["TensorRT is not installed"] if facts.tensorrt is None else []) + \
        (["no CUDA GPU is visible to PyTorch"] if facts.gpu is None else [])
    if missing:
        return BackendStatus(name, False, " and ".join(missing), GPU_EXTRA if facts.tensorrt is None else NO_GPU_FIX)
    return BackendStatus(name, True, f"TensorRT {facts.tensorrt} on {_gpu_text(facts.gpu)}")
