"""`rtresnet quantize` through click's CliRunner: thin adapter, one-line errors, nothing half-written."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from rtresnet.cli import main
from rtresnet.spec import read_model_info


@pytest.fixture(scope="module")
def fp32_onnx(tmp_path_factory):
    from rtresnet.data.digits import DIGITS_PREPROCESSING, digits_labels
    from rtresnet.export import export_onnx

    # Random weights are enough here: the CLI's job is to parse and delegate (accuracy: test_precision.py).
    out = tmp_path_factory.mktemp("cli") / "tiny.onnx"
    return export_onnx("resnet18", out, num_classes=10, in_channels=1, input_size=32,
                       preprocessing=DIGITS_PREPROCESSING, labels=digits_labels(), verify=False).path


def invoke(*args: str):
    return CliRunner().invoke(main, ["quantize", *map(str, args)])


def test_help_has_examples():
    result = invoke("--help")
    assert result.exit_code == 0 and "rtresnet quantize engines/resnet50.onnx --fp16" in result.output
    assert "--calib-method" in result.output and "--keep-io-layers-float" in result.output


def test_fp16(fp32_onnx, tmp_path):
    result = invoke(fp32_onnx, "--fp16", "-o", tmp_path / "m16.onnx")
    assert result.exit_code == 0, result.output
    assert "vs FP32" in result.output and read_model_info(tmp_path / "m16.onnx").precision == "fp16"


def test_int8_backend_sets_target_and_cache_is_reported(fp32_onnx, tmp_path):
    args = [fp32_onnx, "--int8", "--backend", "tensorrt", "--calib-data", "digits", "--calib-size", "32",
            "--calib-method", "minmax", "--cache-dir", tmp_path / "cache", "-o", tmp_path / "m8.onnx"]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert "target tensorrt" in first.output and "32 samples" in first.output
    again = invoke(*args)
    assert again.exit_code == 0 and "reused from cache" in again.output
    assert read_model_info(tmp_path / "m8.onnx").precision == "int8"


@pytest.mark.parametrize("args, message", [
    (["--int8"], "--int8 needs --calib-data"),
    (["--fp16", "--calib-method", "minmax"], "--calib-method only apply with --int8"),
    ([], "choose --fp16 or --int8"),
    (["--int8", "--calib-data", "digits", "--calib-size", "0"], "calibration size must be a positive"),
])
def test_errors_are_one_line_and_write_nothing(fp32_onnx, tmp_path, args, message):
    result = invoke(fp32_onnx, *args, "-o", tmp_path / "out.onnx")
    assert result.exit_code == 1
    first_line = result.output.strip().splitlines()[0]
    assert first_line.startswith("error: ") and message in first_line
    assert not (tmp_path / "out.onnx").exists()
    assert list(tmp_path.iterdir()) == []


def test_default_output_names_method_and_target_and_half_is_fp16(fp32_onnx, tmp_path):
    import shutil

    model = shutil.copy(fp32_onnx, tmp_path / "tiny.onnx")
    for method in ("entropy", "minmax"):  # a second method no longer overwrites the first one's model
        result = invoke(model, "--int8", "--calib-data", "digits", "--calib-size", "16", "--calib-method", method)
        assert result.exit_code == 0, result.output
        assert f"wrote {tmp_path / f'tiny_int8-{method}_cpu.onnx'}" in result.stdout
    result = invoke(model, "--half")
    assert result.exit_code == 0 and f"wrote {tmp_path / 'tiny_fp16.onnx'}" in result.stdout
    assert "max rel err" not in result.stdout and "cosine" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx", "tiny_fp16.onnx", "tiny_int8-entropy_cpu.onnx",
                                                          "tiny_int8-minmax_cpu.onnx"]


def test_fp16_and_int8_together_is_a_usage_error(fp32_onnx, tmp_path):
    result = invoke(fp32_onnx, "--half", "--int8", "-o", tmp_path / "out.onnx")
    assert result.exit_code == 2
    assert result.output == "error: --fp16 and --int8 exclude each other; give one precision\n"
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("target, advice", [("tensorrt", True), ("cpu", False)])
def test_nvidia_calibration_advice_only_for_the_tensorrt_target(fp32_onnx, tmp_path, target, advice):
    result = CliRunner(env={"COLUMNS": "100"}).invoke(main, [
        "quantize", str(fp32_onnx), "--int8", "--target", target, "--calib-data", "digits", "--calib-size", "16",
        "-o", str(tmp_path / "m8.onnx")])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == (["warning: calibrating on 16 samples; NVIDIA recommends at least 500 for TensorRT INT8 "
                         "(ranges from fewer than 300 are less reliable)"] if advice else [])
