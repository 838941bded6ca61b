"""Runtime pieces the shared contract test does not reach: batch padding/splitting and locking in the base class,
``load`` dispatch and its errors, onnxruntime options, and the TensorRT runner's load path (with a stand-in
``tensorrt`` module, since TensorRT cannot be installed here)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnxruntime
import pytest
import torch

from rtresnet.errors import RtresnetError
from rtresnet.fileutil import sha256_file
from rtresnet.runtime import InputSpec, Runner, load
from rtresnet.runtime.base import top_predictions
from rtresnet.sidecar import read_sidecar, sidecar_path, write_sidecar
from rtresnet.spec import ModelInfo, Preprocessing

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32


class SumRunner(Runner):
    """A backend whose logits are (sum, -sum) of each sample; records the batches it was given."""

    backend = "sum"

    def __init__(self, spec_min: int = 1, spec_max: int | None = None, dtype: str = "float32", **options) -> None:
        info = ModelInfo("resnet18", 2, 3, (4, 4), Preprocessing.default(3, (4, 4)), labels=("pos", "neg"))
        super().__init__(info, InputSpec("input", (3, 4, 4), dtype, "NCHW", spec_min, spec_max),
                         num_classes=2, **options)
        self.seen: list[int] = []
        self.active = self.peak = 0

    def _run(self, x):
        self.active += 1
        self.peak = max(self.peak, self.active)
        self.seen.append(x.shape[0])
        time.sleep(0.002)  # widen the window in which a missing lock would show
        s = np.asarray(x, dtype=np.float32).reshape(x.shape[0], -1).sum(1)
        self.active -= 1
        return np.stack([s, -s], 1).astype(np.float32)

    def _release(self) -> None:
        self.released = True


def samples(n: int) -> np.ndarray:
    return np.arange(n * 48, dtype=np.float32).reshape(n, 3, 4, 4) / 100


def expected(x: np.ndarray) -> np.ndarray:
    s = x.reshape(len(x), -1).sum(1)
    return np.stack([s, -s], 1)


def test_small_batches_are_padded_to_the_minimum_and_trimmed():
    r = SumRunner(spec_min=3)
    out = r.infer(samples(1))
    assert r.seen == [3] and out.shape == (1, 2)
    np.testing.assert_allclose(out, expected(samples(1)), rtol=1e-6)


def test_split_chunks_respect_both_limits():
    r = SumRunner(spec_min=2, spec_max=4)
    x = samples(9)
    out = r.infer(x)
    assert r.seen == [4, 4, 2]  # the last single sample padded to 2
    np.testing.assert_allclose(out, expected(x), rtol=1e-6)


def test_tensor_in_tensor_out_even_when_the_backend_returns_numpy():
    out = SumRunner(spec_max=2).infer(torch.from_numpy(samples(3)))
    assert isinstance(out, torch.Tensor) and out.shape == (3, 2)
    np.testing.assert_allclose(out.numpy(), expected(samples(3)), rtol=1e-6)


def test_serialized_backends_never_run_two_calls_at_once():
    r = SumRunner()
    outs: dict[int, np.ndarray] = {}
    threads = [threading.Thread(target=lambda i=i: outs.__setitem__(i, r.infer(samples(1 + i % 3) + i)))
               for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert r.peak == 1 and len(r.seen) == 12
    for i, out in outs.items():
        np.testing.assert_allclose(out, expected(samples(1 + i % 3) + i), rtol=1e-6)


def test_max_batch_option_is_checked_against_the_engine():
    with pytest.raises(RtresnetError, match="max_batch must be at least 1"):
        SumRunner(max_batch=0)
    with pytest.raises(RtresnetError, match="exceeds the engine's maximum batch 4"):
        SumRunner(spec_max=4, max_batch=8)
    r = SumRunner(spec_max=8, max_batch=3)
    r.infer(samples(7))
    assert r.seen == [3, 3, 1] and r.input_spec.max_batch == 3


def test_predict_feeds_an_fp16_graph_while_infer_stays_strict():
    r = SumRunner(dtype="float16")
    with pytest.raises(RtresnetError, match="dtype is float32, expected input.* float16"):
        r.infer(samples(1))
    assert r.predict(samples(2), topk=1)[0][0].label == "pos"
    assert r.preprocess([np.full((6, 6, 3), 200, np.uint8)]).dtype == np.float16


def test_preprocess_takes_camera_frames_as_uint8_arrays():
    from PIL import Image

    r = SumRunner()
    frame = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(r.preprocess([frame]), r.preprocess([Image.fromarray(frame)]))
    np.testing.assert_array_equal(r.preprocess([frame[:, :, :1]]), r.preprocess([Image.fromarray(frame[:, :, 0])]))
    with pytest.raises(RtresnetError, match="HxW or HxWxC .* uint8"):
        r.preprocess([frame.astype(np.float32)])


def test_top_predictions_is_a_stable_softmax():
    info = ModelInfo("resnet18", 3, 3, (4, 4), Preprocessing.default(3, (4, 4)), labels=("a", "b", "c"))
    preds = top_predictions(np.array([[1000.0, 1001.0, 999.0]]), info, topk=2)[0]
    e = np.exp([0.0, 1.0, -1.0])
    assert [p.label for p in preds] == ["b", "a"]
    assert preds[0].probability == pytest.approx(e[1] / e.sum()) and preds[1].probability == pytest.approx(
        e[0] / e.sum())


# -- load() on real artifacts ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    from rtresnet.export import export_onnx

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on a shared 2-core machine
    try:
        torch.manual_seed(1)
        return export_onnx("resnet18", tmp_path_factory.mktemp("runtime") / "r18.onnx", num_classes=10,
                           input_size=SIZE).path
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ort_engine(onnx_model) -> Path:
    from rtresnet.engine import build_engine

    return build_engine(onnx_model, backend="onnxruntime", max_batch=8,
                        output=onnx_model.with_name("r18.ort.onnx")).path


def batch(n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 3, SIZE, SIZE)).astype(np.float32)


def test_load_dispatches_on_the_artifact(onnx_model, ort_engine):
    with load(onnx_model, threads=1) as plain, load(ort_engine, threads=1) as built:
        assert plain.backend == built.backend == "onnxruntime"
        assert plain.input_spec.max_batch is None          # dynamic batch, no sidecar
        assert built.input_spec.max_batch == 8             # the engine's profile from its sidecar
        assert plain.providers == built.providers == ("CPUExecutionProvider",)
        assert plain.concurrent  # InferenceSession.run is thread-safe on CPU
        np.testing.assert_allclose(plain.infer(batch()), built.infer(batch()), rtol=1e-4, atol=1e-5)


def test_onnxruntime_options_change_the_session_not_the_result(onnx_model):
    with load(onnx_model, threads=1, optimization="disable") as a, load(onnx_model, threads=2) as b:
        np.testing.assert_allclose(a.infer(batch()), b.infer(batch()), rtol=1e-4, atol=1e-5)
    with pytest.raises(RtresnetError, match="unknown optimization level 'max'"):
        load(onnx_model, optimization="max")
    with pytest.raises(RtresnetError, match="has no option thread .*threads"):
        load(onnx_model, thread=2)


@pytest.mark.parametrize("call, message", [
    (lambda m, e: load(m, backend="tensorrt"), r"build a TensorRT engine from it first: rtresnet build"),
    (lambda m, e: load(m, backend="torch"), r"torch backend loads an arch name"),
    (lambda m, e: load(e, backend="tensorrt"), r"engine for onnxruntime, not tensorrt"),
    (lambda m, e: load(m, backend="coreml"), r"unknown backend 'coreml'"),
    (lambda m, e: load(m.with_name("absent.onnx")), r"model file not found"),
    (lambda m, e: load("resnet19"), r"unknown architecture 'resnet19'"),
    (lambda m, e: load("resnet18", backend="onnxruntime"), r"arch name runs on the torch backend"),
    (lambda m, e: load(m, max_batch=0), r"max_batch must be at least 1"),
    (lambda m, e: load(e, max_batch=9), r"exceeds the engine's maximum batch 8"),
], ids=["onnx-as-trt", "onnx-as-torch", "ort-engine-as-trt", "unknown-backend", "missing", "bad-arch",
        "arch-on-ort", "max-batch-0", "max-batch-above-profile"])
def test_load_errors_say_what_to_do(onnx_model, ort_engine, call, message):
    with pytest.raises(RtresnetError, match=message):
        call(onnx_model, ort_engine)


@pytest.mark.skipif("CUDAExecutionProvider" in onnxruntime.get_available_providers(),
                    reason="this onnxruntime has CUDA")
def test_missing_provider_is_an_error_not_a_silent_cpu_fallback(onnx_model):
    with pytest.raises(RtresnetError, match="lacks CUDAExecutionProvider"):
        load(onnx_model, device="cuda")


def test_a_modified_engine_is_refused(ort_engine, tmp_path):
    copy = tmp_path / ort_engine.name
    copy.write_bytes(ort_engine.read_bytes() + b"\0")
    sidecar_path(copy).write_text(sidecar_path(ort_engine).read_text())
    with pytest.raises(RtresnetError, match="does not match its sidecar"):
        load(copy)


def test_importing_the_runtime_and_running_onnxruntime_need_neither_torch_nor_tensorrt(onnx_model):
    code = ("import sys, numpy as np; from rtresnet.runtime import load; "
            f"r = load({str(onnx_model)!r}, threads=1); r.infer(np.zeros((1, 3, {SIZE}, {SIZE}), np.float32)); "
            "print(sorted(m for m in ('torch', 'tensorrt') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# -- TensorRT load path with a stand-in module -------------------------------------------------------------------
def fake_plan(ort_engine: Path, folder: Path, *, version_compat: bool) -> Path:
    plan = folder / "model.plan"
    plan.write_bytes(b"not really a plan")
    sc = read_sidecar(ort_engine)
    write_sidecar(plan, dataclasses.replace(sc, backend="tensorrt", engine_sha256=sha256_file(plan),
                                            flags={**sc.flags, "version_compat": version_compat},
                                            tensorrt_version="10.16.1", gpu={"compute_capability": "9.0"}))
    return plan


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_tensorrt_engine_without_a_gpu_says_so(ort_engine, tmp_path):
    plan = fake_plan(ort_engine, tmp_path, version_compat=False)
    with pytest.raises(RtresnetError, match="needs a CUDA GPU"):
        load(plan)
    with pytest.raises(RtresnetError, match="run on a CUDA device"):
        load(plan, device="cpu")


@pytest.mark.parametrize("version_compat", [False, True])
def test_tensorrt_load_guards_then_deserializes(ort_engine, tmp_path, monkeypatch, version_compat):
    events: list[str] = []

    class FakeRuntime:
        def __init__(self, logger):
            self._host = False

        @property
        def engine_host_code_allowed(self):
            return self._host

        @engine_host_code_allowed.setter
        def engine_host_code_allowed(self, value):
            events.append(f"host_code={value}")
            self._host = value

        def deserialize_cuda_engine(self, data):
            events.append("deserialize")
            return None  # what TensorRT returns for a plan it cannot load

    class FakeILogger:
        Severity = SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

        def __init__(self):
            pass

    fake = SimpleNamespace(ILogger=FakeILogger, Runtime=FakeRuntime,
                           TensorIOMode=SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT"))
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr("rtresnet._trt._logger", None)  # made again from this stand-in module
    monkeypatch.setattr("rtresnet.runtime.guard.check_engine_loadable",
                        lambda sc, path, device_index: events.append(f"guard cuda:{device_index}"))
    plan = fake_plan(ort_engine, tmp_path, version_compat=version_compat)
    with pytest.raises(RtresnetError, match="could not deserialize .*rtresnet build --force"):
        load(plan)
    assert events == ["guard cuda:0", *(["host_code=True"] if version_compat else []), "deserialize"]


# -- the overhead benchmark stays runnable -----------------------------------------------------------------------
def test_runner_overhead_benchmark_runs(onnx_model, tmp_path):
    figures = tmp_path / "overhead.json"
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "runner_overhead.py"), "--onnx", str(onnx_model),
                          "--rounds", "2", "--iters", "3", "--warmup", "1", "--threads", "1", "--json", str(figures)],
                         capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "bare InferenceSession.run" in out.stdout and "OrtRunner.infer" in out.stdout
    result = json.loads(figures.read_text())
    assert result["bare_median_ms"] > 0 and result["runner_median_ms"] > 0


def test_devices_map_to_onnxruntime_providers():
    from rtresnet.runtime.ort_runner import providers_for

    assert providers_for("cpu") == ["CPUExecutionProvider"]
    assert providers_for("cuda:1")[0] == ("CUDAExecutionProvider", {"device_id": 1})
    assert [p[0] if isinstance(p, tuple) else p for p in providers_for("tensorrt")] == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers_for("tensorrt:1", {"trt_fp16_enable": True})[:2] == [
        ("TensorrtExecutionProvider", {"device_id": 1, "trt_fp16_enable": True}),
        ("CUDAExecutionProvider", {"device_id": 1})]
    with pytest.raises(RtresnetError, match="cannot run on device 'npu'"):
        providers_for("npu")
    with pytest.raises(RtresnetError, match="bad device 'cuda:x'"):
        providers_for("cuda:x")


# -- onnxruntime's TensorRT EP options (pure functions: no onnxruntime-gpu needed) ------------------------------
def _info(precision: str) -> ModelInfo:
    return ModelInfo("resnet50", 1000, 3, (224, 224), Preprocessing.default(3, (224, 224)), precision=precision)


@pytest.mark.parametrize("precision, quantization, fp16, int8", [
    ("fp32", {}, False, False),
    ("fp16", {}, True, False),
    ("int8", {"target": "tensorrt", "method": "entropy", "high_precision": "fp16"}, True, True),
    ("int8", {"target": "tensorrt", "method": "entropy", "high_precision": "fp32"}, False, True),
])
def test_tensorrt_ep_options_follow_the_model(tmp_path, precision, quantization, fp16, int8):
    from rtresnet.runtime.ort_runner import tensorrt_ep_options

    opts = tensorrt_ep_options(_info(precision), quantization, input_name="input", min_batch=1, max_batch=32,
                               cache_dir=tmp_path / "cache")
    assert opts.pop("trt_fp16_enable", False) is fp16 and opts.pop("trt_int8_enable", False) is int8
    assert opts == {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(tmp_path / "cache"),
                    "trt_profile_min_shapes": "input:1x3x224x224", "trt_profile_opt_shapes": "input:32x3x224x224",
                    "trt_profile_max_shapes": "input:32x3x224x224"}


def test_tensorrt_ep_refuses_a_cpu_int8_model(tmp_path):
    from rtresnet.runtime.ort_runner import tensorrt_ep_options

    with pytest.raises(RtresnetError, match=r"quantized for the CPU .*UINT8.* again with `--target tensorrt`"):
        tensorrt_ep_options(_info("int8"), {"target": "cpu", "method": "entropy"}, input_name="input", min_batch=1,
                            max_batch=8, cache_dir=tmp_path)


def _tiny_onnx(path: Path, info: ModelInfo, quantization: dict[str, str], batch: int | str = "batch") -> Path:
    """An Identity graph carrying rtresnet metadata, as the precision stage writes it."""
    import onnx
    from onnx import TensorProto, helper

    from rtresnet.spec import write_model_info

    shape = [batch, 3, 224, 224]
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["logits"])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, shape)])
    model = helper.make_model(graph)
    write_model_info(model, info)
    for k, v in quantization.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = f"rtresnet_quantization.{k}", v
    onnx.save(model, str(path))
    return path


def test_tensorrt_ep_setup_reads_the_models_metadata_and_batch_range(tmp_path, monkeypatch):
    from rtresnet.runtime.ort_runner import _tensorrt_setup

    info = _info("int8")
    tensorrt = _tiny_onnx(tmp_path / "m.int8.onnx", info, {"target": "tensorrt", "high_precision": "fp16"})
    opts, batches = _tensorrt_setup(tensorrt, info, {"min_batch": 2, "max_batch": 16}, None)
    assert batches == (2, 16) and opts["trt_int8_enable"] and opts["trt_fp16_enable"]
    assert opts["trt_profile_min_shapes"] == "input:2x3x224x224"
    assert opts["trt_profile_max_shapes"] == opts["trt_profile_opt_shapes"] == "input:16x3x224x224"
    assert Path(opts["trt_engine_cache_path"]) == tmp_path / "m.int8.trt-cache"
    assert (tmp_path / "m.int8.trt-cache").is_dir()
    assert _tensorrt_setup(tensorrt, info, None, None)[1] == (1, 32)      # dynamic batch: 1..32 as builds default
    assert _tensorrt_setup(tensorrt, info, None, 64)[1] == (1, 64)        # the runner's max_batch widens it
    fixed = _tiny_onnx(tmp_path / "fixed.onnx", _info("fp16"), {}, batch=4)
    assert _tensorrt_setup(fixed, _info("fp16"), None, None)[1] == (4, 4)
    cpu = _tiny_onnx(tmp_path / "cpu.int8.onnx", info, {"target": "cpu"})
    with pytest.raises(RtresnetError, match="--target tensorrt"):
        _tensorrt_setup(cpu, info, None, None)
    monkeypatch.setattr("rtresnet.runtime.ort_runner.os.access", lambda path, mode: False)  # a read-only folder
    opts, _ = _tensorrt_setup(tensorrt, info, None, None)
    assert Path(opts["trt_engine_cache_path"]).parent == Path(os.environ["RTRESNET_HOME"])
