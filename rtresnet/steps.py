"""Wall time per pipeline step of one command, for its closing line (`done in 9.2 s: calibrate 4.9, quantize 2.1`).

Library stages wrap their work in ``with step("calibrate"):``; the CLI opens a ``record()`` around each command.
Outside a recording ``step`` costs one context-variable lookup. Times are exclusive: a step nested in another
is taken out of the outer one, so the parts add up to at most the total.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class StepTimes:
    started: float = field(default_factory=time.perf_counter)
    seconds: dict[str, float] = field(default_factory=dict)  # step name -> exclusive seconds, in first-seen order
    _stack: list[list[float]] = field(default_factory=list)  # per open step: [start, seconds of nested steps]

    @property
    def total_s(self) -> float:
        return time.perf_counter() - self.started

    def summary(self) -> str:
        """'done in 9.2 s: calibrate 4.9, quantize 2.1' (steps under 0.05 s left out)."""
        parts = [f"{name} {s:.1f}" for name, s in self.seconds.items() if s >= 0.05]
        return f"done in {self.total_s:.1f} s" + (f": {', '.join(parts)}" if parts else "")


_current: ContextVar[StepTimes | None] = ContextVar("rtresnet_steps", default=None)


@contextmanager
def record() -> Iterator[StepTimes]:
    """Collect the steps run inside this block (one command)."""
    times = StepTimes()
    token = _current.set(times)
    try:
        yield times
    finally:
        _current.reset(token)


@contextmanager
def step(name: str) -> Iterator[None]:
    times = _current.get()
    if times is None:
        yield
        return
    frame = [time.perf_counter(), 0.0]
    times._stack.append(frame)
    try:
        yield
    finally:
        times._stack.pop()
        elapsed = time.perf_counter() - frame[0]
        times.seconds[name] = times.seconds.get(name, 0.0) + elapsed - frame[1]
        if times._stack:
            times._stack[-1][1] += elapsed
