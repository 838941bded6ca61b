"""load_dataset: every source kind, seeded sampling, labels, and clear errors for bad input."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
from PIL import Image

from rtresnet.data.datasets import load_dataset
from rtresnet.data.digits import digits_info, digits_split, write_digit_images
from rtresnet.errors import RtresnetError
from rtresnet.models.imagenet import imagenet_classes, imagenet_synsets
from rtresnet.spec import ModelInfo, Preprocessing

INFO = digits_info()


def test_digits_splits_labels_and_seeded_choice():
    test = load_dataset("digits", INFO)
    assert test.inputs.shape == (360, 1, 32, 32) and np.array_equal(test.labels, digits_split("test")[1])
    a = load_dataset("digits", INFO, size=100, split="train", seed=0)
    b = load_dataset("digits", INFO, size=100, split="train", seed=0)
    c = load_dataset("digits", INFO, size=100, split="train", seed=1)
    assert len(a) == 100 and a.fingerprint == b.fingerprint and a.fingerprint != c.fingerprint
    assert np.array_equal(a.inputs, b.inputs) and not a.synthetic and "train" in a.source


def test_digits_refuses_a_model_of_another_shape():
    rgb = ModelInfo(arch="resnet18", num_classes=10, in_channels=3, input_size=(32, 32),
                    preprocessing=Preprocessing.default(3, (32, 32)))
    with pytest.raises(RtresnetError, match="1-channel 32x32"):
        load_dataset("digits", rgb)


def test_synthetic_is_seeded_and_loud(caplog):
    with caplog.at_level(logging.WARNING):
        d = load_dataset("synthetic", INFO, size=8, seed=3)
    assert "SYNTHETIC" in caplog.text and d.synthetic and d.labels is None
    assert d.inputs.shape == (8, 1, 32, 32) and d.fingerprint == load_dataset("synthetic", INFO, size=8,
                                                                              seed=3).fingerprint


def test_image_folder_with_class_subfolders_gives_labels(tmp_path):
    write_digit_images(tmp_path / "cls", 30, class_folders=True)
    d = load_dataset(tmp_path / "cls", INFO)
    # Files are read in sorted path order: class folder, then index.
    expected = np.sort(digits_split("test")[1][:30])
    assert np.array_equal(d.labels, expected)
    # The same pixels as the digits source: one preprocessing path for files and arrays.
    x_all = load_dataset("digits", INFO).inputs[:30]
    assert np.allclose(np.sort(d.inputs.reshape(30, -1).sum(1)), np.sort(x_all.reshape(30, -1).sum(1)), atol=1e-3)


def test_flat_folder_sampling_and_text_list(tmp_path):
    paths = write_digit_images(tmp_path / "flat", 20)
    d = load_dataset(tmp_path / "flat", INFO, size=5, seed=0)
    assert len(d) == 5 and d.labels is None
    listing = tmp_path / "list.txt"
    listing.write_text("# calibration images\n" + "\n".join(f"flat/{p.name}" for p in paths[:4]) + "\n\n")
    assert len(load_dataset(listing, INFO)) == 4


def test_unreadable_images_are_skipped_by_name(tmp_path, caplog):
    write_digit_images(tmp_path / "mix", 6)
    (tmp_path / "mix" / "broken.png").write_bytes(b"not a png")
    with caplog.at_level(logging.WARNING):
        d = load_dataset(tmp_path / "mix", INFO)
    assert len(d) == 6 and "broken.png" in caplog.text
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_bytes(b"junk")
    with pytest.raises(RtresnetError, match="could be read"):
        load_dataset(tmp_path / "bad", INFO)


@pytest.mark.parametrize("make, match", [
    (lambda p: p, "not found"),
    (lambda p: (p.mkdir(), p)[1], "no images"),
])
def test_missing_and_empty_folders(tmp_path, make, match):
    with pytest.raises(RtresnetError, match=match):
        load_dataset(make(tmp_path / "calib"), INFO)


def test_numpy_sources(tmp_path):
    x = np.random.default_rng(0).standard_normal((7, 1, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert np.array_equal(load_dataset(tmp_path / "x.npy", INFO).inputs, x)
    np.savez(tmp_path / "xy.npz", inputs=x, labels=np.arange(7))
    d = load_dataset(tmp_path / "xy.npz", INFO, size=3, seed=1)
    assert len(d) == 3 and d.labels is not None and set(d.labels) <= set(range(7))
    np.save(tmp_path / "wrong.npy", x[:, :, :16])
    with pytest.raises(RtresnetError, match=r"shape \(7, 1, 16, 32\)"):
        load_dataset(tmp_path / "wrong.npy", INFO)
    np.save(tmp_path / "ints.npy", x.astype(np.int32))
    with pytest.raises(RtresnetError, match="float32"):
        load_dataset(tmp_path / "ints.npy", INFO)
    np.savez(tmp_path / "badlabels.npz", inputs=x, labels=np.full(7, 12))
    with pytest.raises(RtresnetError, match="labels"):
        load_dataset(tmp_path / "badlabels.npz", INFO)


def test_bad_sizes_and_unknown_files(tmp_path, caplog):
    with pytest.raises(RtresnetError, match="positive"):
        load_dataset("digits", INFO, size=0)
    with caplog.at_level(logging.WARNING):
        assert len(load_dataset("digits", INFO, size=5000)) == 360
    assert "using all" in caplog.text
    (tmp_path / "data.csv").write_text("1,2")
    with pytest.raises(RtresnetError, match="cannot read data"):
        load_dataset(tmp_path / "data.csv", INFO)


# ImageNet validation layout (valprep.sh): one folder per WordNet ID, here a 3-class subset.
IMAGENET_INFO = ModelInfo(arch="resnet18", num_classes=1000, in_channels=3, input_size=(32, 32),
                          preprocessing=Preprocessing.default(3, (32, 32), resize=32), labels=imagenet_classes())


def _imagenet_folder(root, synsets, per_class=2):
    rng = np.random.default_rng(0)
    for synset in synsets:
        (root / synset).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / synset / f"ILSVRC2012_val_{synset}_{i}.PNG")
    return root


def test_imagenet_synsets_are_the_sorted_wordnet_ids():
    ids = imagenet_synsets()
    assert len(ids) == 1000 and len(set(ids)) == 1000 and all(re.fullmatch(r"n\d{8}", s) for s in ids)
    assert list(ids) == sorted(ids)  # ImageNet-1K class indices are the sorted synset IDs
    assert (ids[0], ids[1], ids[999]) == ("n01440764", "n01443537", "n15075141")
    classes = imagenet_classes()
    assert (classes[0], classes[1], classes[999]) == ("tench", "goldfish", "toilet tissue")


def test_imagenet_synset_folders_subset_get_imagenet_labels(tmp_path, caplog):
    root = _imagenet_folder(tmp_path / "val", ["n01440764", "n01443537", "n15075141"])
    with caplog.at_level(logging.INFO, logger="rtresnet.data.datasets"):
        d = load_dataset(root, IMAGENET_INFO)
    assert d.inputs.shape == (6, 3, 32, 32)
    assert np.array_equal(d.labels, [0, 0, 1, 1, 999, 999])
    assert sorted(set(d.labels.tolist())) == [0, 1, 999]
    assert "synset ID" in caplog.text
    # A seeded subsample keeps each image's own label.
    small = load_dataset(root, IMAGENET_INFO, size=3, seed=1)
    assert len(small) == 3 and set(small.labels.tolist()) <= {0, 1, 999}


def test_imagenet_synset_folder_unknown_id_is_named(tmp_path):
    root = _imagenet_folder(tmp_path / "val", ["n01440764", "n99999999"], per_class=1)
    with pytest.raises(RtresnetError, match="n99999999.*not an ImageNet-1K synset ID"):
        load_dataset(root, IMAGENET_INFO)


def test_synset_folders_for_other_models_keep_the_old_rules(tmp_path):
    root = _imagenet_folder(tmp_path / "val", ["n01440764", "n15075141"], per_class=1)
    # No labels: sorted folder order, as before.
    plain = ModelInfo(arch="resnet18", num_classes=10, in_channels=3, input_size=(32, 32),
                      preprocessing=Preprocessing.default(3, (32, 32), resize=32))
    assert np.array_equal(load_dataset(root, plain).labels, [0, 1])
    # Labels that are the synset IDs themselves: matched by name, as before.
    named = ModelInfo(arch="resnet18", num_classes=3, in_channels=3, input_size=(32, 32),
                      preprocessing=plain.preprocessing, labels=("x", "n15075141", "n01440764"))
    assert np.array_equal(load_dataset(root, named).labels, [2, 1])
