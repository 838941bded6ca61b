"""Peak memory of one backend inside a process that runs several.

Host: freed heap pages are first handed back to the OS (malloc_trim), then the RSS just before the backend is
loaded is the floor; the peak RSS while it is loaded, warmed up and timed, minus that floor, is the backend's
figure. On Linux the kernel's own high-water mark (VmHWM) is reset through /proc/self/clear_refs before each
backend, so no peak between samples is missed; where that is not allowed, RSS is sampled every few milliseconds
by a thread instead.
GPU: device memory in use (cudaMemGetInfo, which sees every library's allocations, not only PyTorch's) is sampled
by a thread; the figure is the peak minus the usage before loading.
"""

from __future__ import annotations

import gc
import os
import re
import threading
from dataclasses import dataclass

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_SAMPLE_S = 0.01
METHOD_HWM = ("host: peak RSS (kernel VmHWM, reset via /proc/self/clear_refs before each backend) minus the RSS "
              "before the backend was loaded (after malloc_trim returned freed heap to the OS); covers load, "
              "warm-up and timed runs")
METHOD_SAMPLED = ("host: peak of RSS sampled every 10 ms minus the RSS before the backend was loaded (after "
                  "malloc_trim returned freed heap to the OS); covers load, warm-up and timed runs")
METHOD_GPU = "GPU: peak device memory in use (sampled every 10 ms) minus the usage before the backend was loaded"


def rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def _hwm_bytes() -> int | None:
    try:
        with open("/proc/self/status") as f:
            m = re.search(r"^VmHWM:\s+(\d+)\s+kB", f.read(), re.MULTILINE)
        return int(m.group(1)) * 1024 if m else None
    except OSError:
        return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _hwm_bytes() is not None
    except OSError:
        return False


def release_free_heap() -> None:
    """Hand freed heap pages back to the OS (glibc ``malloc_trim``). Without it, memory a previous backend freed
    stays resident, the next backend reuses it, and its RSS barely moves: the floor would be meaningless."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the figure is then a lower bound
        pass


def _gpu_used_bytes() -> int | None:
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        free, total = torch.cuda.mem_get_info()
        return total - free
    except Exception:  # a broken CUDA setup must not break a CPU benchmark
        return None


def memory_method(gpu: bool) -> str:
    host = METHOD_HWM if _reset_hwm() else METHOD_SAMPLED
    return f"{host}; {METHOD_GPU}" if gpu else host


@dataclass(frozen=True)
class MemoryPeak:
    peak_rss_mib: float | None
    peak_gpu_mib: float | None


class PeakMemory:
    """``with PeakMemory(gpu=...) as m: ...`` then ``m.result()``."""

    def __init__(self, gpu: bool = False) -> None:
        self._gpu = gpu
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._use_hwm = False
        self._rss_before = self._gpu_before = None
        self._rss_peak = self._gpu_peak = 0

    def __enter__(self) -> PeakMemory:
        gc.collect()
        release_free_heap()
        self._rss_before = rss_bytes()
        self._use_hwm = self._rss_before is not None and _reset_hwm()
        self._gpu_before = _gpu_used_bytes() if self._gpu else None
        self._rss_peak = self._rss_before or 0
        self._gpu_peak = self._gpu_before or 0
        if (self._rss_before is not None and not self._use_hwm) or self._gpu_before is not None:
            self._thread = threading.Thread(target=self._sample, name="bench-memory", daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(_SAMPLE_S):
            self._take_sample()

    def _take_sample(self) -> None:
        if not self._use_hwm and (rss := rss_bytes()) is not None:
            self._rss_peak = max(self._rss_peak, rss)
        if self._gpu_before is not None and (used := _gpu_used_bytes()) is not None:
            self._gpu_peak = max(self._gpu_peak, used)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._take_sample()
        if self._use_hwm and (hwm := _hwm_bytes()) is not None:
            self._rss_peak = max(self._rss_peak, hwm)

    def result(self) -> MemoryPeak:
        rss = None if self._rss_before is None else max(self._rss_peak - self._rss_before, 0) / 2**20
        gpu = None if self._gpu_before is None else max(self._gpu_peak - self._gpu_before, 0) / 2**20
        return MemoryPeak(peak_rss_mib=rss, peak_gpu_mib=gpu)
