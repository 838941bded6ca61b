"""`rtresnet predict` on real image files: formats, PIL modes, EXIF orientation, bad files, JSON, arch names."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from rtresnet.cli import main
from rtresnet.models import create_model
from rtresnet.models.checkpoint import save_state_dict
from rtresnet.runtime import load, predict_files

SIZE = 32
LABELS = tuple(f"class-{i}" for i in range(10))
GOOD = ("rgb.jpg", "rgb.png", "rgba.png", "gray.png", "gray16.png", "palette.png", "palette_rgb.png", "cmyk.jpg",
        "photo.webp", "photo.bmp", "exif.jpg", "stored.jpg", "upright.png")
LINE = r"^\s+\d+\.\d\d%\s+class-\d\s+\(\d\)$"


def pattern(seed: int, size: tuple[int, int] = (64, 48)) -> Image.Image:
    """An asymmetric RGB test image: gradients plus coarse random blocks."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 4) % 256, (yy * 5) % 256, ((xx + yy) * 3) % 256], -1).astype(np.float64)
    blocks = rng.integers(0, 256, (h // 8, w // 8, 3)).repeat(8, 0).repeat(8, 1)
    return Image.fromarray(((base + blocks) / 2).astype(np.uint8))


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared 2-core machine: avoid OpenMP spin contention
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> SimpleNamespace:
    from rtresnet.export import export_onnx

    root = tmp_path_factory.mktemp("predict")
    torch.manual_seed(0)
    ckpt = save_state_dict(create_model("resnet18", num_classes=10), root / "r18.safetensors")
    onnx = export_onnx("resnet18", root / "r18.onnx", weights=str(ckpt), input_size=SIZE, labels=LABELS).path
    img = root / "images"
    img.mkdir()
    rgb = pattern(1)
    rgb.save(img / "rgb.jpg", quality=95)
    rgb.save(img / "rgb.png")
    rgb.save(img / "photo.webp", lossless=True)
    rgb.save(img / "photo.bmp")
    rgb.convert("CMYK").save(img / "cmyk.jpg", quality=95)
    Image.merge("RGBA", (*rgb.split(), Image.new("L", rgb.size, 255))).save(img / "rgba.png")
    gray = pattern(2).convert("L")
    gray.save(img / "gray.png")
    Image.fromarray(np.asarray(gray).astype(np.uint16) * 257).save(img / "gray16.png")  # 16-bit, same levels
    palette = pattern(3).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    palette.save(img / "palette.png")
    palette.convert("RGB").save(img / "palette_rgb.png")
    # EXIF orientation 6: the stored pixels are shown rotated 90 degrees clockwise. Pick an image whose rotation
    # changes this model's top-1, so ignoring the tag would change what predict prints.
    with load(onnx, threads=1) as runner:
        stored = next(s for s in (pattern(seed) for seed in range(4, 40))
                      if len({p[0].index for p in runner.predict([s, s.transpose(Image.Transpose.ROTATE_270)],
                                                                 topk=1)}) == 2)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(img / "exif.jpg", quality=95, exif=exif)
    stored.save(img / "stored.jpg", quality=95)
    with Image.open(img / "stored.jpg") as decoded:
        decoded.transpose(Image.Transpose.ROTATE_270).save(img / "upright.png")
    bad = root / "bad"
    bad.mkdir()
    (bad / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return SimpleNamespace(root=root, ckpt=ckpt, onnx=onnx, img=img, bad=bad)


def cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def json_probs(result) -> dict[str, np.ndarray]:
    """image name -> probability vector indexed by class (from --topk 10 --json)."""
    out = {}
    for entry in json.loads(result.stdout):
        probs = np.zeros(10)
        for p in entry["predictions"]:
            probs[p["index"]] = p["probability"]
        out[Path(entry["image"]).name] = probs
    return out


@pytest.fixture(scope="module")
def all_probs(env) -> dict[str, np.ndarray]:
    result = cli("predict", env.onnx, *(env.img / n for n in GOOD), "--topk", "10", "--json")
    assert result.exit_code == 0, result.output
    return json_probs(result)


def test_every_format_and_mode_is_predicted(env):
    result = cli("predict", env.onnx, *(env.img / n for n in GOOD), "--topk", "3")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 4 * len(GOOD)
    for i, name in enumerate(GOOD):
        assert lines[4 * i] == str(env.img / name)
        for line in lines[4 * i + 1:4 * i + 4]:
            assert re.match(LINE, line), line


@pytest.mark.parametrize("image, equivalent", [
    ("rgba.png", "rgb.png"), ("photo.webp", "rgb.png"), ("photo.bmp", "rgb.png"),
    ("gray16.png", "gray.png"), ("palette.png", "palette_rgb.png"),
])
def test_modes_are_converted_like_their_8bit_equivalents(all_probs, image, equivalent):
    np.testing.assert_allclose(all_probs[image], all_probs[equivalent], atol=1e-6)
    assert all_probs[image].sum() == pytest.approx(1.0, abs=1e-5)


def test_grayscale_and_cmyk_differ_from_color_but_are_valid(all_probs):
    assert not np.allclose(all_probs["cmyk.jpg"], all_probs["rgb.jpg"], atol=1e-6)  # CMYK is not silently RGB
    assert all(all_probs[n].sum() == pytest.approx(1.0, abs=1e-5) for n in ("cmyk.jpg", "gray.png"))


def test_exif_orientation_is_honoured(all_probs):
    np.testing.assert_allclose(all_probs["exif.jpg"], all_probs["upright.png"], atol=1e-6)
    assert all_probs["exif.jpg"].argmax() != all_probs["stored.jpg"].argmax()


def test_bad_files_are_reported_and_the_others_still_print(env):
    missing = env.bad / "missing.jpg"
    result = cli("predict", env.onnx, env.img / "rgb.jpg", env.bad / "corrupt.jpg", missing, env.img / "gray.png",
                 "--topk", "2")
    assert result.exit_code == 1
    assert f"{env.img / 'rgb.jpg'}\n" in result.stdout and f"{env.img / 'gray.png'}\n" in result.stdout
    assert len(result.stdout.splitlines()) == 6
    err = result.stderr.splitlines()
    assert err[0].startswith("error: cannot decode image") and "corrupt.jpg" in err[0]
    assert err[1] == f"error: image not found: {missing}"
    assert err[2] == "error: 2 of 4 images failed"


def test_json_output_keeps_failures_in_order(env):
    result = cli("predict", env.onnx, env.bad / "corrupt.jpg", env.img / "rgb.png", "--json", "--topk", "1")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert [sorted(d) for d in doc] == [["error", "image"], ["image", "predictions"]]
    assert doc[1]["predictions"][0]["label"] in LABELS


def test_folders_expand_to_their_images(env, all_probs):
    result = cli("predict", env.onnx, env.bad, env.img / "rgb.png", "--json", "--topk", "10")
    assert result.exit_code == 1  # the folder holds only the corrupt file
    result = cli("predict", env.onnx, env.img, "--json", "--topk", "10")
    assert result.exit_code == 0, result.output
    probs = json_probs(result)
    assert sorted(probs) == sorted(GOOD)
    np.testing.assert_allclose(probs["exif.jpg"], all_probs["exif.jpg"], atol=1e-6)


def test_arch_name_runs_the_pytorch_baseline_with_weights(env, all_probs):
    result = cli("predict", "resnet18", env.img / "rgb.png", "--weights", env.ckpt, "--num-classes", "10",
                 "--input-size", str(SIZE), "--json", "--topk", "10")
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(json_probs(result)["rgb.png"], all_probs["rgb.png"], atol=1e-4)


def test_library_matches_the_cli(env, all_probs):
    with load(env.onnx, threads=1) as runner:
        results = predict_files(runner, [env.img / "gray.png", env.bad / "corrupt.jpg"], topk=10, batch_size=1)
        assert results[0].ok and not results[1].ok and "corrupt.jpg" in results[1].error
        probs = np.zeros(10)
        for p in results[0].predictions:
            probs[p.index] = p.probability
        np.testing.assert_allclose(probs, all_probs["gray.png"], atol=1e-6)


def test_usage_errors(env):
    result = cli("predict", env.onnx, env.img / "rgb.png", "--weights", "x.pth")
    assert result.exit_code == 1 and result.stderr.startswith("error: ") and "apply to an arch name only" in \
        result.stderr and result.stderr.count("\n") == 1
    result = cli("predict", "resnet18", env.img / "rgb.png")
    assert result.exit_code == 1 and "needs --weights" in result.stderr and result.stderr.count("\n") == 1
    result = cli("predict", env.root, env.img / "rgb.png")  # a folder is not an arch name either
    assert result.exit_code == 1 and result.stderr == f"error: {env.root} is a folder; give a model file (.onnx, " \
        "or an engine with its sidecar)\n"
    result = cli("predict", env.root / "absent.onnx", env.img / "rgb.png")
    assert result.exit_code == 1 and result.stderr.strip() == f"error: model file not found: {env.root / 'absent.onnx'}"
    result = cli("predict", "--help")
    assert result.exit_code == 0 and "Example:" in result.output and "rtresnet predict" in result.output


def test_labels_file_names_the_classes(env, all_probs, tmp_path):
    names = [f"organ-{i}" for i in range(10)]
    (tmp_path / "classes.txt").write_text("\n".join(names) + "\n")
    result = cli("predict", env.onnx, env.img / "rgb.png", "--labels", tmp_path / "classes.txt", "--json",
                 "--topk", "10")
    assert result.exit_code == 0, result.output
    preds = json.loads(result.stdout)[0]["predictions"]
    assert [p["label"] for p in preds] == [names[p["index"]] for p in preds]  # the file's names, same classes
    np.testing.assert_allclose(json_probs(result)["rgb.png"], all_probs["rgb.png"], atol=1e-6)
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    result = cli("predict", env.onnx, env.img / "rgb.png", "--labels", tmp_path / "three.txt")
    assert result.exit_code == 1 and result.stderr.strip().splitlines()[0] == \
        "error: 3 labels for a 10-class model; give exactly one per class"


def test_arch_name_takes_a_non_square_input_size(env):
    result = cli("predict", "resnet18", env.img / "rgb.png", "--weights", env.ckpt, "--num-classes", "10",
                 "--input-size", "48", "64", "--json", "--topk", "3")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)[0]["predictions"]) == 3
    result = cli("predict", "resnet18", env.img / "rgb.png", "--weights", env.ckpt, "--input-size", "48", "x")
    assert result.exit_code != 0 and "error:" in result.stderr
