"""TensorRT-specific Q/DQ placement on a quantized graph, done the way NVIDIA ModelOpt does it.

onnxruntime wraps both inputs of every residual Add in Q/DQ. TensorRT fuses Conv+BN+Add+ReLU into one INT8
kernel only when the Add's Conv-side input is left in float and the identity (shortcut) input carries the
Q/DQ pair, so we drop the Conv-side pair after quantization (ModelOpt does the same).
"""

from __future__ import annotations

import logging
from collections import defaultdict

from rtresnet.errors import RtresnetError

log = logging.getLogger(__name__)


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
    onnx.checker.check_model(model)
    return model


def prune_opset_imports(model) -> None:
    """Drop opset imports no node uses (onnxruntime's optimizer declares its contrib domains; parsers such
    as TensorRT's need not see them)."""
    used = {n.domain or "" for n in model.graph.node} | {""}
    keep = [o for o in model.opset_import if (o.domain or "") in used or o.domain == "ai.onnx"]
    del model.opset_import[:]
    model.opset_import.extend(keep)
