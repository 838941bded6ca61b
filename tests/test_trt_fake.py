"""The TensorRT builder and runner against a stand-in ``tensorrt`` module (TensorRT cannot be installed here): the
shared process-wide logger, the timing cache (unreadable files, concurrent builds), the DLA checks, and the
runner's address binding, alignment, CUDA-graph fallback and compute timing with CPU tensors in place of CUDA ones.

The stand-in behaves as the real bindings do where it matters: ``create_timing_cache`` returns None for bytes it
cannot read, ``set_tensor_address`` and ``execute_async_v3`` answer with booleans, and an engine reads and writes
the buffers at the addresses it was given.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from rtresnet.engine.request import BuildRequest, Target, check_options
from rtresnet.errors import RtresnetError
from rtresnet.spec import ModelInfo, Preprocessing, TensorSpec

INFO = ModelInfo("resnet18", 10, 3, (32, 32), Preprocessing.default(3, (32, 32)))


# -- the stand-in tensorrt module ------------------------------------------------------------------------------
class FakeILogger:
    Severity = SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)
    made: list = []

    def __init__(self):
        FakeILogger.made.append(self)


class FakeTimingCache:
    """Serializes to b"TC" + JSON; anything else (truncated bytes, another version's format) reads as None."""

    def __init__(self, entries=()):
        self.entries = set(entries)

    @staticmethod
    def read(data: bytes):
        if not data:
            return FakeTimingCache()
        try:
            return FakeTimingCache(json.loads(data[2:])) if data[:2] == b"TC" else None
        except ValueError:
            return None

    def combine(self, other, ignore_mismatch):
        self.entries |= other.entries
        return True

    def serialize(self):
        return b"TC" + json.dumps(sorted(self.entries)).encode()


class FakeConfig:
    def __init__(self):
        self.cache = None
        self.flags_cleared = []

    def set_memory_pool_limit(self, pool, size):
        pass

    def clear_flag(self, flag):
        self.flags_cleared.append(flag)

    def add_optimization_profile(self, profile):
        self.profile = profile

    def create_timing_cache(self, data):
        return FakeTimingCache.read(bytes(data))

    def set_timing_cache(self, cache, ignore_mismatch):
        if cache is None:  # pybind11 refuses None for an ITimingCache argument
            raise TypeError("set_timing_cache(): incompatible function arguments")
        self.cache = cache
        return True

    def get_timing_cache(self):
        return self.cache


class FakeProfile:
    def set_shape(self, name, lo, opt, hi):
        self.shapes = (lo, opt, hi)


class FakeNetwork:
    num_inputs = 1

    def get_input(self, i):
        return SimpleNamespace(name="input", shape=(-1, 3, 32, 32))


class FakeBuilder:
    num_DLA_cores = 0
    loggers: list = []
    during_build = None  # called once while the engine builds (to start a concurrent build)

    def __init__(self, logger):
        FakeBuilder.loggers.append(logger)

    def create_network(self, flags):
        return FakeNetwork()

    def create_builder_config(self):
        return FakeConfig()

    def create_optimization_profile(self):
        return FakeProfile()

    def build_serialized_network(self, network, config):
        config.cache.entries.add(f"tactics-{id(self)}")  # what this build timed
        hook, FakeBuilder.during_build = FakeBuilder.during_build, None
        if hook:
            hook()
        return b"plan"


class FakeParser:
    loggers: list = []

    def __init__(self, network, logger):
        FakeParser.loggers.append(logger)

    def parse_from_file(self, path):
        return True


class FakeProgressMonitor:
    def __init__(self):
        pass


def fake_tensorrt(**extra) -> SimpleNamespace:
    return SimpleNamespace(
        __version__="10.16.1.11", ILogger=FakeILogger, Builder=FakeBuilder, OnnxParser=FakeParser,
        IProgressMonitor=FakeProgressMonitor, NetworkDefinitionCreationFlag=SimpleNamespace(STRONGLY_TYPED=1),
        MemoryPoolType=SimpleNamespace(WORKSPACE=0), BuilderFlag=SimpleNamespace(TF32=7, GPU_FALLBACK=8),
        DeviceType=SimpleNamespace(DLA="DLA"), TensorIOMode=SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT"), **extra)


@pytest.fixture
def trt(monkeypatch):
    """A fresh stand-in module and a fresh process-wide logger slot for each test."""
    module = fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    monkeypatch.setattr("rtresnet._trt._logger", None)
    for cls in (FakeILogger, FakeBuilder, FakeParser):
        monkeypatch.setattr(cls, "made" if cls is FakeILogger else "loggers", [])
    monkeypatch.setattr(FakeBuilder, "during_build", None)
    return module


def request(tmp_path: Path, **options) -> BuildRequest:
    spec = (TensorSpec("input", ("batch", 3, 32, 32), "float32"),)
    out = (TensorSpec("logits", ("batch", 10), "float32"),)
    return BuildRequest(onnx_path=tmp_path / "m.onnx", onnx_sha256="0" * 64, info=INFO, inputs=spec, outputs=out,
                        precision="fp32", target=Target("tensorrt", tensorrt_version="10.16.1.11"), min_batch=1,
                        opt_batch=4, max_batch=8, **options)


def build(tmp_path: Path, name: str = "a", **options) -> Path:
    from rtresnet.engine.trt import build as build_trt

    engine = tmp_path / f"{name}.plan"
    build_trt(request(tmp_path, **options), engine)
    return engine


def cache_entries(path: Path) -> set[str]:
    return FakeTimingCache.read(path.read_bytes()).entries


# -- one logger per process --------------------------------------------------------------------------------------
def test_builders_parsers_and_runtimes_share_one_logger(trt, tmp_path, monkeypatch):
    build(tmp_path, "a")
    build(tmp_path, "b")
    runtimes = []
    trt.Runtime = lambda logger: runtimes.append(logger) or SimpleNamespace(deserialize_cuda_engine=lambda b: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr("rtresnet.runtime.guard.check_engine_loadable", lambda *a, **k: None)
    from rtresnet.runtime.trt_runner import TrtRunner

    for _ in range(2):
        with pytest.raises(RtresnetError, match="could not deserialize"):
            TrtRunner(build(tmp_path, "c"), SimpleNamespace(flags={}))
    loggers = FakeBuilder.loggers + FakeParser.loggers + runtimes
    assert len(loggers) == 10 and len(FakeILogger.made) == 1
    assert all(logger is FakeILogger.made[0] for logger in loggers)


def test_the_shared_logger_routes_tensorrt_messages_to_logging(trt, caplog):
    from rtresnet._trt import logger

    severity = FakeILogger.Severity
    with caplog.at_level(logging.DEBUG, logger="rtresnet"):
        logger().log(severity.WARNING, "weights are FP32")
        logger().log(severity.VERBOSE, "tactic 12")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "TensorRT: weights are FP32"), (logging.DEBUG, "TensorRT: tactic 12")]


# -- the timing cache --------------------------------------------------------------------------------------------
def test_an_unreadable_timing_cache_starts_empty_with_a_warning(trt, tmp_path, caplog):
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"TC[\"trunc")  # a cache cut short by a killed build
    with caplog.at_level(logging.WARNING):
        build(tmp_path, timing_cache=cache)
    assert "truncated or from another TensorRT version; starting an empty one" in caplog.text
    assert len(cache_entries(cache)) == 1  # replaced by a readable cache holding this build's entries


def test_concurrent_builds_sharing_a_timing_cache_keep_both_entries(trt, tmp_path):
    cache = tmp_path / "timing.cache"
    cache.write_bytes(FakeTimingCache({"earlier"}).serialize())
    # build "a" reads the cache, then "b" builds and saves while "a" is still building
    FakeBuilder.during_build = lambda: build(tmp_path, "b", timing_cache=cache)
    build(tmp_path, "a", timing_cache=cache)
    entries = cache_entries(cache)
    assert len(entries) == 3 and "earlier" in entries  # the earlier entry, b's and a's
    assert (tmp_path / "timing.cache.lock").is_file()


def test_the_timing_cache_is_saved_under_its_lock(trt, tmp_path, monkeypatch):
    import fcntl

    calls = []
    monkeypatch.setattr(fcntl, "flock", lambda f, op: calls.append((Path(f.name).name, op)))
    build(tmp_path, timing_cache=tmp_path / "timing.cache")
    assert calls == [("timing.cache.lock", fcntl.LOCK_EX), ("timing.cache.lock", fcntl.LOCK_UN)]


# -- DLA -----------------------------------------------------------------------------------------------------------
def test_dla_refuses_fp32_and_compatibility_modes():
    from rtresnet.engine.request import check_dla

    with pytest.raises(RtresnetError, match=r"--dla-core runs FP16 or INT8 only.*TensorRT 10\.x.*11\.x has no DLA"):
        check_options("tensorrt", opt_level=3, workspace_bytes=1, dla_core=0, gpu_fallback=False,
                      hardware_compat="none", version_compat=False, timing_cache=None, precision="fp32")
    with pytest.raises(RtresnetError, match="cannot be combined with --version-compat and --hardware-compat"):
        check_options("tensorrt", opt_level=3, workspace_bytes=1, dla_core=0, gpu_fallback=False,
                      hardware_compat="ampere+", version_compat=True, timing_cache=None)
    check_dla(0, precision="fp16")
    check_dla(0, precision="int8")
    check_dla(None, precision="fp32", version_compat=True)


def test_dla_core_missing_on_this_device_is_refused(trt, tmp_path):
    with pytest.raises(RtresnetError, match=r"--dla-core 0 .* this device has 0 .*TensorRT 10\.16\.1\.11"):
        build(tmp_path, dla_core=0)


# -- the runner ----------------------------------------------------------------------------------------------------
def test_the_load_guard_checks_the_gpu_the_runner_loads_on(trt, tmp_path, monkeypatch):
    from rtresnet.runtime.trt_runner import TrtRunner

    seen = []

    def guard(sidecar, path, device_index):
        seen.append(device_index)
        raise RtresnetError("stop here")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 2)
    monkeypatch.setattr("rtresnet.runtime.guard.check_engine_loadable", guard)
    plan = build(tmp_path)
    for device in ("cuda:1", "cuda"):
        with pytest.raises(RtresnetError, match="stop here"):
            TrtRunner(plan, SimpleNamespace(flags={}), device=device)
    assert seen == [1, 2]  # the device asked for, else the current one: never GPU 0 by default


class FakeStream:
    cuda_stream = 1234

    def __init__(self, events: list):
        self.events = events

    def wait_stream(self, other):
        pass

    def synchronize(self):
        self.events.append("sync")


class FakeContext:
    """An engine whose logits are (sum, -sum) of each sample, read from and written to the bound addresses."""

    def __init__(self, events: list, tensors: list):
        self.events, self.tensors = events, tensors
        self.addresses: dict[str, int] = {}
        self.refuse: set[str] = set()
        self.capturing = False
        self.capturable = False

    def set_input_shape(self, name, shape):
        self.shape = shape
        return True

    def set_tensor_address(self, name, ptr):
        if name in self.refuse:
            return False
        self.addresses[name] = ptr
        return True

    def at(self, name):
        return next(t for t in self.tensors if t.data_ptr() == self.addresses[name])

    def execute_async_v3(self, stream):
        if self.capturing and not self.capturable:  # e.g. an engine whose plugins cannot be captured
            self.events.append("execute refused")
            return False
        self.events.append("execute")
        n = self.shape[0]
        s = self.at("input")[:n].reshape(n, -1).sum(1)
        self.at("logits")[:n] = torch.stack([s, -s], 1)
        return True


SAMPLE = (3, 299, 299)


def aligned(n: int) -> torch.Tensor:
    """A batch of ``n`` random samples whose first byte is 256-byte aligned."""
    size = n * 3 * 299 * 299
    raw = torch.zeros(size + 64)
    skip = (-raw.data_ptr() % 256) // 4
    return raw[skip:skip + size].view(n, *SAMPLE).copy_(torch.randn(n, *SAMPLE))


@pytest.fixture
def runner(monkeypatch):
    """A TrtRunner over a FakeContext with CPU tensors standing in for CUDA memory."""
    from rtresnet.runtime.base import InputSpec, Runner
    from rtresnet.runtime.trt_runner import TrtRunner

    events: list = []
    r = TrtRunner.__new__(TrtRunner)
    Runner.__init__(r, INFO, InputSpec("input", SAMPLE, "float32", "NCHW", 1, 4), num_classes=2, device="cpu")
    r.path, r.cuda_graph, r._dev, r._engine = Path("fake.plan"), False, torch.device("cpu"), object()
    r._in, r._out, r._graphs, r._events = "input", "logits", {}, None
    r._in_buf, r._out_buf = torch.zeros(4, *SAMPLE), torch.zeros(4, 2)
    r._stream = FakeStream(events)
    r._context = FakeContext(events, [r._in_buf, r._out_buf])
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: FakeStream([]))
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    return r


def expected(x: torch.Tensor) -> torch.Tensor:
    s = x.reshape(len(x), -1).sum(1)
    return torch.stack([s, -s], 1)


def infer(runner, x: torch.Tensor) -> torch.Tensor:
    runner._context.tensors.append(x)  # the engine may read it in place
    return runner.infer(x)


def test_an_unaligned_tensor_is_copied_and_an_aligned_one_used_in_place(runner):
    batch = aligned(3)
    x = batch[1:]  # starts 3*299*299*4 bytes in: 172 bytes past a 256-byte boundary
    assert x.data_ptr() % 256 != 0
    torch.testing.assert_close(infer(runner, x), expected(x))
    assert runner._context.addresses["input"] == runner._in_buf.data_ptr()
    torch.testing.assert_close(infer(runner, batch), expected(batch))
    assert runner._context.addresses["input"] == batch.data_ptr()  # zero-copy


def test_a_refused_tensor_address_is_an_error(runner):
    runner._context.refuse.add("logits")
    with pytest.raises(RtresnetError, match="TensorRT refused the device address of tensor 'logits' of fake.plan"):
        infer(runner, aligned(1))


class FakeGraph:
    def __init__(self, context):
        self.context = context

    def capture_begin(self, capture_error_mode="global"):
        self.context.capturing = True
        self.context.events.append(f"capture {capture_error_mode}")

    def capture_end(self):
        self.context.capturing = False
        self.context.events.append("capture end")

    def replay(self):
        self.context.events.append("replay")


def test_cuda_graphs_capture_once_per_batch_then_replay(runner, monkeypatch):
    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: FakeGraph(runner._context))
    runner.cuda_graph = runner._context.capturable = True
    for _ in range(2):
        infer(runner, aligned(2))
    assert runner._context.events == ["execute", "sync", "capture thread_local", "execute", "capture end", "replay",
                                      "sync", "replay", "sync"]


def test_a_failed_cuda_graph_capture_falls_back_to_plain_enqueue_once(runner, monkeypatch, caplog):
    context = runner._context
    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: FakeGraph(context))
    runner.cuda_graph = True
    x = aligned(2)
    with caplog.at_level(logging.WARNING):
        torch.testing.assert_close(infer(runner, x), expected(x))
    assert "CUDA graph capture failed for fake.plan at batch 2" in caplog.text
    assert context.events == ["execute", "sync", "capture thread_local", "execute refused", "capture end", "execute",
                              "sync"]
    assert runner.cuda_graph is False
    context.events.clear()
    torch.testing.assert_close(infer(runner, x), expected(x))
    assert context.events == ["execute", "sync"]  # no second capture attempt


class FakeEvent:
    def __init__(self, events: list, name: str):
        self.events, self.name = events, name

    def record(self, stream):
        self.events.append((self.name, stream))

    def elapsed_time(self, other):
        return 2.5


def test_compute_time_comes_from_events_on_the_runners_stream_around_the_engine(runner, monkeypatch):
    events = runner._context.events
    names = iter(["start", "stop"])
    monkeypatch.setattr(torch.cuda, "Event", lambda enable_timing: FakeEvent(events, next(names)))
    assert runner.last_compute_ms is None
    runner.time_compute()
    infer(runner, aligned(1))
    assert events == [("start", runner._stream), "execute", ("stop", runner._stream), "sync"]
    assert runner.last_compute_ms == 2.5
