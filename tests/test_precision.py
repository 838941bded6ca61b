"""FP16 and INT8 on the real digits model: accuracy vs FP32 in onnxruntime, graph layout per target, cache."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from rtresnet.data.digits import DIGITS_PREPROCESSING, digits_checkpoint, digits_inputs, digits_labels
from rtresnet.errors import RtresnetError
from rtresnet.precision import convert_fp16, quantize_int8
from rtresnet.precision.report import session, top1_accuracy
from rtresnet.spec import read_model_info

I8, U8 = onnx.TensorProto.INT8, onnx.TensorProto.UINT8


@pytest.fixture(scope="session")
def digits_onnx(tmp_path_factory):
    from rtresnet.export import export_onnx

    out = tmp_path_factory.mktemp("digits") / "digits.onnx"
    return export_onnx("resnet18", out, weights=digits_checkpoint(), in_channels=1, num_classes=10, input_size=32,
                       preprocessing=DIGITS_PREPROCESSING, labels=digits_labels()).path


@pytest.fixture(scope="session")
def held_out():
    return digits_inputs("test")


@pytest.fixture(scope="session")
def fp32_accuracy(digits_onnx, held_out):
    return top1_accuracy(digits_onnx, *held_out)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("calib")


@pytest.fixture(scope="session")
def int8_models(digits_onnx, cache_dir, tmp_path_factory):
    """Every target x method on the digits train split, calib_size 512 (computed lazily, once)."""
    out, models = tmp_path_factory.mktemp("int8"), {}

    def get(target: str, method: str):
        if (target, method) not in models:
            models[target, method] = quantize_int8(digits_onnx, out / f"{target}-{method}.onnx", calib_data="digits",
                                                   method=method, target=target, cache_dir=cache_dir)
        return models[target, method]
    return get


def test_fp16_keeps_accuracy_and_float32_io(digits_onnx, held_out, fp32_accuracy, tmp_path):
    result = convert_fp16(digits_onnx, tmp_path / "fp16.onnx")
    assert result.comparison and result.comparison.top1_agreement == 1.0
    assert abs(top1_accuracy(result.path, *held_out) - fp32_accuracy) <= 0.002
    assert fp32_accuracy >= 0.95
    sess = session(result.path)
    assert sess.get_inputs()[0].type == "tensor(float)" and sess.get_outputs()[0].type == "tensor(float)"
    model = onnx.load(str(result.path))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    assert read_model_info(result.path).precision == "fp16" and result.info.labels == digits_labels()
    assert result.size_bytes < 0.6 * result.source_size_bytes
    with pytest.raises(RtresnetError, match="already fp16"):
        convert_fp16(result.path, tmp_path / "again.onnx")


@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
@pytest.mark.parametrize("method", ["entropy", "minmax", "percentile"])
def test_int8_accuracy_within_one_point(int8_models, held_out, fp32_accuracy, target, method):
    result = int8_models(target, method)
    accuracy = top1_accuracy(result.path, *held_out)
    assert accuracy >= fp32_accuracy - 0.01, f"{target}/{method}: {accuracy:.2%} vs FP32 {fp32_accuracy:.2%}"
    assert result.info.precision == "int8" and read_model_info(result.path).precision == "int8"
    assert result.quantized_nodes >= 20 and result.calib_samples == 512 and result.comparison
    assert result.size_bytes < 0.35 * result.source_size_bytes


def _graph(path):
    model = onnx.load(str(path))
    return model, {t.name: t for t in model.graph.initializer}, {o: n for n in model.graph.node for o in n.output}


def test_tensorrt_graph_layout(int8_models):
    model, inits, producers = _graph(int8_models("tensorrt", "entropy").path)
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 13
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    zero_points = [inits[n.input[2]] for n in qdq]
    assert zero_points and {z.data_type for z in zero_points} == {I8}  # INT8 only, no UINT8
    assert all(not numpy_helper.to_array(z).any() for z in zero_points)  # symmetric: zero points all 0
    assert not any(n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None
                   and inits[n.input[0]].data_type == onnx.TensorProto.INT32 for n in qdq)  # bias not quantized
    for conv in (n for n in model.graph.node if n.op_type == "Conv"):
        dq = producers[conv.input[1]]
        scale = numpy_helper.to_array(inits[dq.input[1]])
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        assert dq.op_type == "DequantizeLinear" and axis == 0 and scale.shape == (inits[dq.input[0]].dims[0],)
        assert len(conv.input) == 3 and conv.input[2] in inits  # float bias, straight from an initializer
    adds = [n for n in model.graph.node if n.op_type == "Add"]
    assert len(adds) == 8  # ResNet-18's residual joins
    for add in adds:
        kinds = sorted(producers[i].op_type for i in add.input)
        assert kinds == ["Conv", "DequantizeLinear"], f"{add.name}: {kinds}"  # Q/DQ on the identity input only
    # The float remainder is FP16 by default (FP16 scales, opset 19), float32 I/O kept.
    assert {inits[n.input[1]].data_type for n in qdq} == {onnx.TensorProto.FLOAT16}
    sess = session(int8_models("tensorrt", "entropy").path)
    assert sess.get_inputs()[0].type == "tensor(float)"


def test_cpu_graph_uses_u8_activations_s8_weights(int8_models):
    model, inits, producers = _graph(int8_models("cpu", "entropy").path)
    types = Counter(inits[n.input[2]].data_type for n in model.graph.node if n.op_type == "QuantizeLinear")
    assert set(types) == {U8}
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    assert inits[producers[conv.input[1]].input[0]].data_type == I8


def test_calibration_cache_reuse_and_key_changes(digits_onnx, tmp_path, caplog):
    kwargs = dict(calib_data="digits", calib_size=64, target="cpu", cache_dir=tmp_path / "cache")
    first = quantize_int8(digits_onnx, tmp_path / "a.onnx", method="minmax", **kwargs)
    with caplog.at_level("DEBUG", logger="rtresnet"):  # the reuse is a debug detail (a hit says nothing at -q/info)
        again = quantize_int8(digits_onnx, tmp_path / "b.onnx", method="minmax", **kwargs)
    assert not first.cache_hit and again.cache_hit and again.cache_key == first.cache_key
    assert "reusing calibration ranges" in caplog.text and again.calibration_seconds == 0.0
    assert first.sha256 == again.sha256  # same ranges, same graph
    other_method = quantize_int8(digits_onnx, tmp_path / "c.onnx", method="percentile", **kwargs)
    other_data = quantize_int8(digits_onnx, tmp_path / "d.onnx", method="minmax", seed=1, **kwargs)
    assert not other_method.cache_hit and not other_data.cache_hit
    assert len({first.cache_key, other_method.cache_key, other_data.cache_key}) == 3
    assert len(list((tmp_path / "cache").glob("*.json"))) == 3
    assert first.calibration_table is not None and first.calibration_table.stat().st_size > 0


def test_exclude_and_keep_io_layers_float(digits_onnx, tmp_path):
    result = quantize_int8(digits_onnx, tmp_path / "x.onnx", calib_data="digits", calib_size=64, target="tensorrt",
                           high_precision="fp32", keep_io_layers_float=True, exclude=("MaxPool",),
                           cache_dir=tmp_path)
    model, inits, producers = _graph(result.path)
    by_type = {n.op_type: n for n in model.graph.node}
    first_conv = next(n for n in model.graph.node if n.op_type == "Conv")
    assert first_conv.input[1] in inits  # float weight, no DequantizeLinear
    assert by_type["Gemm"].input[1] in inits
    assert producers[by_type["MaxPool"].input[0]].op_type != "DequantizeLinear"
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 17  # fp32: no opset bump
    assert {t.data_type for t in model.graph.initializer if t.name.endswith("_scale")} == {onnx.TensorProto.FLOAT}
    assert np.isfinite(session(result.path).run(None, {"input": digits_inputs("test")[0][:4]})[0]).all()
    with pytest.raises(RtresnetError, match="no node or op type named NoSuchOp"):
        quantize_int8(digits_onnx, tmp_path / "y.onnx", calib_data="synthetic", calib_size=8, exclude=("NoSuchOp",),
                      cache_dir=tmp_path)


@pytest.mark.parametrize("kwargs, match", [
    (dict(calib_data="digits", calib_size=0), "calibration size must be a positive"),
    (dict(calib_data="digits", method="mse"), "no MSE calibrator"),
    (dict(calib_data="digits", target="gpu"), "unknown INT8 target"),
    (dict(calib_data="EMPTY"), "no images"),
    (dict(calib_data="MISSING"), "not found"),
    (dict(calib_data="BADNPY"), "shape"),
])
def test_bad_inputs_leave_nothing_behind(digits_onnx, tmp_path, kwargs, match):
    (tmp_path / "empty").mkdir()
    np.save(tmp_path / "bad.npy", np.zeros((4, 3, 32, 32), np.float32))
    subst = {"EMPTY": tmp_path / "empty", "MISSING": tmp_path / "missing", "BADNPY": tmp_path / "bad.npy"}
    kwargs = {**kwargs, "calib_data": subst.get(str(kwargs["calib_data"]), kwargs["calib_data"])}
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RtresnetError, match=match):
        quantize_int8(digits_onnx, out / "q.onnx", cache_dir=tmp_path / "cache", **kwargs)
    assert list(out.iterdir()) == [] and not (tmp_path / "cache").exists()


def test_fp16_of_a_model_with_fused_uint8_preprocessing(tmp_path):
    from rtresnet.export import export_onnx

    source = export_onnx("resnet18", tmp_path / "u8.onnx", num_classes=10, input_size=64,
                         input_format="uint8-nhwc-rgb").path
    result = convert_fp16(source, tmp_path / "u8_fp16.onnx")
    assert result.comparison and result.comparison.top1_agreement == 1.0
    assert session(result.path).get_inputs()[0].type == "tensor(uint8)"


def test_calibration_cache_folder_has_one_name(tmp_path, monkeypatch):
    from rtresnet.precision import calib_cache

    monkeypatch.setenv("RTRESNET_HOME", str(tmp_path / "home"))
    assert calib_cache.default_cache_dir() == tmp_path / "home" / "calib"
    assert calib_cache.default_cache_dir(tmp_path / "work") == tmp_path / "work" / "calib"  # bench's work folder
