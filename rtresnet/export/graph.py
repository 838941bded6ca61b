"""PyTorch module -> clean ONNX ModelProto: BatchNorm folding, the uint8 input wrapper, and graph tidying.

Kept apart from ``export.py`` (argument checks, metadata, files) so the graph recipe reads in one place.
"""

from __future__ import annotations

import copy
import io
import logging
import warnings
from collections import Counter

import onnx
import torch
from onnx import numpy_helper
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from rtresnet.errors import RtresnetError
from rtresnet.spec import BATCH_DIM, INPUT_NAME, OUTPUT_NAME, Preprocessing

log = logging.getLogger(__name__)


def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) with every BatchNorm2d folded into the Conv2d that feeds it.

    ResNet keeps torchvision's names, so the pairs are siblings ``convK``/``bnK`` and, inside ``downsample``
    Sequentials, a Conv2d followed by a BatchNorm2d. Folding here, in PyTorch, makes the ONNX graph
    BN-free whatever the exporter's own passes do; the verification compares against the unfused model.
    """
    fused = copy.deepcopy(model).eval()
    for parent in fused.modules():
        children = dict(parent.named_children())
        if isinstance(parent, nn.Sequential):
            pairs = list(zip(list(children)[:-1], list(children)[1:], strict=True))
        else:
            pairs = [(name, "bn" + name[len("conv"):]) for name in children if name.startswith("conv")]
        for conv_name, bn_name in pairs:
            conv, bn = children.get(conv_name), children.get(bn_name)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(parent, bn_name, nn.Identity())
    left = [name for name, m in fused.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise RtresnetError(f"cannot fold BatchNorm layers {left[:3]} into a preceding conv; the model does not "
                            "follow the ResNet layout (convK followed by bnK)")
    return fused


class Uint8Input(nn.Module):
    """Wrap a float-NCHW model so it takes (N, H, W, 3) uint8 frames, already resized and cropped.

    Does in the graph what ``rtresnet.preprocess.normalize`` does on the host, in the same order
    (cast, /value_range, -mean, /std), so the logits match the float pipeline's; ``bgr`` reverses the channel
    axis first. The cast comes first because TensorRT takes uint8 only at a network input feeding a Cast.
    """

    INNER = "model"  # attribute holding the wrapped model; its scope is stripped from ONNX names

    def __init__(self, model: nn.Module, prep: Preprocessing, bgr: bool) -> None:
        super().__init__()
        self.model = model
        self.bgr = bgr
        self.register_buffer("order", torch.tensor([2, 1, 0], dtype=torch.int64), persistent=False)
        self.register_buffer("scale", torch.tensor(float(prep.value_range), dtype=torch.float32), persistent=False)
        self.register_buffer("mean", torch.tensor(prep.mean, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(prep.std, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.to(torch.float32)
        if self.bgr:
            x = x.index_select(3, self.order)
        x = x.permute(0, 3, 1, 2)
        x = (x / self.scale - self.mean) / self.std
        return self.model(x)


def trace_to_onnx(module: nn.Module, example: torch.Tensor, *, opset: int, dynamic_batch: bool) -> onnx.ModelProto:
    """Export ``module`` (already fused, eval mode) and return the tidied ``onnx.ModelProto``.

    Exporter choice: the TorchScript exporter (``dynamo=False``). For these static, convolution-only graphs it
    produces a clean graph (Conv/Relu/Add/MaxPool/GlobalAveragePool/Flatten/Gemm), honours every opset in
    13..20 natively, is byte-deterministic and needs no onnxscript. The dynamo exporter in torch 2.13 is 2-3x
    slower on ResNet-50, emits opset 18 and then fails to down-convert it to 17 (it silently keeps 18), and
    lowers the pooling to ReduceMean+Reshape. Its deprecation warning is silenced on purpose.
    """
    buf = io.BytesIO()
    axes = {INPUT_NAME: {0: BATCH_DIM}, OUTPUT_NAME: {0: BATCH_DIM}} if dynamic_batch else None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), buf, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_axes=axes, do_constant_folding=True,
                          export_params=True)
    model = onnx.load_from_string(buf.getvalue())
    if isinstance(module, Uint8Input):
        _strip_scope(model, Uint8Input.INNER)
    _drop_identities(model)
    _constants_to_initializers(model)
    _drop_unused_initializers(model)
    ops = Counter(n.op_type for n in model.graph.node)
    if ops.get("BatchNormalization"):
        raise RtresnetError(f"{ops['BatchNormalization']} BatchNormalization nodes survived the export; "
                            "report this with `rtresnet --debug export ...`")
    _infer_shapes(model)
    log.debug("exported graph: %s", dict(sorted(ops.items())))
    return model


def _infer_shapes(model: onnx.ModelProto) -> None:
    """Record the shape of every intermediate tensor (TensorRT and onnxruntime's optimizers use them), strictly.

    Inference runs on a weightless copy whose initializers are declared as inputs of the same type and shape:
    the result is the same, but onnx's Python API would otherwise copy the weights through protobuf four times
    (5-15 s for the 500 MB wide_resnet101_2, milliseconds this way).
    """
    light = onnx.ModelProto()
    light.CopyFrom(model)
    graph = light.graph
    graph.input.extend(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                       for t in graph.initializer)
    del graph.initializer[:]
    del graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(light, check_type=True, strict_mode=True, data_prop=True)
    del model.graph.value_info[:]
    model.graph.value_info.extend(inferred.graph.value_info)


def _strip_scope(model: onnx.ModelProto, scope: str) -> None:
    """Rename ``/scope/conv1/Conv`` -> ``/conv1/Conv`` and ``scope.conv1.weight`` -> ``conv1.weight``, so the
    wrapped model's nodes and weights keep the names they have in a float-input export (exclude lists, and
    per-layer reports of later stages, then work for every input format)."""
    def rename(name: str) -> str:
        for prefix, repl in ((f"/{scope}/", "/"), (f"{scope}.", "")):
            if name.startswith(prefix):
                return repl + name[len(prefix):]
        return name

    graph = model.graph
    for node in graph.node:
        node.name = rename(node.name)
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
    for value in (*graph.initializer, *graph.value_info):
        value.name = rename(value.name)


def _drop_identities(model: onnx.ModelProto) -> None:
    """Remove Identity nodes. The exporter inserts them where two folded constants are equal (all-zero fused
    biases of an untrained model) to share one initializer; consumers can read the initializer directly."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    alias = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity" and n.output[0] not in outputs}
    if not alias:
        return
    keep = [n for n in graph.node if not (n.op_type == "Identity" and n.output[0] in alias)]
    for node in keep:
        for i, name in enumerate(node.input):
            while name in alias:
                name = alias[name]
            node.input[i] = name
    del graph.node[:]
    graph.node.extend(keep)


def _constants_to_initializers(model: onnx.ModelProto) -> None:
    """Constant nodes (the uint8 wrapper's mean/std/scale/channel order) become named initializers, as the
    folded weights are: one kind of constant in the graph, and quantizers/TensorRT see them as weights."""
    graph = model.graph
    consts = [n for n in graph.node if n.op_type == "Constant" and len(n.attribute) == 1
              and n.attribute[0].name == "value"]
    for node in consts:
        tensor = numpy_helper.to_array(node.attribute[0].t)
        graph.initializer.append(numpy_helper.from_array(tensor, node.output[0]))
    keep = [n for n in graph.node if n not in consts]
    del graph.node[:]
    graph.node.extend(keep)


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    graph = model.graph
    used = {name for n in graph.node for name in n.input} | {o.name for o in graph.output}
    keep = [init for init in graph.initializer if init.name in used]
    if len(keep) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(keep)
