"""Export: graph contents, verification, metadata, fused preprocessing, determinism, and every bad input."""

from __future__ import annotations

import functools
import os
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

import rtresnet.export.exporter as export_mod
from rtresnet.cli import main
from rtresnet.errors import RtresnetError
from rtresnet.export import DEFAULT_OPSET, export_onnx
from rtresnet.fileutil import sha256_file
from rtresnet.models import get_arch, list_models
from rtresnet.models.checkpoint import save_state_dict
from rtresnet.models.factory import load_model
from rtresnet.preprocess import pixels_to_input
from rtresnet.spec import BATCH_DIM, INPUT_NAME, OUTPUT_NAME, read_model_info

SMALL = dict(num_classes=10, input_size=64)
BIG_ARCHS = {"resnet101", "resnet152", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2",
             "wide_resnet101_2"}


@functools.lru_cache(maxsize=8)
def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    return _session(path).run([OUTPUT_NAME], {INPUT_NAME: x})[0]


def _frames(n: int, size: int = 64, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def _check_graph(path: Path) -> Counter:
    onnx.checker.check_model(str(path), full_check=True)  # from the file: no copy of the weights in Python
    model = onnx.load(str(path))
    assert not list(path.parent.glob(f"{path.name}.*")), "no external-data or temp files beside the model"
    return Counter(n.op_type for n in model.graph.node)



@pytest.fixture(scope="session")
def out_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="session")
def r18(out_dir):
    return export_onnx("resnet18", out_dir / "r18.onnx", **SMALL)


@pytest.fixture(scope="session")
def r18_uint8(out_dir):
    return {fmt: export_onnx("resnet18", out_dir / f"r18_{fmt}.onnx", input_format=f"uint8-nhwc-{fmt}", **SMALL)
            for fmt in ("rgb", "bgr")}


@pytest.fixture(scope="session")
def checkpoint(out_dir) -> Path:
    torch.manual_seed(123)
    return save_state_dict(get_arch("resnet18").build(num_classes=10), out_dir / "ckpt.pth")


# ------------------------------------------------------------------------------------------------ the graph


def test_default_export_is_clean_verified_and_dynamic(r18):
    ops = _check_graph(r18.path)
    assert "BatchNormalization" not in ops and "Identity" not in ops and "Constant" not in ops
    assert ops["Conv"] == 20 and ops["Gemm"] == 1
    assert r18.opset == DEFAULT_OPSET == onnx.load(str(r18.path)).opset_import[0].version
    assert [(s.name, s.shape, s.dtype) for s in r18.inputs] == [(INPUT_NAME, (BATCH_DIM, 3, 64, 64), "float32")]
    assert [(s.name, s.shape, s.dtype) for s in r18.outputs] == [(OUTPUT_NAME, (BATCH_DIM, 10), "float32")]
    assert r18.sha256 == sha256_file(r18.path)
    v = r18.verification
    assert v and v.top1_agreement == 1.0 and v.max_abs_rel <= 1e-3 and v.samples >= 4


def test_shapes_are_inferred_for_every_tensor(r18):
    graph = onnx.load(str(r18.path)).graph
    typed = {v.name for v in graph.value_info}
    produced = {o for n in graph.node for o in n.output} - {OUTPUT_NAME}
    assert produced <= typed


@pytest.mark.parametrize("batch", [1, 2, 5, 8])
def test_dynamic_batch_runs_at_several_sizes_with_batch_independent_rows(r18, batch):
    x = pixels_to_input(_frames(batch), r18.info)
    out = _run(r18.path, x)
    assert out.shape == (batch, 10)
    single = np.concatenate([_run(r18.path, x[i:i + 1]) for i in range(batch)])
    np.testing.assert_allclose(out, single, atol=1e-5 * np.abs(single).max())


def test_fixed_batch_at_the_lowest_opset(out_dir):
    res = export_onnx("resnet18", out_dir / "r18_b4.onnx", batch=4, opset=13, **SMALL)
    assert res.inputs[0].shape == (4, 3, 64, 64) and res.outputs[0].shape == (4, 10)
    assert onnx.load(str(res.path)).opset_import[0].version == 13
    assert res.verification.samples == 8
    assert _run(res.path, pixels_to_input(_frames(4), res.info)).shape == (4, 10)
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        _run(res.path, pixels_to_input(_frames(2), res.info))


def test_eager_model_matches_onnx_at_resnet50_224(out_dir):
    res = export_onnx("resnet50", out_dir / "r50.onnx")
    ops = _check_graph(res.path)
    assert "BatchNormalization" not in ops and ops["Conv"] == 53
    assert res.inputs[0].shape == (BATCH_DIM, 3, 224, 224) and res.outputs[0].shape == (BATCH_DIM, 1000)
    assert res.verification and res.verification.max_abs_rel <= 1e-3
    assert read_model_info(res.path).preprocessing.resize == 256


@pytest.mark.parametrize("arch", [pytest.param(a, marks=pytest.mark.slow) if a in BIG_ARCHS else a
                                  for a in list_models()])
def test_every_arch_exports_and_verifies_at_64(arch, tmp_path):
    res = export_onnx(arch, tmp_path / f"{arch}.onnx", **SMALL)
    ops = _check_graph(res.path)
    assert "BatchNormalization" not in ops and res.verification
    assert res.info.arch == arch and res.outputs[0].shape == (BATCH_DIM, 10)


def test_verification_failure_raises_and_leaves_nothing(out_dir, tmp_path, monkeypatch):
    real_fuse = export_mod.fuse_batchnorm

    def broken_fuse(model):  # stands in for an exporter bug: the graph's weights drift from the model's
        fused = real_fuse(model)
        with torch.no_grad():
            fused.fc.bias += 1.0 + torch.arange(10.0)
        return fused

    monkeypatch.setattr(export_mod, "fuse_batchnorm", broken_fuse)
    with pytest.raises(RtresnetError, match="does not match PyTorch"):
        export_onnx("resnet18", tmp_path / "bad.onnx", **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_no_verify_skips_the_check(tmp_path):
    res = export_onnx("resnet18", tmp_path / "nv.onnx", verify=False, **SMALL)
    assert res.verification is None and res.path.is_file()


# ---------------------------------------------------------------------------------------- fused preprocessing


@pytest.mark.parametrize("fmt", ["rgb", "bgr"])
def test_uint8_graph_matches_the_float_pipeline(r18, r18_uint8, fmt):
    res = r18_uint8[fmt]
    assert res.inputs[0].shape == (BATCH_DIM, 64, 64, 3) and res.inputs[0].dtype == "uint8"
    assert res.path.name.endswith(".onnx") and res.info.input_format == f"uint8-nhwc-{fmt}"
    ops = _check_graph(res.path)
    assert {"Cast", "Transpose"} <= set(ops) and "BatchNormalization" not in ops
    assert ("Gather" in ops) == (fmt == "bgr")
    rgb = _frames(3, seed=7)
    reference = _run(r18.path, pixels_to_input(rgb, r18.info))  # float graph, host-side normalization
    frames = rgb if fmt == "rgb" else np.ascontiguousarray(rgb[..., ::-1])
    fused = _run(res.path, frames)
    assert np.abs(fused - reference).max() <= 1e-4 * np.abs(reference).max()
    swapped = _run(res.path, np.ascontiguousarray(frames[..., ::-1]))  # wrong channel order must show
    assert np.abs(swapped - reference).max() > 1e-3 * np.abs(reference).max()


def test_uint8_graph_keeps_the_float_graph_names(r18, r18_uint8):
    names = {i.name for i in onnx.load(str(r18.path)).graph.initializer}
    uint8_names = {i.name for i in onnx.load(str(r18_uint8["bgr"].path)).graph.initializer}
    assert "conv1.weight" in names and names <= uint8_names


# ------------------------------------------------------------------------------ metadata and determinism


def test_metadata_round_trip(r18):
    info = read_model_info(r18.path)
    assert info == r18.info
    assert info.arch == "resnet18" and info.num_classes == 10 and info.input_size == (64, 64)
    assert info.preprocessing.crop == (64, 64) and info.preprocessing.mean == (0.485, 0.456, 0.406)
    assert info.weights is None and info.rtresnet_version


def test_reexport_through_the_cli_is_byte_identical(r18, out_dir):
    out = out_dir / "r18_again.onnx"
    result = CliRunner().invoke(main, ["export", "--arch", "resnet18", "--num-classes", "10",
                                       "--input-size", "64", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == r18.path.read_bytes()
    for expected in (str(out), r18.sha256, "opset    17", "input    input ['batch', 3, 64, 64] float32",
                     "logits ['batch', 10]", "top-1 agreement 100.00%"):
        assert expected in result.stdout


def test_checkpoint_weights_labels_and_custom_preprocessing(checkpoint, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"class {i}\n" for i in range(10)) + "\n")
    out = tmp_path / "ck.onnx"
    result = CliRunner().invoke(main, ["export", "--arch", "resnet18", "--weights", str(checkpoint),
                                       "--input-size", "64", "80", "--resize", "90", "--mean", "0.5", "0.4",
                                       "0.3", "--std", "0.2", "0.2", "0.25", "--interpolation", "bicubic",
                                       "--labels", str(labels), "--max-batch", "6", "--opset", "20",
                                       "--output", str(out)])
    assert result.exit_code == 0, result.output
    info = read_model_info(out)
    assert info.weights == "ckpt.pth" and info.weights_sha256 == sha256_file(checkpoint)
    assert info.labels == tuple(f"class {i}" for i in range(10)) and info.num_classes == 10
    p = info.preprocessing
    assert (p.resize, p.crop, p.mean, p.std, p.interpolation) == (90, (64, 80), (0.5, 0.4, 0.3), (0.2, 0.2, 0.25),
                                                                  "bicubic")
    model = onnx.load(str(out))
    assert model.opset_import[0].version == 20
    assert {m.key: m.value for m in model.metadata_props}["rtresnet.max_batch"] == "6"
    # The graph computes the checkpoint's function, not a fresh random init.
    x = pixels_to_input(np.random.default_rng(0).integers(0, 256, (2, 64, 80, 3), dtype=np.uint8), info)
    with torch.inference_mode():
        expected = load_model("resnet18", weights=checkpoint).model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_run(out, x), expected, atol=1e-4 * np.abs(expected).max())


def test_reset_head_gives_a_new_classifier(checkpoint, tmp_path):
    out = tmp_path / "five.onnx"
    result = CliRunner().invoke(main, ["export", "--arch", "resnet18", "--weights", str(checkpoint), "--num-classes",
                                       "5", "--reset-head", "--input-size", "64", "--no-verify", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "verified no (--no-verify)" in result.stdout
    info = read_model_info(out)
    assert (info.num_classes, info.weights) == (5, "ckpt.pth")
    assert _run(out, pixels_to_input(_frames(2), info)).shape == (2, 5)


def test_named_weights_bring_their_preprocessing_and_labels(tmp_path, monkeypatch):
    import rtresnet.models.factory as weights_mod
    from rtresnet.spec import Preprocessing

    imagenet = Preprocessing(resize=232, crop=(224, 224), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    names = tuple(f"name {i}" for i in range(10))

    def fake_load_model(arch, **kwargs):  # a named weight without the download
        model = get_arch(arch).build(num_classes=10).eval()
        return weights_mod.LoadedModel(model, arch, 10, 3, "IMAGENET1K_V2", "ab" * 32, imagenet, names)

    monkeypatch.setattr(export_mod, "load_model", fake_load_model)
    res = export_onnx("resnet18", tmp_path / "named.onnx", weights="IMAGENET1K_V2", input_size=112)
    info = read_model_info(res.path)
    assert (info.weights, info.weights_sha256, info.labels) == ("IMAGENET1K_V2", "ab" * 32, names)
    # Exported at another size than the weights' 224 crop: the resize keeps its ratio to the crop.
    assert (info.preprocessing.crop, info.preprocessing.resize) == ((112, 112), 116)
    assert info.preprocessing.mean == imagenet.mean and res.verification
    custom = Preprocessing.default(3, (112, 112))
    with pytest.raises(RtresnetError, match="carry their own preprocessing"):
        export_onnx("resnet18", tmp_path / "named2.onnx", weights="IMAGENET1K_V2", input_size=112,
                    preprocessing=custom)
    assert not (tmp_path / "named2.onnx").exists()


def test_grayscale_model_gets_single_channel_defaults(tmp_path):
    res = export_onnx("resnet18", tmp_path / "gray.onnx", in_channels=1, input_size=(32, 48), num_classes=3,
                      verify=False)
    assert res.inputs[0].shape == (BATCH_DIM, 1, 32, 48)
    p = read_model_info(res.path).preprocessing
    assert (p.mean, p.std, p.channel_order) == ((0.5,), (0.5,), "L")


def test_default_output_goes_to_engines(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = export_onnx("resnet18", input_format="uint8-nhwc-bgr", verify=False, **SMALL)
    assert res.path == Path("engines/resnet18-uint8-nhwc-bgr.onnx") and res.path.is_file()


# ------------------------------------------------------------------------------------------------ bad input


@pytest.fixture(scope="session")
def bad_weights(checkpoint, out_dir) -> dict[str, Path]:
    truncated = out_dir / "truncated.pth"
    data = checkpoint.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    text = out_dir / "notes.pth"
    text.write_text("these are not weights\n")
    return {"missing": out_dir / "missing.pth", "truncated": truncated, "text": text, "mismatch": checkpoint}


BAD_CASES = {
    "unknown arch": (["--arch", "resnet19"], "unknown architecture"),
    "missing weights": (["--arch", "resnet18", "--weights", "{missing}"], "not found"),
    "truncated weights": (["--arch", "resnet18", "--weights", "{truncated}"], "truncated"),
    "non-checkpoint weights": (["--arch", "resnet18", "--weights", "{text}"], "checkpoint"),
    "mismatched weights": (["--arch", "resnet34", "--weights", "{mismatch}"], "does not fit"),
    "input size too small": (["--arch", "resnet18", "--input-size", "31"], "give a value in 32..4096"),
    "input size not an integer": (["--arch", "resnet18", "--input-size", "64.5"], "integer"),
    "input size three values": (["--arch", "resnet18", "--input-size", "64", "64", "64"], "integer"),
    "batch zero": (["--arch", "resnet18", "--batch", "0"], "must be an integer in 1..4096"),
    "batch negative": (["--arch", "resnet18", "--batch", "-2"], "must be an integer in 1..4096"),
    "max batch zero": (["--arch", "resnet18", "--max-batch", "0"], "must be an integer in 1..4096"),
    "batch and max batch": (["--arch", "resnet18", "--batch", "2", "--max-batch", "4"], "not both"),
    "opset too low": (["--arch", "resnet18", "--opset", "12"], "13..20"),
    "opset too high": (["--arch", "resnet18", "--opset", "21"], "13..20"),
    "mean count": (["--arch", "resnet18", "--mean", "0.5", "0.5"], "one value per input channel"),
    "mean not numbers": (["--arch", "resnet18", "--mean", "red"], "numbers"),
    "crop vs input size": (["--arch", "resnet18", "--input-size", "64", "--crop", "72"], "differs"),
    "uint8 grayscale": (["--arch", "resnet18", "--in-channels", "1", "--preprocess", "uint8-nhwc-rgb"],
                        "3-channel"),
    "labels count": (["--arch", "resnet18", "--num-classes", "10", "--input-size", "64", "--labels", "{labels}"],
                     "has 9 names but the model has 10 classes"),
    "labels missing": (["--arch", "resnet18", "--labels", "{nowhere}"], "labels file nowhere.txt not found"),
    "head mismatch": (["--arch", "resnet18", "--weights", "{mismatch}", "--num-classes", "5"], "reset-head"),
}


def _assert_one_line_error(result, expected: str, exit_code: int = 1) -> None:
    assert result.exit_code == exit_code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected.lower() in lines[0].lower()


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_is_a_one_line_error_and_writes_nothing(case, bad_weights, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default output (engines/) must not appear either
    args, expected = BAD_CASES[case]
    labels = tmp_path.parent / f"{tmp_path.name}-labels.txt"
    labels.write_text("\n".join(f"c{i}" for i in range(9)))
    paths = {**{k: str(v) for k, v in bad_weights.items()}, "labels": str(labels), "nowhere": "nowhere.txt"}
    result = CliRunner().invoke(main, ["export", *(a.format(**paths) for a in args)])
    usage = case in ("unknown arch", "batch zero", "batch negative", "max batch zero")  # click range checks: exit 2
    _assert_one_line_error(result, expected, exit_code=2 if usage else 1)
    assert list(tmp_path.iterdir()) == []


def test_bad_output_paths(tmp_path, monkeypatch):
    runner = CliRunner()
    base = ["export", "--arch", "resnet18", "--output"]
    (tmp_path / "afile").write_text("")
    _assert_one_line_error(runner.invoke(main, [*base, str(tmp_path / "afile" / "m.onnx")]), "afile is a file")
    _assert_one_line_error(runner.invoke(main, [*base, str(tmp_path)]), "is a directory")
    _assert_one_line_error(runner.invoke(main, [*base, str(tmp_path / "model")]), "must end in .onnx")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    if os.access(locked, os.W_OK):  # root ignores modes: make the check see what a normal user would
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, m, *a, **k: False if Path(p) == locked else real_access(p, m))
    _assert_one_line_error(runner.invoke(main, [*base, str(locked / "m.onnx")]), "not writable")
    assert list(locked.iterdir()) == [] and not (tmp_path / "nope").exists()


def test_ensure_onnx_reuses_only_the_same_export(tmp_path):
    from rtresnet.export import ensure_onnx

    ckpt = save_state_dict(get_arch("resnet18").build(num_classes=10), tmp_path / "w.safetensors")
    path = tmp_path / "m.onnx"
    options = {"num_classes": 10, "input_size": 32, "max_batch": 4}
    first = ensure_onnx("resnet18", path, weights=ckpt, **options)
    stamp = first.stat().st_mtime_ns
    assert ensure_onnx("resnet18", path, weights=ckpt, **options).stat().st_mtime_ns == stamp  # reused
    assert ensure_onnx("resnet18", path, weights=ckpt, input_size=(32, 32)).stat().st_mtime_ns == stamp
    ensure_onnx("resnet18", path, weights=ckpt, num_classes=10, input_size=32, max_batch=8)  # another option
    assert read_model_info(path).max_batch == 8
    save_state_dict(get_arch("resnet18").build(num_classes=10), ckpt)  # same file name, other bytes
    before = read_model_info(path).weights_sha256
    ensure_onnx("resnet18", path, weights=ckpt, num_classes=10, input_size=32, max_batch=8)
    assert read_model_info(path).weights_sha256 == sha256_file(ckpt) != before


def test_output_folders_are_created(tmp_path):
    out = tmp_path / "new" / "deeper" / "m.onnx"
    result = CliRunner().invoke(main, ["export", "--arch", "resnet18", "--num-classes", "10", "--input-size", "32",
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and read_model_info(out).num_classes == 10
