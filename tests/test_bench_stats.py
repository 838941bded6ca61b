"""Latency statistics, the timing loop and the memory probe of `rtresnet.bench`."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from rtresnet.bench.memory import PeakMemory
from rtresnet.bench.stats import LatencyStats, percentile_nearest_rank
from rtresnet.bench.timing import TimingConfig, time_host
from rtresnet.errors import RtresnetError


def test_stats_of_1_to_100_nearest_rank():
    # shuffled so the result cannot depend on input order
    samples = list(np.random.default_rng(0).permutation(np.arange(1, 101)).astype(float))
    s = LatencyStats.from_samples(samples)
    assert (s.samples, s.latency_ms_min, s.latency_ms_max) == (100, 1.0, 100.0)
    assert s.latency_ms_mean == 50.5
    assert s.latency_ms_median == 50.5  # mean of the 50th and 51st
    assert (s.latency_ms_p90, s.latency_ms_p95, s.latency_ms_p99) == (90.0, 95.0, 99.0)
    assert s.latency_ms_std == pytest.approx(math.sqrt((100**2 - 1) / 12))  # population std of 1..n
    assert s.cov == pytest.approx(s.latency_ms_std / 50.5)
    assert s.unstable  # CoV 57 % is far above the 10 % bar


def test_stats_small_and_odd_samples():
    s = LatencyStats.from_samples([3.0, 1.0, 2.0])
    assert s.latency_ms_median == 2.0
    assert s.latency_ms_p90 == 3.0  # rank ceil(0.9 * 3) = 3
    one = LatencyStats.from_samples([7.5])
    assert (one.latency_ms_min, one.latency_ms_p99, one.latency_ms_std, one.cov) == (7.5, 7.5, 0.0, 0.0)
    assert percentile_nearest_rank([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile_nearest_rank([1.0, 2.0, 3.0, 4.0], 51) == 3.0


def test_stats_instability_flag_and_bad_input():
    assert not LatencyStats.from_samples([10.0, 10.1, 9.9, 10.0]).unstable
    assert LatencyStats.from_samples([10.0, 30.0, 10.0, 10.0]).unstable
    with pytest.raises(RtresnetError, match="no latency samples"):
        LatencyStats.from_samples([])
    with pytest.raises(ValueError):
        LatencyStats.from_samples([1.0, float("nan")])
    round_trip = LatencyStats.from_dict(LatencyStats.from_samples([1.0, 2.0]).to_dict())
    assert round_trip == LatencyStats.from_samples([1.0, 2.0])


def test_timing_loop_rotates_buffers_and_excludes_warmup():
    seen: list[int] = []
    buffers = [np.full((1,), i) for i in range(3)]

    def infer(x):
        seen.append(int(x[0]))
        time.sleep(0.002 if len(seen) > 2 else 0.05)  # slow first calls must not be in the samples

    result = time_host(infer, buffers, TimingConfig(warmup_iters=2, iters=7, buffers=3))
    assert result.warmup_iters == 2 and len(result.samples_ms) == 7
    assert seen == [0, 1] + [i % 3 for i in range(7)]
    assert max(result.samples_ms) < 40  # the 50 ms warm-up calls were excluded
    assert min(result.samples_ms) >= 1.5


def test_timing_duration_has_a_floor_of_iterations():
    calls = []
    result = time_host(lambda x: calls.append(x), [np.zeros(1)], TimingConfig(warmup_s=0.0, duration_s=0.0,
                                                                             min_iters=4))
    assert len(result.samples_ms) == 4 and result.warmup_iters == 1  # warm-up by time still runs once
    with pytest.raises(RtresnetError, match="not both"):
        TimingConfig(iters=3, duration_s=1.0)
    with pytest.raises(RtresnetError, match="not both"):
        TimingConfig(warmup_iters=3, warmup_s=1.0)


def test_peak_memory_sees_a_transient_allocation():
    with PeakMemory() as m:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        del block
    peak = m.result().peak_rss_mib
    assert peak is not None and 56 < peak < 200
    with PeakMemory() as m:
        pass
    assert m.result().peak_rss_mib < 16
