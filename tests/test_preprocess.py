import numpy as np
import pytest
from PIL import Image

from rtresnet.errors import RtresnetError
from rtresnet.preprocess import find_images, open_image, pixels_to_input, preprocess_images, resize_crop, to_mode
from rtresnet.spec import ModelInfo, Preprocessing


def _info(fmt="float-nchw", channels=3):
    prep = Preprocessing.default(channels, (8, 8), resize=8)
    return ModelInfo(arch="resnet18", num_classes=10, in_channels=channels, input_size=(8, 8),
                     preprocessing=prep, input_format=fmt)


def test_resize_shorter_side_then_center_crop():
    img = Image.new("RGB", (40, 20))
    out = resize_crop(img, Preprocessing(resize=10, crop=(8, 8), mean=(0, 0, 0), std=(1, 1, 1)))
    assert out.size == (8, 8)


def test_normalization_matches_the_formula():
    info = _info()
    img = Image.new("RGB", (8, 8), (255, 0, 128))
    x = preprocess_images([img], info)
    assert x.shape == (1, 3, 8, 8) and x.dtype == np.float32
    expected = (np.array([255, 0, 128]) / 255 - np.array(info.preprocessing.mean)) / np.array(info.preprocessing.std)
    np.testing.assert_allclose(x[0, :, 0, 0], expected, rtol=1e-6)


def test_uint8_formats_keep_raw_pixels_and_swap_for_bgr():
    pixels = np.zeros((1, 8, 8, 3), np.uint8)
    pixels[..., 0] = 200
    rgb = pixels_to_input(pixels, _info("uint8-nhwc-rgb"))
    bgr = pixels_to_input(pixels, _info("uint8-nhwc-bgr"))
    assert rgb.dtype == np.uint8 and rgb[0, 0, 0].tolist() == [200, 0, 0] and bgr[0, 0, 0].tolist() == [0, 0, 200]


@pytest.mark.parametrize("mode", ["RGBA", "P", "CMYK", "LA", "I;16", "1"])
def test_every_mode_converts(mode):
    img = Image.new(mode, (8, 8))
    assert to_mode(img, "RGB").mode == "RGB" and to_mode(img, "L").mode == "L"


def test_16bit_scales_to_8bit():
    arr = np.full((4, 4), 65535, np.uint16)
    img = Image.fromarray(arr)
    assert np.asarray(to_mode(img, "L")).max() == 255


def test_transparent_pixels_become_white():
    img = Image.new("RGBA", (2, 2), (0, 0, 0, 0))
    assert np.asarray(to_mode(img, "RGB"))[0, 0].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (20, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    path = tmp_path / "r.jpg"
    img.save(path, exif=exif)
    assert open_image(path).size == (10, 20)


def test_corrupt_and_missing_images_name_the_file(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(RtresnetError, match="bad.png"):
        open_image(bad)
    with pytest.raises(RtresnetError, match="not found"):
        open_image(tmp_path / "none.png")


def test_find_images_is_recursive_and_sorted(tmp_path):
    (tmp_path / "b").mkdir()
    for p in ["b/2.PNG", "1.jpg", "notes.txt"]:
        (tmp_path / p).write_bytes(b"")
    assert [p.name for p in find_images(tmp_path)] == ["1.jpg", "2.PNG"]


def test_default_resize_covers_a_wide_crop_from_square_and_portrait_photos():
    prep = Preprocessing.default(3, (96, 128))  # HxW: wider than tall
    for w, h in ((252, 263), (263, 252), (300, 600)):
        assert resize_crop(Image.new("RGB", (w, h)), prep).size == (128, 96)


def test_a_resize_that_cannot_fill_the_crop_names_resize():
    from rtresnet.export import make_preprocessing

    with pytest.raises(RtresnetError, match=r"--resize 110 cannot fill the 96x128 \(HxW\) crop.*--resize 128 or more"):
        make_preprocessing(3, (96, 128), resize=110)
    narrow = Preprocessing(resize=100, crop=(96, 128), mean=(0.5,) * 3, std=(0.5,) * 3)  # metadata edited by hand
    with pytest.raises(RtresnetError, match=r"an image of 263x252 \(HxW\).*96x128 crop; export the model with "
                                            r"--resize 128"):
        resize_crop(Image.new("RGB", (252, 263)), narrow)
