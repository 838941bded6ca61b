"""The bundled digits dataset and the ResNet-18 trained on it (the real-data check for FP16/INT8)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rtresnet.data.digits import (
    DIGITS_PREPROCESSING,
    digits_checkpoint,
    digits_info,
    digits_inputs,
    digits_labels,
    digits_split,
    write_digit_images,
)
from rtresnet.errors import RtresnetError


@pytest.fixture(scope="session")
def checkpoint():
    return digits_checkpoint()


def test_split_is_fixed_stratified_and_disjoint():
    train_x, train_y = digits_split("train")
    test_x, test_y = digits_split("test")
    assert train_x.shape == (1437, 8, 8) and test_x.shape == (360, 8, 8)
    assert train_x.dtype == np.uint8 and train_x.max() == 255 and train_x.min() == 0
    assert set(np.unique(test_y)) == set(range(10))
    assert np.bincount(test_y).min() >= 35  # stratified: ~36 per class
    train_rows = {r.tobytes() for r in train_x}
    assert sum(r.tobytes() in train_rows for r in test_x) < 5  # sklearn's digits hold a few exact duplicates


def test_unknown_split_is_an_error():
    with pytest.raises(RtresnetError, match="split"):
        digits_split("val")


def test_inputs_go_through_the_shared_preprocessing():
    x, y = digits_inputs("test")
    assert x.shape == (360, 1, 32, 32) and x.dtype == np.float32 and y.shape == (360,)
    assert -1.0 <= x.min() < -0.9 and 0.9 < x.max() <= 1.0  # 0.5/0.5 normalization of 0..255 pixels
    assert DIGITS_PREPROCESSING.channel_order == "L" and digits_labels() == tuple("0123456789")
    assert digits_info().input_shape() == ("batch", 1, 32, 32)


def test_checkpoint_is_cached_and_loads_with_rtresnet_weights(checkpoint):
    import torch

    from rtresnet.models.factory import load_model

    mtime = checkpoint.stat().st_mtime_ns
    assert digits_checkpoint() == checkpoint and checkpoint.stat().st_mtime_ns == mtime  # no retraining
    loaded = load_model("resnet18", weights=checkpoint, in_channels=1, num_classes=10)
    x, y = digits_inputs("test")
    with torch.no_grad():
        accuracy = float((loaded.model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())
    assert accuracy >= 0.95, f"held-out top-1 {accuracy:.2%}"


def test_write_digit_images(tmp_path):
    paths = write_digit_images(tmp_path / "imgs", 12)
    _, labels = digits_split("test")
    assert [p.name for p in paths][:2] == [f"0000_label{labels[0]}.png", f"0001_label{labels[1]}.png"]
    with Image.open(paths[3]) as img:
        assert img.size == (8, 8) and img.mode == "L"
    with pytest.raises(RtresnetError, match="between 1 and"):
        write_digit_images(tmp_path / "none", 0)
