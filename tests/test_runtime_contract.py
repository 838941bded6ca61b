"""One contract, every backend: the same checks through torch, onnxruntime and OpenVINO (exported ONNX and built
engine each), and, where a GPU/TensorRT exists, torch-cuda, onnxruntime-cuda and TensorRT (with and without CUDA
graphs)."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from rtresnet.compare import FP32_TOLERANCE, Tolerance, compare_logits
from rtresnet.errors import RtresnetError
from rtresnet.models import create_model
from rtresnet.models.checkpoint import save_state_dict
from rtresnet.runtime import Prediction, Runner, load

SIZE = 32
CLASSES = 10
MAX_BATCH = 4
LABELS = tuple(f"class-{i}" for i in range(CLASSES))
# CUDA convolutions run TF32 by default (PyTorch and TensorRT): a looser bound, still far below a wrong result
GPU_TOLERANCE = Tolerance(max_abs_rel=2e-2, min_top1_agreement=0.0, min_cosine=0.999)

BACKENDS = [
    pytest.param("torch", id="torch"),
    pytest.param("onnxruntime", id="onnxruntime"),
    pytest.param("onnxruntime-engine", id="onnxruntime-engine"),
    pytest.param("openvino", id="openvino"),
    pytest.param("openvino-engine", id="openvino-engine"),
    pytest.param("torch-cuda", id="torch-cuda", marks=pytest.mark.gpu),
    pytest.param("onnxruntime-cuda", id="onnxruntime-cuda", marks=pytest.mark.gpu),
    pytest.param("tensorrt", id="tensorrt", marks=pytest.mark.tensorrt),
    pytest.param("tensorrt-graph", id="tensorrt-graph", marks=pytest.mark.tensorrt),
]


@contextmanager
def one_torch_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread avoids OpenMP spin contention (10x faster)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module", autouse=True)
def _single_thread_torch():
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> SimpleNamespace:
    from rtresnet.export import export_onnx

    folder = tmp_path_factory.mktemp("runtime_contract")
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=CLASSES)
    ckpt = save_state_dict(model, folder / "r18.safetensors")
    with one_torch_thread():
        onnx = export_onnx("resnet18", folder / "r18.onnx", weights=str(ckpt), input_size=SIZE, labels=LABELS).path
    return SimpleNamespace(folder=folder, ckpt=ckpt, onnx=onnx, model=model, engines={})


def engine(artifacts: SimpleNamespace, backend: str):
    if backend not in artifacts.engines:
        from rtresnet.engine import build_engine

        suffix = {"tensorrt": "plan", "openvino": "blob"}.get(backend, "ort.onnx")
        artifacts.engines[backend] = build_engine(artifacts.onnx, backend=backend, max_batch=8,
                                                  output=artifacts.folder / f"r18.{suffix}").path
    return artifacts.engines[backend]


def make_runner(kind: str, artifacts: SimpleNamespace, **options) -> Runner:
    options.setdefault("max_batch", MAX_BATCH)
    if kind in ("torch", "torch-cuda"):
        return load("resnet18", backend="torch", weights=artifacts.ckpt, input_size=SIZE, labels=LABELS,
                    device="cuda" if kind == "torch-cuda" else "cpu", **options)
    if kind == "onnxruntime":
        return load(artifacts.onnx, threads=1, **options)
    if kind == "onnxruntime-cuda":
        return load(artifacts.onnx, device="cuda", **options)
    if kind == "onnxruntime-engine":
        return load(engine(artifacts, "onnxruntime"), threads=1, **options)
    if kind == "openvino":
        return load(artifacts.onnx, backend="openvino", threads=1, **options)
    if kind == "openvino-engine":
        return load(engine(artifacts, "openvino"), threads=1, **options)
    return load(engine(artifacts, "tensorrt"), cuda_graph=kind == "tensorrt-graph", **options)


@pytest.fixture(scope="session", params=BACKENDS)
def runner(request, artifacts):
    r = make_runner(request.param, artifacts)
    r.kind = request.param
    yield r
    r.close()


def tolerance(r: Runner) -> Tolerance:
    return GPU_TOLERANCE if "cuda" in r.kind or "tensorrt" in r.kind else FP32_TOLERANCE


def device_of(r: Runner) -> str:
    return "cuda" if "cuda" in r.kind or "tensorrt" in r.kind else "cpu"


def inputs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, SIZE, SIZE)).astype(np.float32)


def reference(artifacts, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return artifacts.model(torch.from_numpy(x)).numpy()


def assert_close(ref: np.ndarray, out: np.ndarray, tol: Tolerance) -> None:
    result = compare_logits(ref, out, tol)
    assert result, result.summary()


def test_input_spec_describes_the_model(runner):
    spec = runner.input_spec
    assert (spec.name, spec.sample_shape, spec.dtype, spec.layout) == ("input", (3, SIZE, SIZE), "float32", "NCHW")
    assert (spec.min_batch, spec.max_batch) == (1, MAX_BATCH)
    assert spec.describe() == f"input[1..{MAX_BATCH}, 3, {SIZE}, {SIZE}] float32 NCHW"
    assert runner.info.labels == LABELS and runner.num_classes == CLASSES


def test_infer_numpy_matches_pytorch_reference(runner, artifacts):
    x = inputs(3, seed=1)
    out = runner.infer(x)
    assert isinstance(out, np.ndarray) and out.shape == (3, CLASSES) and out.dtype == np.float32
    assert_close(reference(artifacts, x), out, tolerance(runner))


def test_infer_tensor_returns_tensor_on_its_device(runner):
    x = inputs(3, seed=2)
    expected = runner.infer(x)
    for device in {"cpu", device_of(runner)}:
        out = runner.infer(torch.from_numpy(x).to(device))
        assert isinstance(out, torch.Tensor) and out.device.type == device and out.shape == (3, CLASSES)
        assert_close(expected, out.cpu().numpy(), tolerance(runner))


def test_batch_above_max_is_split_and_rejoined(runner, artifacts, monkeypatch):
    chunks: list[int] = []
    run = runner._run
    monkeypatch.setattr(runner, "_run", lambda x: (chunks.append(x.shape[0]), run(x))[1])
    x = inputs(11, seed=3)
    out = runner.infer(x)
    assert chunks == [4, 4, 3]
    assert out.shape == (11, CLASSES)
    assert_close(reference(artifacts, x), out, tolerance(runner))


def test_non_contiguous_inputs_are_handled(runner):
    x = inputs(6, seed=4)
    strided = x[::2]                                  # every other sample: a view with doubled strides
    fortran = np.asfortranarray(x[:2])
    assert not strided.flags.c_contiguous and not fortran.flags.c_contiguous
    assert_close(runner.infer(np.ascontiguousarray(strided)), runner.infer(strided), tolerance(runner))
    assert_close(runner.infer(x[:2]), runner.infer(fortran), tolerance(runner))
    t = torch.from_numpy(x[:2]).to(device_of(runner)).transpose(2, 3)  # square images: same shape, other strides
    assert not t.is_contiguous()
    expected = runner.infer(np.ascontiguousarray(x[:2].transpose(0, 1, 3, 2)))
    assert_close(expected, runner.infer(t).cpu().numpy(), tolerance(runner))


@pytest.mark.parametrize("bad, message", [
    (np.zeros((3, SIZE, SIZE), np.float32), r"rank 3 .*add a batch dimension"),
    (np.zeros((2, 1, SIZE, SIZE), np.float32), r"1 channels, the model takes 3"),
    (np.zeros((2, SIZE, SIZE, 3), np.float32), r"32 channels, the model takes 3"),
    (np.zeros((2, 3, SIZE - 1, SIZE), np.float32), r"shape \(2, 3, 31, 32\) does not match"),
    (np.zeros((2, 3, SIZE, SIZE), np.float64), r"dtype is float64"),
    (np.zeros((0, 3, SIZE, SIZE), np.float32), r"batch is empty"),
    (torch.zeros((2, 3, SIZE, SIZE), dtype=torch.float16), r"dtype is float16"),
    ([[0.0]], r"numpy array or a torch tensor"),
], ids=["rank", "channels", "nhwc", "size", "float64", "empty", "tensor-fp16", "list"])
def test_invalid_inputs_name_the_expected_spec(runner, bad, message):
    with pytest.raises(RtresnetError, match=message) as err:
        runner.infer(bad)
    assert f"input[1..{MAX_BATCH}, 3, {SIZE}, {SIZE}] float32 NCHW" in str(err.value)
    assert runner.infer(inputs(1)).shape == (1, CLASSES)  # still usable


def test_check_finite_refuses_nan_and_inf(runner, monkeypatch):
    monkeypatch.setattr(runner, "check_finite", True)
    x = inputs(2)
    x[1, 0, 3, 3] = np.nan
    with pytest.raises(RtresnetError, match="NaN or inf"):
        runner.infer(x)
    t = torch.from_numpy(inputs(2)).to(device_of(runner))
    t[0, 2, 0, 0] = float("inf")
    with pytest.raises(RtresnetError, match="NaN or inf"):
        runner.infer(t)
    assert runner.infer(inputs(2)).shape == (2, CLASSES)


def test_predict_returns_softmax_topk_records(runner):
    rng = np.random.default_rng(5)
    images = [Image.fromarray(rng.integers(0, 256, (40 + 8 * i, 48, 3), dtype=np.uint8)) for i in range(3)]
    preds = runner.predict(images, topk=3)
    logits = runner.infer(runner.preprocess(images))
    assert len(preds) == 3 and all(len(p) == 3 for p in preds)
    for row, lg in zip(preds, logits, strict=True):
        assert all(isinstance(p, Prediction) and p.label == LABELS[p.index] for p in row)
        assert row[0].index == int(np.argmax(lg))
        probs = [p.probability for p in row]
        assert probs == sorted(probs, reverse=True) and 0 < probs[-1] <= probs[0] <= 1
    full = runner.predict(images[:1], topk=50)[0]  # clamped to the number of classes
    assert len(full) == CLASSES and sum(p.probability for p in full) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(RtresnetError, match="topk"):
        runner.predict(images, topk=0)


def test_concurrent_infer_matches_sequential(runner):
    batches = [inputs(1 + i % 6, seed=100 + i) for i in range(24)]  # some above max_batch: split under threads
    sequential = [runner.infer(b) for b in batches]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(worker: int) -> None:
        try:
            start.wait()
            for i in range(worker, len(batches), 8):
                results[i] = runner.infer(batches[i])
        except BaseException as e:  # surfaced below: a thread's failure must fail the test
            errors.append(e)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i, expected in enumerate(sequential):
        assert_close(expected, results[i], tolerance(runner))


def test_context_manager_closes_the_runner(runner, artifacts):
    fresh = make_runner(runner.kind, artifacts)
    with fresh as r:
        assert r is fresh and not r.closed
        assert r.infer(inputs(1)).shape == (1, CLASSES)
    assert fresh.closed
    with pytest.raises(RtresnetError, match="closed"):
        fresh.infer(inputs(1))
    fresh.close()  # closing twice is harmless
