"""The environment block every bench report carries: machine, threads used, library versions, date."""

from __future__ import annotations

import os
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


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except (OSError, AttributeError):
        return None


def busy_note(before: tuple[float, float, float] | None, after: tuple[float, float, float] | None,
              cores: int) -> str | None:
    """A warning when other processes competed for the cores: oversubscribed thread pools (OpenMP above all)
    slow down far more than in proportion, so such timings are not comparable with a quiet machine's."""
    loads = [x[0] for x in (before, after) if x is not None]
    if not loads or max(loads) <= cores + 0.5:  # this run itself accounts for up to `cores`
        return None
    return (f"machine busy: 1-minute load average {max(loads):.1f} on {cores} usable cores during the run; "
            f"latencies are inflated (PyTorch's OpenMP threads suffer most) - rerun on an idle machine")
