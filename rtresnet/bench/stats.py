"""Latency statistics built from samples in one place.

Percentiles use the nearest-rank method, as trtexec does: the p-th percentile of n sorted samples is the sample at
rank ceil(p/100 * n) (1-based), so every reported percentile is a latency that was actually observed. The median is
the usual one (mean of the two middle samples for even n). ``std`` is the population standard deviation and ``cov``
(coefficient of variation) is std / mean.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from rtresnet.errors import RtresnetError

# Above this coefficient of variation a run is flagged as unstable (trtexec warns at 1 %; CPU runs shared with
# other processes are rarely that quiet, so the bar is set where the numbers start to mislead).
UNSTABLE_COV = 0.10


def percentile_nearest_rank(sorted_samples: list[float], p: float) -> float:
    """The p-th percentile (0 < p <= 100) of already sorted samples, nearest-rank method."""
    if not sorted_samples:
        raise RtresnetError("no latency samples to summarize; run at least one timed iteration")
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    rank = math.ceil(p / 100 * len(sorted_samples))
    return sorted_samples[max(rank, 1) - 1]


@dataclass(frozen=True)
class LatencyStats:
    samples: int
    latency_ms_min: float
    latency_ms_mean: float
    latency_ms_median: float
    latency_ms_p90: float
    latency_ms_p95: float
    latency_ms_p99: float
    latency_ms_max: float
    latency_ms_std: float
    cov: float  # std / mean (0.05 = 5 %)

    @classmethod
    def from_samples(cls, samples_ms: Iterable[float]) -> LatencyStats:
        xs = sorted(float(x) for x in samples_ms)
        if not xs:
            raise RtresnetError("no latency samples to summarize; run at least one timed iteration")
        if any(not math.isfinite(x) or x < 0 for x in xs):
            raise ValueError("latency samples must be finite and non-negative")
        n = len(xs)
        mean = math.fsum(xs) / n
        std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / n)
        mid = n // 2
        median = xs[mid] if n % 2 else (xs[mid - 1] + xs[mid]) / 2
        return cls(samples=n, latency_ms_min=xs[0], latency_ms_mean=mean, latency_ms_median=median,
                   latency_ms_p90=percentile_nearest_rank(xs, 90), latency_ms_p95=percentile_nearest_rank(xs, 95),
                   latency_ms_p99=percentile_nearest_rank(xs, 99), latency_ms_max=xs[-1], latency_ms_std=std,
                   cov=std / mean if mean > 0 else 0.0)

    @property
    def unstable(self) -> bool:
        return self.cov > UNSTABLE_COV

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LatencyStats:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})
