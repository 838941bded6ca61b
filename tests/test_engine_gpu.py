"""TensorRT engines on a GPU (skipped without TensorRT and CUDA): FP32/FP16/INT8 builds of resnet18 and the digits
model, run through the runtime and compared with onnxruntime on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rtresnet.compare import FP16_TOLERANCE, FP32_TOLERANCE, INT8_TOLERANCE, compare_logits

pytestmark = pytest.mark.tensorrt


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, tuple[Path, np.ndarray, np.ndarray | None]]:
    """name -> (FP32 ONNX, evaluation inputs, labels or None)."""
    from rtresnet.data.digits import DIGITS_PREPROCESSING, digits_checkpoint, digits_inputs, digits_labels
    from rtresnet.export import export_onnx

    folder = tmp_path_factory.mktemp("gpu_build")
    r18 = export_onnx("resnet18", folder / "r18.onnx", num_classes=10, input_size=64, verify=False)
    digits = export_onnx("resnet18", folder / "digits.onnx", weights=str(digits_checkpoint()), num_classes=10,
                         in_channels=1, input_size=32, preprocessing=DIGITS_PREPROCESSING, labels=digits_labels(),
                         verify=False)
    x, y = digits_inputs("test", digits.info)
    rand = np.random.default_rng(0).standard_normal((64, 3, 64, 64)).astype(np.float32)
    return {"resnet18": (Path(r18.path), rand, None), "digits": (Path(digits.path), x.astype(np.float32), y)}


def _ort_logits(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"input": x[i:i + 32]})[0] for i in range(0, len(x), 32)])


def _trt_logits(engine: Path, x: np.ndarray) -> np.ndarray:
    from rtresnet.runtime import load

    with load(engine, backend="tensorrt") as runner:
        return np.concatenate([np.asarray(runner.infer(x[i:i + 32]), dtype=np.float32)
                               for i in range(0, len(x), 32)])


@pytest.mark.parametrize("name", ["resnet18", "digits"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tensorrt_engine_matches_onnxruntime(models, tmp_path, name, precision):
    from rtresnet.engine import build_engine

    onnx_path, x, labels = models[name]
    from rtresnet.precision import CalibrationSettings

    calib = {"calibration": CalibrationSettings("digits" if name == "digits" else "synthetic", calib_size=128)} \
        if precision == "int8" else {}
    art = build_engine(onnx_path, precision=precision, backend="tensorrt", max_batch=32,
                       output=tmp_path / f"{name}_{precision}.engine", **calib)
    s = art.sidecar
    assert s.backend == "tensorrt" and s.precision == precision and s.gpu["compute_capability"]
    from rtresnet.fileutil import sha256_file

    assert sha256_file(art.path) == s.engine_sha256 and s.profile == {"min_batch": 1, "opt_batch": 32,
                                                                      "max_batch": 32}
    ref = _ort_logits(onnx_path, x)
    out = _trt_logits(art.path, x)
    if precision == "fp32":
        cmp = compare_logits(ref, out, FP32_TOLERANCE)
        assert cmp.max_abs_rel <= 1e-3, cmp.summary()
    elif precision == "fp16":
        cmp = compare_logits(ref, out, FP16_TOLERANCE)
        assert cmp.top1_agreement >= 0.99, cmp.summary()
    elif labels is not None:  # INT8 digits: accuracy within one point of FP32
        fp32_acc = float((ref.argmax(1) == labels).mean())
        int8_acc = float((out.argmax(1) == labels).mean())
        assert int8_acc >= fp32_acc - 0.01, (fp32_acc, int8_acc)
    else:
        assert compare_logits(ref, out, INT8_TOLERANCE), compare_logits(ref, out, INT8_TOLERANCE).summary()


def test_tensorrt_cache_timing_cache_and_guard(models, tmp_path):
    from rtresnet.engine import build_engine
    from rtresnet.runtime.guard import check_engine_loadable

    onnx_path = models["resnet18"][0]
    out = tmp_path / "r18.engine"
    first = build_engine(onnx_path, backend="tensorrt", max_batch=4, output=out)
    assert (tmp_path / "timing.cache").stat().st_size > 0
    again = build_engine(onnx_path, backend="tensorrt", max_batch=4, output=out)
    assert again.cache_hit and again.sidecar == first.sidecar
    assert check_engine_loadable(first.sidecar, out) == first.sidecar
    assert build_engine(onnx_path, backend="tensorrt", max_batch=4, output=out, opt_level=1).cache_hit is False
