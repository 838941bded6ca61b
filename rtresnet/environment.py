"""Facts about the machine, for engine sidecars, `doctor` and benchmark reports.

TensorRT's version is read from package metadata, never by importing it (only the TensorRT modules import it).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path


def rtresnet_home() -> Path:
    """Where rtresnet caches downloads, the digits checkpoint and calibration ranges ($RTRESNET_HOME)."""
    return Path(os.environ.get("RTRESNET_HOME") or "~/.cache/rtresnet").expanduser()


# ISA features that decide which onnxruntime CPU kernels run (VNNI and AMX make INT8 fast).
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
             "amx_tile", "amx_int8", "amx_bf16", "asimd", "sve")


def package_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def tensorrt_version() -> str | None:
    """Version of an installed TensorRT Python package, or None; does not import it."""
    if importlib.util.find_spec("tensorrt") is None:
        return None
    for dist in ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt_cu13", "tensorrt_cu12",
                 "tensorrt-cu13-bindings", "tensorrt-cu12-bindings"):
        if v := package_version(dist):
            return v
    return "unknown"


@lru_cache(maxsize=1)
def cpu_info() -> dict:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {"model": model, "arch": platform.machine(), "logical_cores": os.cpu_count() or 1,
            "usable_cores": usable, "isa": [f for f in ISA_FLAGS if f in flags]}


@lru_cache(maxsize=16)
def gpu_info(index: int = 0) -> dict | None:
    """CUDA GPU ``index`` as PyTorch sees it (name, compute capability, memory, driver), or None when there is no
    such GPU."""
    try:
        import torch

        if not torch.cuda.is_available() or not 0 <= index < torch.cuda.device_count():
            return None
        props = torch.cuda.get_device_properties(index)
        info = {"name": props.name, "compute_capability": f"{props.major}.{props.minor}",
                "memory_gib": round(props.total_memory / 2**30, 1), "cuda_version": torch.version.cuda,
                "driver": None, "count": torch.cuda.device_count()}
    except Exception:  # a broken CUDA install must not break CPU paths
        return None
    if smi := shutil.which("nvidia-smi"):
        try:
            out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],  # one driver for all
                                 capture_output=True, text=True, timeout=10)
            info["driver"] = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout else None
        except (OSError, subprocess.SubprocessError, IndexError):
            pass
    return info


def versions() -> dict[str, str | None]:
    from rtresnet import __version__

    return {"rtresnet": __version__, "python": platform.python_version(), "torch": package_version("torch"),
            "onnx": package_version("onnx"),
            "onnxruntime": package_version("onnxruntime") or package_version("onnxruntime-gpu"),
            "tensorrt": tensorrt_version(), "numpy": package_version("numpy")}
