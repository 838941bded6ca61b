"""A conversion that breaks the model fails loudly: non-zero exit, nothing written, the worst layers named.

The broken cases are the field's: ranges clipped by a careless calibration (the 90th percentile, on a ResNet whose
BN statistics come from real photos) and logits that overflow (inf in the head, as FP16 bias overflow made them).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from rtresnet.cli import main
from rtresnet.compare import INT8_TOLERANCE
from rtresnet.errors import RtresnetError
from rtresnet.precision import quantize_int8
from rtresnet.precision.divergence import layer_divergence
from rtresnet.precision.report import verify_conversion

CLIPPED = {"method": "percentile", "percentile": 90.0}  # clips 10 % of every activation: ruins a ResNet


def test_clipped_int8_fails_quantize_and_names_where_the_error_enters(realistic_onnx, tmp_path):
    source, crops = realistic_onnx("resnet18", 64)
    out = tmp_path / "int8.onnx"
    with pytest.raises(RtresnetError) as e:
        quantize_int8(source, out, calib_data=str(crops), target="tensorrt", cache_dir=tmp_path / "calib", **CLIPPED)
    msg = str(e.value)
    assert msg.startswith("INT8 model fails verification against FP32 on 32 samples (cosine ")
    assert "layers diverging most: /maxpool/MaxPool (MaxPool, cosine" in msg and "--exclude NAME" in msg
    assert "--accept-mismatch" in msg and "\n" not in msg
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["calib"]  # only the cached ranges


def test_accepting_the_mismatch_writes_the_model(realistic_onnx, tmp_path, caplog):
    source, crops = realistic_onnx("resnet18", 64)
    accepted = quantize_int8(source, tmp_path / "accepted.onnx", calib_data=str(crops), target="tensorrt",
                             cache_dir=tmp_path / "calib", accept_mismatch=True, **CLIPPED)
    assert not accepted.comparison and accepted.path.is_file()
    assert "written anyway: --accept-mismatch" in caplog.text


@pytest.mark.parametrize("command", ["quantize", "build"])
def test_cli_exits_non_zero_and_writes_nothing(realistic_onnx, tmp_path, command):
    source, crops = realistic_onnx("resnet18", 64)
    out = tmp_path / "m.onnx"
    args = [command, str(source), "--int8", "--calib-data", str(crops), "--calib-method", "percentile",
            "--percentile", "90", "-o", str(out)]
    args += ["--target", "tensorrt", "--cache-dir", str(tmp_path)] if command == "quantize" else \
        ["--backend", "onnxruntime"]
    before = sorted(source.parent.iterdir())
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    error = next(line for line in result.output.splitlines() if line.startswith("error: "))  # warnings before it
    assert error.startswith("error: INT8 model fails verification") and "layers diverging most: /" in error
    assert not out.exists() and sorted(source.parent.iterdir()) == before
    lowered = CliRunner().invoke(main, [*args, "--min-cosine", "0"])  # the user's own threshold
    assert lowered.exit_code == 0, lowered.output


def test_non_finite_logits_fail_and_blame_the_head(realistic_onnx, tmp_path):
    source, crops = realistic_onnx("resnet18", 64)
    model = onnx.load(str(source))
    bias = next(t for t in model.graph.initializer if t.name == "fc.bias")
    values = numpy_helper.to_array(bias).copy()
    values[:10] = np.inf  # what FP16 bias quantization overflowing did to 151 of 1000 logits
    bias.CopyFrom(numpy_helper.from_array(values, bias.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    x = np.load(crops)[:8]
    with pytest.raises(RtresnetError, match=r"non-finite outputs.*/fc/Gemm \(Gemm, cosine -1\.000"):
        verify_conversion(source, broken, x, INT8_TOLERANCE, precision="int8", hint="fix it")


def test_divergence_ranks_the_layer_where_the_error_enters(realistic_onnx, tmp_path):
    source, crops = realistic_onnx("resnet18", 64)
    model = onnx.load(str(source))
    for init in model.graph.initializer:  # one broken layer in an otherwise exact FP32 copy
        if init.name == "layer3.1.conv1.weight":
            init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), init.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    worst = layer_divergence(source, broken, np.load(crops)[:4], top=3)
    assert worst[0].node == "/layer3/layer3.1/conv1/Conv" and worst[0].cosine < 0
    assert worst[0].growth > 5 * worst[1].growth  # later layers carry the error (the Add mixes it in), far less
