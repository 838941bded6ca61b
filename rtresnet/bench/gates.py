"""Accuracy gates for CI: ``--min-top1`` (percent) and ``--max-top1-drop`` (percentage points vs PyTorch FP32)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from rtresnet.bench.results import BackendResult, GateFailure
from rtresnet.errors import RtresnetError

log = logging.getLogger(__name__)


def validate_gates(min_top1: float | None, max_top1_drop: float | None) -> None:
    if min_top1 is not None and not 1 < min_top1 <= 100:
        hint = f" (did you mean {min_top1 * 100:g}?)" if 0 < min_top1 <= 1 else ""
        raise RtresnetError(f"--min-top1 is a percentage between 1 and 100, got {min_top1}{hint}")
    if max_top1_drop is not None and not 0 <= max_top1_drop <= 100:
        raise RtresnetError(f"--max-top1-drop is in percentage points (0-100), got {max_top1_drop}")


def check_gates(results: Sequence[BackendResult], min_top1: float | None,
                max_top1_drop: float | None) -> tuple[GateFailure, ...]:
    """Backends that miss a gate. The baseline rows (``BackendResult.baseline``) are not gated: the gates are about
    what deployment costs against them. A backend that failed counts as missing it; one that is unavailable on this
    machine (no GPU, no TensorRT) is skipped with a warning, since CI decides which machines run which backends."""
    if min_top1 is None and max_top1_drop is None:
        return ()
    failures: list[GateFailure] = []
    gated = [r for r in results if not r.baseline]  # the baseline is the yardstick, not a candidate
    if not gated:
        log.warning("--min-top1/--max-top1-drop gate nothing: every row is the baseline; add backends to compare")
    for r in gated:
        if r.status == "unavailable":
            log.warning("gate skipped for %s: %s", r.name, r.reason)
            continue
        threshold = min_top1 if min_top1 is not None else max_top1_drop
        if not r.ok or r.accuracy is None or r.accuracy.top1_pct is None:
            failures.append(GateFailure(r.name, "status", None, float(threshold),  # type: ignore[arg-type]
                                        f"{r.name} has no top-1 figure ({r.reason or 'no accuracy measured'})"))
            continue
        top1, drop = r.accuracy.top1_pct, r.accuracy.top1_drop_pts
        if min_top1 is not None and top1 < min_top1:
            failures.append(GateFailure(r.name, "top1_pct", top1, min_top1,
                                        f"{r.name} top-1 {top1:.2f}% < --min-top1 {min_top1:g}%"))
        if max_top1_drop is not None and drop is not None and drop > max_top1_drop:
            failures.append(GateFailure(r.name, "top1_drop_pts", drop, max_top1_drop,
                                        f"{r.name} top-1 drop {drop:.2f} pts > --max-top1-drop {max_top1_drop:g}"))
    return tuple(failures)
