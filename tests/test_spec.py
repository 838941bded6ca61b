"""Shared facts and helpers every stage relies on: spec (metadata), fileutil, compare, preprocess."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from rtresnet.compare import FP16_TOLERANCE, FP32_TOLERANCE, compare_logits
from rtresnet.errors import RtresnetError
from rtresnet.fileutil import atomic_path, atomic_write_text, check_output_path, sha256_file
from rtresnet.models import find_named_weights
from rtresnet.preprocess import normalize, preprocess_images, resize_crop, to_mode
from rtresnet.spec import IMAGENET_MEAN, ModelInfo, Preprocessing, read_model_info, write_model_info

V2 = find_named_weights("resnet50", "IMAGENET1K_V2").preprocessing
INFO = ModelInfo(arch="resnet50", num_classes=3, in_channels=3, input_size=(224, 224), preprocessing=V2,
                 weights="IMAGENET1K_V2", weights_sha256="ab" * 32, labels=("cat", "dog", "eel"))


def test_preprocessing_validation_and_defaults():
    with pytest.raises(RtresnetError, match="smaller than crop"):
        Preprocessing(resize=200, crop=(224, 224), mean=IMAGENET_MEAN, std=(0.2, 0.2, 0.2))
    with pytest.raises(RtresnetError, match="mean has 3 values but std has 1"):
        Preprocessing(resize=256, crop=(224, 224), mean=IMAGENET_MEAN, std=(0.2,))
    with pytest.raises(RtresnetError, match="std must be positive"):
        Preprocessing(resize=256, crop=(224, 224), mean=(0.5,), std=(0.0,))
    gray = Preprocessing.default(1, (32, 32))
    assert (gray.channel_order, gray.mean, gray.resize, gray.channels) == ("L", (0.5,), 37, 1)
    assert Preprocessing.from_dict(V2.to_dict()) == V2


def test_model_info_round_trip_through_onnx(tmp_path):
    # the graph's I/O agree with INFO (1x3x224x224 in, 3 classes out): read_model_info checks them
    graph = helper.make_graph([helper.make_node("ReduceMean", ["input"], ["logits"], axes=[2, 3], keepdims=0)], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])])
    model = helper.make_model(graph)
    entry = model.metadata_props.add()
    entry.key, entry.value = "author", "someone else"
    write_model_info(model, INFO)
    write_model_info(model, INFO.with_precision("fp16"))  # replaces, never duplicates
    onnx.save(model, tmp_path / "m.onnx")
    back = read_model_info(tmp_path / "m.onnx")
    assert back == INFO.with_precision("fp16") and back.label(2) == "eel" and back.label(7) == "7"
    keys = [p.key for p in onnx.load(tmp_path / "m.onnx").metadata_props]
    assert "author" in keys and len(keys) == len(set(keys))
    assert INFO.input_shape() == ("batch", 3, 224, 224)
    assert ModelInfo(**{**INFO.__dict__, "input_format": "uint8-nhwc-rgb"}).input_shape(4) == (4, 224, 224, 3)


def test_read_model_info_errors(tmp_path):
    with pytest.raises(RtresnetError, match="ONNX model not found"):
        read_model_info(tmp_path / "none.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\xff" * 64)
    with pytest.raises(RtresnetError, match="not a readable ONNX model"):
        read_model_info(tmp_path / "junk.onnx")
    graph = helper.make_graph([], "empty", [], [])
    onnx.save(helper.make_model(graph), tmp_path / "bare.onnx")
    with pytest.raises(RtresnetError, match="holds no ONNX graph"):
        read_model_info(tmp_path / "bare.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(RtresnetError, match="empty.onnx is empty, not an ONNX model"):
        read_model_info(tmp_path / "empty.onnx")


def test_atomic_path_keeps_the_old_file_on_failure(tmp_path):
    target = atomic_write_text(tmp_path / "out.txt", "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and len(sha256_file(target)) == 64
    with pytest.raises(RtresnetError, match="is a directory"):
        check_output_path(tmp_path)
    assert check_output_path(tmp_path / "no" / "file.txt") == tmp_path / "no" / "file.txt"  # the write creates no/


def test_compare_logits():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(8, 10)).astype(np.float32)
    same = compare_logits(ref, ref.copy())
    assert same and same.max_abs_error == 0 and same.top1_agreement == 1.0
    assert compare_logits(ref, ref + rng.normal(scale=1e-5, size=ref.shape), FP32_TOLERANCE)
    assert not compare_logits(ref, ref + rng.normal(scale=0.1, size=ref.shape), FP32_TOLERANCE)
    swapped = ref.copy()
    swapped[0] = -swapped[0]  # flips sample 0's top-1
    result = compare_logits(ref, swapped, FP16_TOLERANCE)
    assert not result and result.top1_agreement == pytest.approx(7 / 8) and "top-1 agreement" in result.summary()
    with pytest.raises(ValueError, match="shape mismatch"):
        compare_logits(ref, ref[:, :5])


def test_resize_crop_follows_named_weights_preprocessing():
    img = Image.new("RGB", (464, 300), (255, 0, 0))
    out = resize_crop(img, V2)
    assert out.size == (224, 224)
    prep = Preprocessing(resize=232, crop=(232, 232), mean=IMAGENET_MEAN, std=(0.229, 0.224, 0.225))
    assert resize_crop(img, prep).size == (232, 232)  # shorter side lands exactly on `resize`


def test_normalize_and_modes():
    pixels = np.broadcast_to(np.round(np.asarray(IMAGENET_MEAN) * 255).astype(np.uint8), (1, 2, 2, 3))
    x = normalize(pixels, V2)
    assert x.shape == (1, 3, 2, 2) and x.dtype == np.float32 and np.abs(x).max() < 0.01
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert to_mode(rgba, "RGB").getpixel((0, 0)) == (255, 255, 255)  # transparent shows as white
    deep = Image.fromarray(np.full((4, 4), 65535, np.uint16))
    assert to_mode(deep, "L").getpixel((0, 0)) == 255


def test_preprocess_images_bgr_input():
    info = ModelInfo(**{**INFO.__dict__, "input_format": "uint8-nhwc-bgr"})
    batch = preprocess_images([Image.new("RGB", (300, 260), (10, 20, 30))], info)
    assert batch.shape == (1, 224, 224, 3) and batch.dtype == np.uint8
    assert tuple(batch[0, 100, 100]) == (30, 20, 10)


def test_one_preprocessing_rule_scales_named_weights_to_other_sizes():
    from rtresnet.spec import resolve_preprocessing

    named = Preprocessing(resize=232, crop=(224, 224), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    assert resolve_preprocessing(None, named, 3, (224, 224)) == named
    scaled = resolve_preprocessing(None, named, 3, (112, 112))
    assert scaled.crop == (112, 112) and scaled.resize == 116 and scaled.mean == named.mean
    assert resolve_preprocessing(None, None, 1, (32, 32)) == Preprocessing.default(1, (32, 32))
    with pytest.raises(RtresnetError, match="input channels"):
        resolve_preprocessing(named, None, 1, (224, 224))
