"""The timing loop: warm-up (excluded), then timed iterations over inputs rotated across several buffers.

Scopes, as trtexec splits them:
- host: ``time.perf_counter`` around ``infer(batch)`` with the batch in host memory; ``infer`` returns host
  results, so the interval holds host-to-device copy, compute, device-to-host copy and the runner's overhead.
- device compute (TensorRT): the runner records CUDA events on its own stream around the engine run, with the
  batch already on the GPU: the GPU work only, as trtexec's "GPU Compute Time".
- GPU-resident (other GPU runners): CUDA events on the caller's stream around ``infer(batch)`` with the batch
  already on the GPU. Those runners work on streams of their own and synchronize before returning, so the interval
  also holds their host-side work: no host copies, but not pure device compute either.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rtresnet.errors import RtresnetError

DEFAULT_WARMUP_ITERS = 3
DEFAULT_DURATION_S = 3.0

HOST_SCOPE = "end-to-end, host to host: input in host memory -> logits in host memory (copies included)"
DEVICE_SCOPES = {
    "compute": "device compute: input already on the GPU, CUDA events on the runner's own stream around the engine "
               "run (no copies, no host overhead)",
    "gpu-resident": "GPU-resident input: CUDA events on the caller's stream around infer() (no host copies, but the "
                    "runner's host work and synchronization count: not pure device compute)",
}


@dataclass(frozen=True)
class TimingConfig:
    """How long to warm up and to measure. Give iterations or seconds for each; both unset means 3 warm-up
    iterations and 3 s of timed iterations (at least ``min_iters``)."""

    warmup_iters: int | None = None
    warmup_s: float | None = None
    iters: int | None = None
    duration_s: float | None = None
    min_iters: int = 5
    buffers: int = 4  # distinct input batches the timed loop cycles through

    def __post_init__(self) -> None:
        if self.warmup_iters is not None and self.warmup_s is not None:
            raise RtresnetError("give either warm-up iterations or warm-up seconds, not both")
        if self.iters is not None and self.duration_s is not None:
            raise RtresnetError("give either timed iterations or a duration in seconds, not both")
        for name in ("warmup_iters", "warmup_s", "duration_s"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise RtresnetError(f"{name.replace('_', '-')} must not be negative, got {value}")
        if self.iters is not None and self.iters < 1:
            raise RtresnetError(f"iterations must be at least 1, got {self.iters}")
        if self.min_iters < 1 or self.buffers < 1:
            raise RtresnetError("min iterations and buffers must be at least 1")

    def describe(self) -> str:
        warm = (f"{self.warmup_s:g} s" if self.warmup_s is not None
                else f"{DEFAULT_WARMUP_ITERS if self.warmup_iters is None else self.warmup_iters} iterations")
        timed = (f"{self.iters} iterations" if self.iters is not None else
                 f"{DEFAULT_DURATION_S if self.duration_s is None else self.duration_s:g} s "
                 f"(at least {self.min_iters} iterations)")
        return f"warm-up {warm} (excluded), timed {timed}, inputs rotated over {self.buffers} buffers"


@dataclass(frozen=True)
class TimingResult:
    samples_ms: tuple[float, ...]  # one latency per timed iteration
    warmup_iters: int


def _warm_up(step: Callable[[int], Any], config: TimingConfig) -> int:
    if config.warmup_s is not None:
        end, i = time.perf_counter() + config.warmup_s, 0
        while i == 0 or time.perf_counter() < end:  # at least one call: first-run setup must never be timed
            step(i)
            i += 1
        return i
    n = DEFAULT_WARMUP_ITERS if config.warmup_iters is None else config.warmup_iters
    for i in range(n):
        step(i)
    return n


def _timed(measure: Callable[[int], float], config: TimingConfig) -> list[float]:
    if config.iters is not None:
        return [measure(i) for i in range(config.iters)]
    duration = DEFAULT_DURATION_S if config.duration_s is None else config.duration_s
    samples: list[float] = []
    end = time.perf_counter() + duration
    while len(samples) < config.min_iters or time.perf_counter() < end:
        samples.append(measure(len(samples)))
    return samples


def time_host(infer: Callable[[Any], Any], buffers: Sequence[Any], config: TimingConfig) -> TimingResult:
    """Time ``infer`` host to host. ``infer`` must return only once its result is in host memory."""
    if not buffers:
        raise RtresnetError("no input buffers to time with")
    warm = _warm_up(lambda i: infer(buffers[i % len(buffers)]), config)

    def measure(i: int) -> float:
        batch = buffers[i % len(buffers)]
        t0 = time.perf_counter()
        infer(batch)
        return (time.perf_counter() - t0) * 1e3

    return TimingResult(samples_ms=tuple(_timed(measure, config)), warmup_iters=warm)


def time_compute(infer: Callable[[Any], Any], compute_ms: Callable[[], float | None], buffers: Sequence[Any],
                 config: TimingConfig) -> TimingResult:
    """Time the device compute of ``infer`` on GPU-resident ``buffers`` as the runner measures it: ``compute_ms()``
    after each call (``TrtRunner.last_compute_ms``: CUDA events on its own stream around the engine run)."""
    if not buffers:
        raise RtresnetError("no input buffers to time with")
    warm = _warm_up(lambda i: infer(buffers[i % len(buffers)]), config)

    def measure(i: int) -> float:
        infer(buffers[i % len(buffers)])
        ms = compute_ms()
        if ms is None:
            raise RtresnetError("the runner recorded no compute time; turn its timing on (time_compute())")
        return float(ms)

    return TimingResult(samples_ms=tuple(_timed(measure, config)), warmup_iters=warm)


def time_device(infer: Callable[[Any], Any], buffers: Sequence[Any], config: TimingConfig) -> TimingResult:
    """Time ``infer`` on GPU-resident ``buffers`` (torch CUDA tensors) with CUDA events on the current stream (the
    "gpu-resident" scope: the runner's own host work counts)."""
    import torch

    if not buffers:
        raise RtresnetError("no input buffers to time with")
    warm = _warm_up(lambda i: infer(buffers[i % len(buffers)]), config)
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def measure(i: int) -> float:
        stream = torch.cuda.current_stream()
        start.record(stream)
        infer(buffers[i % len(buffers)])
        stop.record(stream)
        stop.synchronize()
        return float(start.elapsed_time(stop))

    return TimingResult(samples_ms=tuple(_timed(measure, config)), warmup_iters=warm)
