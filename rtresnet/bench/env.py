"""The environment block every bench report carries: machine, threads used, library versions, date."""

from __future__ import annotations

import platform
from datetime import datetime, timezone

from rtresnet.environment import cpu_info, gpu_info, versions


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def environment_block(threads: int) -> dict:
    """CPU model and ISA flags, cores and threads used, GPU and driver, versions (torch, onnxruntime, TensorRT,
    rtresnet...), OS; ``threads`` is what the benchmark set for PyTorch and onnxruntime."""
    return {"cpu": cpu_info(), "threads": threads, "gpu": gpu_info(), "versions": versions(),
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version()}
