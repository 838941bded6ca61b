"""Hostile-input battery (issue 16): hostile images and hostile paths.

Images: decompression bombs, truncated and empty files among good ones, huge EXIF, wrong extensions, non-images,
every PIL mode, 1x1 and extreme aspect ratios, fuzzed bytes; through `predict`, calibration folders and `bench`.
Paths: symlinks (working, dangling, looping), FIFOs (must never block), folders and files swapped, unwritable and
special outputs, output over input, two writers to one output; through the CLI and ``runtime.load``.
"""

from __future__ import annotations

import io
import json
import os
import struct
import threading
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from rtresnet.errors import RtresnetError
from rtresnet.fileutil import atomic_write_bytes
from rtresnet.models import create_model
from rtresnet.models.checkpoint import save_state_dict
from rtresnet.preprocess import open_image
from rtresnet.runtime import load
from tests.hostile import GENERIC, assert_clean_failure, assert_one_line_error, files_under, invoke

SIZE = 32
LIMIT = f"{Image.MAX_IMAGE_PIXELS:,}"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int) -> bytes:
    """A few-kB 8-bit grayscale PNG whose header declares ``width`` x ``height`` (only 16 rows of data follow)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) +
            _png_chunk(b"IDAT", zlib.compress(b"\0" * (width + 1) * 16, 9)) + _png_chunk(b"IEND", b""))


def jpeg_declaring(img: Image.Image, width: int, height: int) -> bytes:
    """``img`` as a baseline JPEG whose SOF0 header is edited to declare ``width`` x ``height``."""
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def photo(seed: int, size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> SimpleNamespace:
    from rtresnet.export import export_onnx

    root = tmp_path_factory.mktemp("hostile_images")
    torch.manual_seed(0)
    rgb_ckpt = save_state_dict(create_model("resnet18", num_classes=10), root / "rgb.safetensors")
    gray_ckpt = save_state_dict(create_model("resnet18", num_classes=10, in_channels=1), root / "gray.safetensors")
    rgb = export_onnx("resnet18", root / "rgb.onnx", weights=str(rgb_ckpt), input_size=SIZE, verify=False).path
    gray = export_onnx("resnet18", root / "gray.onnx", weights=str(gray_ckpt), in_channels=1, input_size=SIZE,
                       verify=False).path
    good, img = root / "good", root / "img"
    good.mkdir()
    img.mkdir()
    for i in range(3):
        photo(i).save(good / f"good{i}.png")
    photo(0).save(img / "photo.jpg", quality=95)
    photo(0).save(img / "photo.png")
    jpg, png = (img / "photo.jpg").read_bytes(), (img / "photo.png").read_bytes()
    files = {
        "bomb.png": png_declaring(30000, 30000),          # 900 Mpx: Pillow itself refuses this one
        "bomb_warn.png": png_declaring(12000, 12000),     # 144 Mpx: Pillow only warns, and would decode it
        "bomb.jpg": jpeg_declaring(photo(0), 65000, 65000),
        "sliver.png": png_declaring(1, 100_000),           # 100 kpx, but 37 x 3.7 M after resizing
        "truncated.jpg": jpg[:len(jpg) // 2],
        "truncated.png": png[:len(png) // 2],
        "zero.jpg": b"",
        "text.jpg": b"these are not the pixels you are looking for\n",
        "png_named.jpg": png,
        "tensors.npy": _npy_bytes(),
        "model.onnx": onnx.helper.make_model(onnx.helper.make_graph([], "g", [], [])).SerializeToString(),
    }
    for name, data in files.items():
        (img / name).write_bytes(data)
    exif = Image.Exif()
    exif[0x010E] = "x" * 60_000  # ImageDescription: a 60 kB EXIF block, close to JPEG's 64 kB segment limit
    photo(0).save(img / "exif.jpg", quality=95, exif=exif)
    modes = {
        "gray16.png": Image.fromarray(np.asarray(photo(1).convert("L")).astype(np.uint16) * 257),
        "cmyk.jpg": photo(1).convert("CMYK"),
        "palette.png": photo(1).convert("P", palette=Image.Palette.ADAPTIVE, colors=16),
        "rgba.png": photo(1).convert("RGBA"),
        "la.png": photo(1).convert("LA"),
        "one.png": Image.new("RGB", (1, 1), (200, 30, 60)),
        "gray.png": photo(1).convert("L"),
    }
    for name, im in modes.items():
        im.save(img / name, **({"quality": 95} if name.endswith(".jpg") else {}))
    transparent = photo(2).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    transparent.save(img / "palette_transparent.png", transparency=0)
    return SimpleNamespace(root=root, rgb=rgb, gray=gray, good=good, img=img)


def _npy_bytes() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 3, SIZE, SIZE), np.float32))
    return buf.getvalue()


def predict_json(*args):
    result = invoke("predict", *args, "--json", "--topk", "10")
    return result, json.loads(result.stdout) if result.stdout.strip() else []


def errors_of(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


def run_without_hanging(fn, fifo: Path, timeout_s: float = 30.0):
    """Run ``fn`` in a thread; fail (and unblock it by opening the FIFO's write end) if it blocks on ``fifo``."""
    box: dict = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the calling thread
            box["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"blocked reading the FIFO {fifo}")
    if "error" in box:
        raise box["error"]
    return box["result"]


# ---------------------------------------------------------------- hostile images through `rtresnet predict`

@pytest.mark.parametrize("name, words", [
    ("bomb.png", ["900,000,000 pixels", LIMIT, "decompression bomb", "downscale"]),
    ("bomb_warn.png", ["144,000,000 pixels", LIMIT, "decompression bomb"]),
    ("bomb.jpg", ["4,225,000,000 pixels", LIMIT]),
    ("sliver.png", ["100000x1", "aspect ratio", LIMIT]),
    ("truncated.jpg", ["cannot decode image", "truncated"]),
    ("truncated.png", ["cannot decode image", "truncated"]),
    ("zero.jpg", ["empty (0 bytes)"]),
    ("text.jpg", ["not an image file"]),
    ("tensors.npy", ["not an image file"]),
    ("model.onnx", ["not an image file"]),
])
def test_bad_image_among_good_ones_is_a_per_file_error(env, name, words):
    start = time.perf_counter()
    good = sorted(env.good.iterdir())
    result, doc = predict_json(env.rgb, good[0], env.img / name, good[1])
    assert time.perf_counter() - start < 20  # a bomb is refused from its header, not decoded
    errors = assert_clean_failure(result, name, *words)
    assert len(errors_of(result)) == 2 and errors_of(result)[-1] == "error: 1 of 3 images failed", result.stderr
    assert [sorted(d) for d in doc] == [["image", "predictions"], ["error", "image"], ["image", "predictions"]]
    assert str(env.img / name) in errors


def test_bomb_is_refused_before_decoding(env, monkeypatch):
    """The refusal comes from the header: no pixel data is ever decoded."""
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("a bomb's pixels were decoded"))
    for name in ("bomb.png", "bomb_warn.png", "bomb.jpg"):
        with pytest.raises(RtresnetError, match="decompression bomb"):
            open_image(env.img / name)


@pytest.mark.parametrize("name", ["gray16.png", "cmyk.jpg", "palette.png", "palette_transparent.png", "rgba.png",
                                  "la.png", "one.png", "gray.png", "png_named.jpg", "exif.jpg"])
def test_unusual_but_valid_images_are_converted_and_predicted(env, name):
    result, doc = predict_json(env.rgb, env.img / name)
    assert result.exit_code == 0, result.output
    probs = [p["probability"] for p in doc[0]["predictions"]]
    assert len(probs) == 10 and sum(probs) == pytest.approx(1.0, abs=1e-4) and all(np.isfinite(probs))


def test_wrong_extension_and_huge_exif_change_nothing(env):
    result, doc = predict_json(env.rgb, env.img / "png_named.jpg", env.img / "photo.png", env.img / "exif.jpg",
                               env.img / "photo.jpg")
    assert result.exit_code == 0, result.output
    assert doc[0]["predictions"] == doc[1]["predictions"]  # the content decides the format, not the name
    assert doc[2]["predictions"] == doc[3]["predictions"]  # the EXIF block is metadata only


def test_color_image_to_a_grayscale_model(env):
    result, doc = predict_json(env.gray, env.img / "photo.png", env.img / "cmyk.jpg", env.img / "one.png")
    assert result.exit_code == 0, result.output
    assert all(len(d["predictions"]) == 10 for d in doc)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(["PNG", "JPEG", "BMP", "WEBP"]), cut=st.floats(0, 1),
       flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=6))
def test_fuzzed_image_bytes_decode_or_fail_cleanly(tmp_path_factory, fmt, cut, flips):
    buf = io.BytesIO()
    photo(5, (24, 16)).save(buf, fmt)
    data = bytearray(buf.getvalue())
    for where, value in flips:
        data[int(where * (len(data) - 1))] = value
    path = tmp_path_factory.mktemp("fuzz") / f"x.{fmt.lower()}"
    path.write_bytes(bytes(data[:max(1, int(cut * len(data)))]))
    try:
        img = open_image(path)
    except RtresnetError as e:
        assert str(path) in str(e)
    else:
        assert img.size[0] > 0 and img.size[1] > 0


# ---------------------------------------------------------------- calibration folders and `bench --data`

def test_calibration_skips_bad_images_and_names_them(env, tmp_path):
    calib = tmp_path / "calib"
    calib.mkdir()
    for p in env.good.iterdir():
        (calib / p.name).write_bytes(p.read_bytes())
    for name in ("bomb.png", "bomb_warn.png", "truncated.jpg", "zero.jpg", "sliver.png"):
        (calib / name).write_bytes((env.img / name).read_bytes())
    out = tmp_path / "out" / "q.onnx"
    result = invoke("quantize", env.rgb, "--int8", "--calib-data", calib, "--calib-size", "8", "--no-verify",
                    "--cache-dir", tmp_path / "cache", "-o", out)
    assert result.exit_code == 0, result.output
    assert GENERIC not in result.stderr and "skipped 5 unreadable image(s)" in result.stderr
    assert "bomb.png" in result.stderr and "decompression bomb" in result.stderr
    assert result.stderr.count(str(calib / "zero.jpg")) == 1  # each skipped file named once
    onnx.checker.check_model(str(out))


@pytest.mark.parametrize("content, words", [
    ({}, ["no images", "point to a folder of images"]),                                   # an empty folder
    ({"notes.txt": b"hi", "data.csv": b"1,2"}, ["no images", "point to a folder of images"]),  # only non-images
    ({"a.png": b"", "b.jpg": b"GIF89a", "c.png": png_declaring(30000, 30000)}, ["none of the 3 images"]),
])
def test_calibration_folder_without_usable_images_is_refused(env, tmp_path, content, words):
    calib = tmp_path / "calib"
    calib.mkdir()
    for name, data in content.items():
        (calib / name).write_bytes(data)
    out = tmp_path / "out"
    result = invoke("quantize", env.rgb, "--int8", "--calib-data", calib, "--calib-size", "4", "--no-verify",
                    "--cache-dir", tmp_path / "cache", "-o", out / "q.onnx")
    assert_clean_failure(result, str(calib), *words)
    assert not out.exists()


def test_calibration_list_naming_a_folder_a_fifo_and_a_loop(env, tmp_path):
    os.mkfifo(tmp_path / "fifo.png")
    (tmp_path / "loop.png").symlink_to("loop.png")
    (tmp_path / "folder.png").mkdir()
    listing = tmp_path / "list.txt"
    listing.write_text("fifo.png\nloop.png\nfolder.png\n")
    result = run_without_hanging(lambda: invoke(
        "quantize", env.rgb, "--int8", "--calib-data", listing, "--calib-size", "3", "--no-verify",
        "--cache-dir", tmp_path / "cache", "-o", tmp_path / "q.onnx"), tmp_path / "fifo.png")
    assert_clean_failure(result, "none of the 3 images")
    for words in ("is a FIFO, not a regular file", "is a symbolic link loop", "is a folder"):
        assert words in result.stderr
    assert not (tmp_path / "q.onnx").exists()


def test_calibration_data_that_is_a_fifo_does_not_block(env, tmp_path):
    fifo = tmp_path / "calib.npy"
    os.mkfifo(fifo)
    result = run_without_hanging(lambda: invoke("quantize", env.rgb, "--int8", "--calib-data", fifo, "--no-verify",
                                                "-o", tmp_path / "q.onnx"), fifo)
    assert_one_line_error(result, "data source", str(fifo), "FIFO")


def test_bench_refuses_non_finite_tensors_before_benchmarking(env, tmp_path):
    data = np.random.default_rng(0).normal(size=(6, 3, SIZE, SIZE)).astype(np.float32)
    data[1, 0, 0, :3] = np.nan
    data[4, 2, 5, 5] = np.inf
    np.save(tmp_path / "nan.npy", data)
    result = invoke("bench", "--models", env.rgb, "--data", tmp_path / "nan.npy", "--iters", "1", "--warmup", "0")
    assert_clean_failure(result, "nan.npy", "4 non-finite values", "2 of 6 samples")
    assert "img/s" not in result.output  # refused before any timing


def test_bench_on_an_image_folder_with_bad_files_and_an_empty_one(env, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("bomb.png", "zero.jpg", "truncated.png"):
        (folder / name).write_bytes((env.img / name).read_bytes())
    result = invoke("bench", "--models", env.rgb, "--data", folder, "--iters", "1", "--warmup", "0")
    assert_clean_failure(result, "none of the 3 images")
    (tmp_path / "empty").mkdir()
    result = invoke("bench", "--models", env.rgb, "--data", tmp_path / "empty", "--iters", "1", "--warmup", "0")
    assert_clean_failure(result, "no images", "empty")


# ---------------------------------------------------------------- paths: inputs

def test_symlinked_image_and_model_work(env, tmp_path):
    (tmp_path / "model.onnx").symlink_to(env.rgb)
    (tmp_path / "link.png").symlink_to(env.img / "photo.png")
    result, doc = predict_json(tmp_path / "model.onnx", tmp_path / "link.png", env.img / "photo.png")
    assert result.exit_code == 0, result.output
    assert doc[0]["predictions"] == doc[1]["predictions"]


@pytest.mark.parametrize("make, words", [
    (lambda p: p.symlink_to(p.parent / "gone.png"), ["broken symbolic link", "gone.png"]),
    (lambda p: p.symlink_to(p), ["symbolic link loop"]),
    (lambda p: os.mkfifo(p), ["FIFO, not a regular file"]),
])
def test_special_image_paths_are_per_file_errors(env, tmp_path, make, words):
    bad = tmp_path / "bad.png"
    make(bad)
    result = run_without_hanging(lambda: invoke("predict", env.rgb, env.img / "photo.png", bad), bad)
    assert_clean_failure(result, str(bad), *words)
    assert errors_of(result)[-1] == "error: 1 of 2 images failed"
    assert result.stdout.startswith(str(env.img / "photo.png"))


@pytest.mark.parametrize("make, words", [
    (lambda p: p.symlink_to(p.parent / "gone.onnx"), ["broken symbolic link", "gone.onnx"]),
    (lambda p: p.symlink_to(p), ["symbolic link loop"]),
    (lambda p: os.mkfifo(p), ["FIFO, not a regular file"]),
    (lambda p: p.mkdir(), ["is a folder", "give a model file"]),
])
def test_runtime_load_says_what_the_path_is(tmp_path, make, words):
    target = tmp_path / "model.onnx"
    make(target)
    with pytest.raises(RtresnetError) as info:
        run_without_hanging(lambda: load(target), target)
    assert "not found" not in str(info.value)  # it exists: say what it is instead
    for w in words:
        assert w in str(info.value)


def test_symlink_loop_without_a_suffix_is_not_taken_for_an_arch_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("mymodel").symlink_to("mymodel")
    with pytest.raises(RtresnetError, match="symbolic link loop"):
        load("mymodel")


@pytest.mark.parametrize("content", [{}, {"readme.txt": b"x", "weights.npy": b"y"}])
def test_predict_on_a_folder_without_images(env, tmp_path, content):
    for name, data in content.items():
        (tmp_path / name).write_bytes(data)
    result = invoke("predict", env.rgb, tmp_path)
    assert_one_line_error(result, "no image files found", str(tmp_path))


def test_file_where_a_folder_is_expected(env, tmp_path):
    (tmp_path / "file.txt").write_text("x")
    result = invoke("quantize", env.rgb, "--int8", "--calib-data", "synthetic", "--calib-size", "2",
                    "--cache-dir", tmp_path / "file.txt", "-o", tmp_path / "q.onnx")
    assert_clean_failure(result, "file.txt", "is a file")
    assert files_under(tmp_path) == {"file.txt"}


def test_folder_where_a_model_file_is_expected(env, tmp_path):
    result = invoke("quantize", tmp_path, "--fp16")
    assert_clean_failure(result, "is a directory")


# ---------------------------------------------------------------- paths: outputs

def test_output_under_a_regular_file_fails_even_for_root(env, tmp_path):
    (tmp_path / "file.txt").write_text("x")
    for args in (("quantize", env.rgb, "--fp16", "--no-verify"),
                 ("export", "--arch", "resnet18", "--num-classes", "10", "--input-size", str(SIZE), "--no-verify")):
        result = invoke(*args, "-o", tmp_path / "file.txt" / "out.onnx")
        assert_one_line_error(result, "file.txt is a file")
    assert files_under(tmp_path) == {"file.txt"} and (tmp_path / "file.txt").read_text() == "x"


def test_output_in_a_read_only_folder(env, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = invoke("quantize", env.rgb, "--fp16", "--no-verify", "-o", locked / "out.onnx")
        if os.geteuid() == 0:  # root writes anywhere: the file must then be complete, the folder otherwise clean
            assert result.exit_code == 0, result.output
            onnx.checker.check_model(str(locked / "out.onnx"))
            assert files_under(locked) == {"out.onnx"}
        else:
            assert_one_line_error(result, str(locked), "not writable")
            assert files_under(locked) == set()
    finally:
        locked.chmod(0o700)


def test_output_that_is_an_existing_folder(env, tmp_path):
    (tmp_path / "out.onnx").mkdir()
    result = invoke("export", "--arch", "resnet18", "--num-classes", "10", "--input-size", str(SIZE),
                    "--no-verify", "-o", tmp_path / "out.onnx")
    assert_one_line_error(result, "is a directory", "give a file name")
    assert files_under(tmp_path) == {"out.onnx"}


def test_output_that_is_a_fifo_is_not_replaced(env, tmp_path):
    fifo = tmp_path / "out.onnx"
    os.mkfifo(fifo)
    result = run_without_hanging(lambda: invoke("quantize", env.rgb, "--fp16", "--no-verify", "-o", fifo), fifo)
    assert_one_line_error(result, "FIFO, not a regular file")
    assert fifo.is_fifo() and files_under(tmp_path) == {"out.onnx"}


@pytest.mark.parametrize("via_link", [False, True])
def test_output_equal_to_the_input_is_refused(env, tmp_path, via_link):
    model = tmp_path / "m.onnx"
    model.write_bytes(env.rgb.read_bytes())
    out = model
    if via_link:
        out = tmp_path / "alias.onnx"
        out.symlink_to(model)
    before = model.read_bytes()
    result = invoke("quantize", model, "--fp16", "--no-verify", "-o", out)
    assert_one_line_error(result, "overwrite", "another --output")
    assert model.read_bytes() == before


# fp16.py silences these converter warnings with catch_warnings, which is process-wide: two threads race on it
@pytest.mark.filterwarnings("ignore:the float32 number:UserWarning")
def test_two_writers_to_one_output_leave_one_complete_file(env, tmp_path):
    from rtresnet.precision.fp16 import convert_fp16

    variants = {"all": (), "keep_conv": ("Conv",)}  # two different results for the same file
    reference = {k: convert_fp16(env.rgb, tmp_path / f"{k}.onnx", keep_fp32=v, verify=False)
                 for k, v in variants.items()}
    assert reference["all"].sha256 != reference["keep_conv"].sha256
    shared = tmp_path / "shared" / "out.onnx"
    barrier, errors = threading.Barrier(2), []

    def write(keep):
        barrier.wait()
        try:
            convert_fp16(env.rgb, shared, keep_fp32=keep, verify=False)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(v,)) for v in variants.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    from rtresnet.fileutil import sha256_file

    assert sha256_file(shared) in {r.sha256 for r in reference.values()}  # one of them whole, never a mix
    assert files_under(shared.parent) == {"out.onnx"}  # no temporary file left


def test_many_concurrent_atomic_writes(tmp_path):
    target = tmp_path / "out.bin"
    payloads = [bytes([i]) * (3 << 20) for i in range(6)]
    threads = [threading.Thread(target=atomic_write_bytes, args=(target, p)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_bytes() in payloads
    assert files_under(tmp_path) == {"out.bin"}
