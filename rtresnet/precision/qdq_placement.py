"""TensorRT Q/DQ placement, the graph NVIDIA ModelOpt's ONNX PTQ makes (checked tensor by tensor against it).

- Quantized: the inputs of weighted ops and pooling (Conv, MaxPool, GlobalAveragePool, the Flatten before the
  head) and the identity input of each residual Add. Nothing else: no op output is quantized (onnxruntime's
  default would put Q/DQ after every Conv and Add, between them and their ReLU, which blocks TensorRT's
  Conv+Add+ReLU INT8 fusion and costs a requantize per block).
- The node that produces a graph output (the ``fc`` Gemm) stays float: Q/DQ on the logits clips them and made
  onnxruntime quantize every bias in FP16, which overflowed to -inf on a realistic ResNet-50.
- onnxruntime wraps both inputs of a residual Add; TensorRT fuses Conv+BN+Add+ReLU into one INT8 kernel only
  when the Conv-side input stays float, so that pair is dropped after quantization (ModelOpt does the same).
"""

from __future__ import annotations

import logging
from collections import defaultdict

from rtresnet.errors import RtresnetError

log = logging.getLogger(__name__)

# Op types whose inputs ModelOpt quantizes in a ResNet; Relu is not among them, and an Add only as a residual join.
TENSORRT_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul", "MaxPool", "AveragePool", "GlobalAveragePool",
                     "Flatten", "Add")


def output_producers(model) -> set[str]:
    """Names of the nodes that write a graph output (left float on every target: no quantized logits)."""
    outputs = {o.name for o in model.graph.output}
    return {n.name for n in model.graph.node if any(o in outputs for o in n.output)}


def tensorrt_nodes(model) -> list[str]:
    """The nodes of an FP32 graph whose inputs get Q/DQ for TensorRT (``nodes_to_quantize``)."""
    residual, heads = residual_conv_inputs(model), output_producers(model)
    return [n.name for n in model.graph.node if n.op_type in TENSORRT_OP_TYPES and n.name not in heads
            and (n.op_type != "Add" or n.name in residual)]


def _before_casts(tensor: str, producers: dict) -> str:
    """The tensor a chain of Casts starts from (FP16-remainder graphs put Casts around float tensors)."""
    while tensor in producers and producers[tensor].op_type == "Cast":
        tensor = producers[tensor].input[0]
    return tensor


def activation_quantizers(model) -> dict:
    """Activation tensor (not a weight) -> the QuantizeLinear that reads it. Casts are looked through, so an
    FP16-remainder graph and an FP32 one describe the same placement."""
    producers = {o: n for n in model.graph.node for o in n.output}
    constants = {t.name for t in model.graph.initializer} | {o for n in model.graph.node if n.op_type == "Constant"
                                                              for o in n.output}
    result = {}
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear":
            continue
        tensor = _before_casts(node.input[0], producers)
        if tensor not in constants:
            result[tensor] = node
    return result


def quantized_activations(model) -> dict[str, str]:
    """Activation tensor -> the op type that produces it ("graph input" for the input), for every quantized one."""
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    return {t: producers.get(t, "graph input") for t in activation_quantizers(model)}


def quantized_outputs(model) -> list[str]:
    """Graph outputs that come out of a DequantizeLinear (through Casts): quantized logits, never wanted."""
    producers = {o: n for n in model.graph.node for o in n.output}
    return [out.name for out in model.graph.output
            if (node := producers.get(_before_casts(out.name, producers))) is not None
            and node.op_type == "DequantizeLinear"]


def residual_conv_inputs(model) -> dict[str, int]:
    """Residual Add node name -> index of its Conv-side (residual branch) input, from the FP32 graph.

    When both inputs come from Convs (a downsampling block, whose shortcut is a 1x1 Conv), the shortcut Conv
    reads the block input, which other nodes read too; the branch's last Conv reads a tensor only it reads.
    """
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, int] = defaultdict(int)
    for n in model.graph.node:
        for i in n.input:
            consumers[i] += 1
    result = {}
    for node in model.graph.node:
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        convs = [i for i, t in enumerate(node.input) if t in producers and producers[t].op_type == "Conv"]
        if not convs or not all(t in producers for t in node.input):
            continue  # not a residual join (e.g. a bias Add on a constant)
        if len(convs) == 2:
            convs.sort(key=lambda i: consumers[producers[node.input[i]].input[0]])
        result[node.name] = convs[0]
    return result


def keep_identity_qdq_only(model, conv_inputs: dict[str, int]) -> int:
    """Rewire each residual Add's Conv-side input past its Q/DQ pair; returns how many Adds were changed."""
    producers = {o: n for n in model.graph.node for o in n.output}
    changed = 0
    for node in model.graph.node:
        if node.name not in conv_inputs:
            continue
        idx = conv_inputs[node.name]
        dq = producers.get(node.input[idx])
        q = producers.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if q is None or q.op_type != "QuantizeLinear":
            continue  # this Add was excluded from quantization: nothing to move
        node.input[idx] = q.input[0]
        changed += 1
    _drop_dead_nodes(model)
    if conv_inputs and not changed:
        raise RtresnetError("found no Q/DQ pair on any residual Add; the graph was not quantized as expected")
    return changed


def _drop_dead_nodes(model) -> None:
    """Remove Q/DQ nodes whose outputs nobody reads any more (repeat: a Q feeds only its DQ)."""
    graph_outputs = {o.name for o in model.graph.output}
    while True:
        used = {i for n in model.graph.node for i in n.input} | graph_outputs
        dead = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            model.graph.node.remove(n)
    used = {i for n in model.graph.node for i in n.input}
    for init in [t for t in model.graph.initializer if t.name not in used]:
        model.graph.initializer.remove(init)


def to_fp16_remainder(model):
    """Make the float remainder of a Q/DQ graph FP16 (scales and DQ outputs FP16, float32 I/O kept).

    FP16 scales on QuantizeLinear/DequantizeLinear need opset 19; the ResNet ops this graph uses are the
    same in 17 and 19, and onnx's version converter checks that.
    """
    import onnx
    from onnx import version_converter

    from rtresnet.precision.fp16 import to_fp16

    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 19:
        try:
            model = version_converter.convert_version(model, 19)
        except Exception as e:  # the converter raises bare RuntimeError/ValidationError on unsupported ops
            raise RtresnetError(f"cannot move this opset {opset} model to opset 19 for FP16 Q/DQ scales ({e}); "
                                "use high_precision='fp32'") from None
    model = to_fp16(model)
    prune_opset_imports(model)
    set_ir_version(model)
    onnx.checker.check_model(model)
    return model


def set_ir_version(model) -> None:
    """The lowest IR version the model's opsets need (the version converter keeps the old one: IR 8 with opset 19
    is an invalid pairing that strict parsers refuse)."""
    from onnx.helper import find_min_ir_version_for

    model.ir_version = max(model.ir_version, find_min_ir_version_for(list(model.opset_import)))


def prune_opset_imports(model) -> None:
    """Drop opset imports no node uses (onnxruntime's optimizer declares its contrib domains; parsers such
    as TensorRT's need not see them)."""
    used = {n.domain or "" for n in model.graph.node} | {""}
    keep = [o for o in model.opset_import if (o.domain or "") in used or o.domain == "ai.onnx"]
    del model.opset_import[:]
    model.opset_import.extend(keep)
