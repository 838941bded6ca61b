"""Bench's GPU rules, checked without a GPU: FP32 means TF32 off for the torch-cuda baseline, TensorRT gets one
engine per timed batch size (opt = that size), and "device compute" comes from the runner's own stream."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rtresnet.bench import harness
from rtresnet.bench.backends import BACKENDS, Workspace
from rtresnet.bench.stats import LatencyStats
from rtresnet.bench.subjects import BenchModel
from rtresnet.bench.timing import TimingConfig
from rtresnet.runtime.base import InputSpec
from rtresnet.spec import ModelInfo, Preprocessing

INFO = ModelInfo("resnet18", 10, 3, (8, 8), Preprocessing.default(3, (8, 8)))


@pytest.mark.parametrize("name, tf32_inside", [("torch-cuda", False), ("torch-cuda-fp16", True), ("tensorrt", True),
                                               ("torch", True)])
def test_the_torch_cuda_fp32_baseline_runs_without_tf32(name, tf32_inside):
    from rtresnet.bench.backends import numerics

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True  # cuDNN's default: TF32 convs
    try:
        with numerics(BACKENDS[name]):
            assert torch.backends.cudnn.allow_tf32 is tf32_inside
            assert torch.backends.cuda.matmul.allow_tf32 is tf32_inside
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32  # restored
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    assert "TF32 off" in BACKENDS["torch-cuda"].description and "TF32 off" in BACKENDS["tensorrt"].description


def test_tensorrt_gets_one_engine_per_batch_size_optimized_for_it(tmp_path, monkeypatch):
    calls = []

    def build_engine(onnx, **kw):
        calls.append(kw)
        assert kw.get("output") is None and kw["engine_dir"] == tmp_path  # build's own names, in the work dir
        return type("Artifact", (), {"path": tmp_path / f"e_opt{kw['opt_batch']}.engine"})

    monkeypatch.setattr("rtresnet.engine.build_engine", build_engine)
    monkeypatch.setattr(Workspace, "fp32_onnx", lambda self: tmp_path / "resnet18.onnx")
    ws = Workspace(tmp_path, weights=None, info=INFO, max_batch=32, calib_data="synthetic", calib_size=8)
    engines = ws.engines(BACKENDS["tensorrt-fp16"], (1, 8, 32))
    assert [(c["min_batch"], c["opt_batch"], c["max_batch"]) for c in calls] == [(1, 1, 32), (1, 8, 32), (1, 32, 32)]
    assert sorted(engines) == [1, 8, 32] and len({p.name for p in engines.values()}) == 3


class FakeTrtRunner:
    """Stands in for TrtRunner: compute time reported by the runner, 1 ms per sample."""

    device = "cuda"
    loaded: list = []

    def __init__(self, engine):
        self.engine, self.on, self.last = engine, False, None
        self.input_spec = InputSpec("input", (3, 8, 8), "float32", "NCHW", 1, 32)
        self.info = INFO
        FakeTrtRunner.loaded.append(engine)

    def infer(self, x):
        self.last = float(len(x))
        return np.zeros((len(x), 10), np.float32)

    def time_compute(self, on=True):
        self.on = on

    @property
    def last_compute_ms(self):
        return self.last if self.on else None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def test_device_compute_is_what_the_runner_times_on_its_stream():
    from rtresnet.bench.timing import DEVICE_SCOPES, time_compute

    r = FakeTrtRunner(Path("e.plan"))
    r.device = "cpu"  # where the GPU-resident copies of the batch go: no CUDA here
    stats, scope = harness._device_latency(r, [np.zeros((4, 3, 8, 8), np.float32)], TimingConfig(iters=5))
    assert scope == "compute" and "runner's own stream" in DEVICE_SCOPES[scope]
    assert stats.samples == 5 and stats.latency_ms_median == 4.0  # the runner's figure, not a wall clock
    assert r.on is False  # timing switched off again
    result = time_compute(r.infer, lambda: 2.5, [np.zeros((1, 3, 8, 8))], TimingConfig(warmup_iters=2, iters=3))
    assert result.samples_ms == (2.5, 2.5, 2.5) and result.warmup_iters == 2


def test_each_tensorrt_batch_size_is_timed_on_its_own_engine(monkeypatch):
    monkeypatch.setattr(FakeTrtRunner, "loaded", [])
    monkeypatch.setattr(harness, "unavailable_reason", lambda spec: None)
    monkeypatch.setattr(harness, "load_runner", lambda spec, engine, **kw: FakeTrtRunner(engine))
    timed_on = []

    def device_latency(runner, buffers, timing):
        timed_on.append((runner.engine, len(buffers[0])))
        return LatencyStats.from_samples([1.0] * 3), "compute"

    monkeypatch.setattr(harness, "_device_latency", device_latency)
    engines = {1: Path("opt1.plan"), 4: Path("opt4.plan")}
    opts = harness._Options((1, 4), TimingConfig(warmup_iters=0, iters=3), 1, "synthetic", None, None, 8, "entropy",
                            0, None, None, True)
    inputs = np.zeros((8, 3, 8, 8), np.float32)
    job = harness._Job("tensorrt-fp16", "trt fp16", BACKENDS["tensorrt-fp16"], lambda: engines)
    result = harness._run_backend(job, BenchModel(INFO, None), lambda info: (inputs, None), opts)
    assert result.ok, result.reason
    assert timed_on == [(Path("opt1.plan"), 1), (Path("opt4.plan"), 4)]
    assert FakeTrtRunner.loaded == [Path("opt4.plan"), Path("opt1.plan"), Path("opt4.plan")]  # accuracy, then 1, 4
    assert result.device_scope == "compute" and result.artifact == "opt4.plan"
