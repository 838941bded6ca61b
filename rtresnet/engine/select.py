"""``--backend auto`` on a CPU: the fastest engine for this machine, measured, not guessed.

Every CPU engine backend installed (onnxruntime; OpenVINO with the ``openvino`` extra) is built from the same ONNX,
then each candidate (backend x intra-op threads) is timed on this machine at the profile's opt batch, in blocks
round-robin over a few rounds (one runtime's idle worker threads then disturb only the first call of the next
block, never the timed ones). The lowest median latency wins; every candidate's figures go into the sidecar
(``selection``) with the runner settings that won, which ``rtresnet.runtime.load`` applies by default.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass

import numpy as np

from rtresnet.backends import CPU_ENGINE_BACKENDS, backend_status

log = logging.getLogger(__name__)

ROUNDS = 3
BLOCK_RUNS, BLOCK_SECONDS, BLOCK_MAX_RUNS = 3, 0.25, 25  # per block: at least 3 runs and 0.25 s, at most 25 runs
METRIC = "p50_ms"


@dataclass(frozen=True)
class Candidate:
    backend: str
    threads: int

    @property
    def label(self) -> str:
        return f"{self.backend} ({self.threads} thread{'s' if self.threads != 1 else ''})"


def cpu_backends() -> tuple[str, ...]:
    """The CPU engine backends this machine can build (onnxruntime always; OpenVINO where installed)."""
    return tuple(b for b in CPU_ENGINE_BACKENDS if backend_status(b))


def thread_counts(usable_cores: int) -> tuple[int, ...]:
    """Every usable core, and half of them where that can win (one thread per physical core on SMT machines,
    memory-bound layers); on fewer than 4 cores half the cores only loses."""
    return (usable_cores, usable_cores // 2) if usable_cores >= 4 else (usable_cores,)


def candidates(backends: tuple[str, ...], usable_cores: int) -> list[Candidate]:
    return [Candidate(b, t) for b in backends for t in thread_counts(usable_cores)]


def measure(runners: dict[Candidate, object], x: np.ndarray, rounds: int = ROUNDS) -> dict[Candidate, list[float]]:
    """Latencies (ms) of ``runner.infer(x)`` per candidate: blocks round-robin, one untimed call opening each block."""
    times: dict[Candidate, list[float]] = {c: [] for c in runners}
    for _ in range(rounds):
        for c, runner in runners.items():
            runner.infer(x)  # wakes this runtime's threads; the previous runtime's spin-down is not timed
            start, block = time.perf_counter(), []
            while len(block) < BLOCK_MAX_RUNS and (len(block) < BLOCK_RUNS or
                                                   time.perf_counter() - start < BLOCK_SECONDS):
                t0 = time.perf_counter()
                runner.infer(x)
                block.append((time.perf_counter() - t0) * 1e3)
            times[c] += block
    return times


def selection_record(times: dict[Candidate, list[float]], batch: int, chosen: Candidate) -> dict:
    """What the sidecar keeps: each candidate's median and spread, and the winner with its runner settings."""
    def row(c: Candidate) -> dict:
        t = sorted(times[c])
        return {"backend": c.backend, "threads": c.threads, METRIC: round(statistics.median(t), 3),
                "p90_ms": round(t[min(len(t) - 1, int(0.9 * len(t)))], 3), "runs": len(t)}

    from rtresnet.environment import cpu_info

    return {"metric": METRIC, "batch": batch, "rounds": ROUNDS, "cpu": cpu_info()["model"],
            "candidates": [row(c) for c in times], "chosen": {"backend": chosen.backend, "threads": chosen.threads}}


def fastest(times: dict[Candidate, list[float]]) -> Candidate:
    return min(times, key=lambda c: statistics.median(times[c]))


def describe(selection: dict) -> str:
    """'picked openvino (2 threads): p50 8.1 ms at batch 1; onnxruntime (2 threads) 9.2 ms' (a hand-edited record
    that does not read so says that instead)."""
    try:
        return _describe(selection)
    except (KeyError, TypeError, ValueError, StopIteration, AttributeError):
        return "the sidecar's measurement record is malformed (rebuild with --force to measure again)"


def _describe(selection: dict) -> str:
    chosen = selection["chosen"]
    rows = selection["candidates"]
    win = next(r for r in rows if (r["backend"], r["threads"]) == (chosen["backend"], chosen["threads"]))
    others = "; ".join(f"{Candidate(r['backend'], r['threads']).label} {r[METRIC]:.2f} ms" for r in rows
                       if r is not win)
    text = (f"picked {Candidate(win['backend'], win['threads']).label}: p50 {win[METRIC]:.2f} ms at batch "
            f"{selection['batch']}")
    return f"{text}; {others}" if others else text


def runner_defaults(selection: dict | None) -> dict:
    """The runner options the measurement chose (``load`` applies them unless the caller gives its own)."""
    if not isinstance(selection, dict) or not isinstance(selection.get("chosen"), dict):
        return {}
    threads = selection["chosen"].get("threads")
    return {"threads": threads} if isinstance(threads, int) and not isinstance(threads, bool) and threads > 0 else {}
