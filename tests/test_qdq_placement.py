"""The TensorRT Q/DQ placement rules, checked on ResNets whose BN statistics come from real photos.

The tensor-by-tensor comparison with ModelOpt itself is tests/test_modelopt_reference.py; these rules are what it
found, stated so that a regression names the rule it breaks.
"""

from __future__ import annotations

import onnx
import pytest

from rtresnet.precision import quantize_int8
from rtresnet.precision.qdq_placement import (
    activation_quantizers,
    output_producers,
    quantized_activations,
    quantized_outputs,
    residual_conv_inputs,
    tensorrt_nodes,
)


@pytest.fixture(scope="module")
def quantized(realistic_onnx, tmp_path_factory):
    """(arch, target) -> (FP32 model, quantized model), minmax on 32 photo crops."""
    out, cache, done = tmp_path_factory.mktemp("placement"), tmp_path_factory.mktemp("calib"), {}

    def get(arch: str, target: str):
        if (arch, target) not in done:
            source, crops = realistic_onnx(arch, 64)
            result = quantize_int8(source, out / f"{arch}-{target}.onnx", calib_data=str(crops), method="minmax",
                                   target=target, cache_dir=cache, accept_mismatch=True)
            done[arch, target] = (onnx.load(str(source)), onnx.load(str(result.path)))
        return done[arch, target]
    return get


def _consumers(model) -> dict[str, list]:
    found: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_tensorrt_quantizes_exactly_conv_and_pooling_inputs_and_identity_inputs(quantized, arch):
    fp32, model = quantized(arch, "tensorrt")
    acts = quantized_activations(model)
    consumers = _consumers(fp32)
    producers = {o: n for n in fp32.graph.node for o in n.output}
    wanted = set()
    for node in fp32.graph.node:
        if node.op_type in ("Conv", "MaxPool", "GlobalAveragePool", "Flatten"):
            wanted.add(node.input[0])
    for add, conv_side in residual_conv_inputs(fp32).items():
        node = next(n for n in fp32.graph.node if n.name == add)
        wanted.add(node.input[1 - conv_side])
    assert set(acts) == wanted
    # never an op output on its way to a ReLU (that would block Conv+Add+ReLU fusion), never an Add output
    for tensor in acts:
        if tensor in producers:
            assert producers[tensor].op_type != "Add"
            assert all(c.op_type != "Relu" for c in consumers[tensor]), tensor


@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
def test_logits_are_never_quantized(quantized, target):
    fp32, model = quantized("resnet18", target)
    assert quantized_outputs(model) == []
    head = output_producers(fp32)
    assert head == {"/fc/Gemm"}
    gemm = next(n for n in model.graph.node if n.name == "/fc/Gemm")
    assert gemm.output[0] not in activation_quantizers(model)  # no Q/DQ after the head


def test_each_residual_add_has_one_qdq_input_on_the_identity(quantized):
    fp32, model = quantized("resnet50", "tensorrt")
    producers = {o: n for n in model.graph.node for o in n.output}
    adds = [n for n in model.graph.node if n.op_type == "Add"]
    assert len(adds) == 16
    for add in adds:
        kinds = sorted(producers[i].op_type for i in add.input)
        assert kinds == ["Conv", "DequantizeLinear"], (add.name, kinds)


def test_tensorrt_file_declares_an_ir_version_its_opset_allows(quantized):
    _, model = quantized("resnet18", "tensorrt")
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert opset == 19 and model.ir_version >= onnx.helper.find_min_ir_version_for(list(model.opset_import))
    onnx.checker.check_model(model, full_check=True)


def test_tensorrt_nodes_skip_relu_plain_adds_and_the_head(realistic_onnx):
    model = onnx.load(str(realistic_onnx("resnet18", 64)[0]))
    nodes = set(tensorrt_nodes(model))
    by_type = {n.name: n.op_type for n in model.graph.node}
    assert {by_type[n] for n in nodes} == {"Conv", "MaxPool", "GlobalAveragePool", "Flatten", "Add"}
    assert "/fc/Gemm" not in nodes and not any(by_type[n] == "Relu" for n in nodes)
