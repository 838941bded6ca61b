"""`rtresnet doctor`: what this machine can run, and for each backend that cannot, what to install.

A missing GPU backend is a status with a reason, never an error. Every row is ``rtresnet.backends.backend_status``,
the check that engine builds, the runtime and bench use too.
"""

from __future__ import annotations

import logging
import platform
from dataclasses import asdict, dataclass

from rtresnet import environment
from rtresnet.backends import BACKENDS, ORT_GPU_SWITCH, BackendStatus, backend_status, machine_facts

log = logging.getLogger(__name__)


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
    openvino: str | None
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

    facts = machine_facts()
    notes: list[str] = []
    if facts.onnxruntime_package == "onnxruntime + onnxruntime-gpu":
        notes.append("onnxruntime and onnxruntime-gpu are both installed and overwrite each other's files; "
                     f"keep one: {ORT_GPU_SWITCH}")
    backends = tuple(backend_status(name, facts) for name in BACKENDS)
    for b in backends:
        log.debug("backend %s: %s (%s)", b.name, "usable" if b.usable else "unavailable", b.detail)
    cpu = environment.cpu_info()
    ort = environment.package_version("onnxruntime") or environment.package_version("onnxruntime-gpu")
    return DoctorReport(
        rtresnet=__version__, python=platform.python_version(), platform=platform.platform(terse=True),
        torch=facts.torch, torch_cuda=facts.torch_cuda, onnx=environment.package_version("onnx"), onnxruntime=ort,
        onnxruntime_package=facts.onnxruntime_package, ort_providers=facts.ort_providers, openvino=facts.openvino,
        tensorrt=facts.tensorrt,
        cpu=CpuReport(**{**cpu, "isa": tuple(cpu["isa"])}), gpu=GpuReport(**facts.gpu) if facts.gpu else None,
        backends=backends, warnings=tuple(notes))
