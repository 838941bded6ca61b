"""FP32 ONNX -> FP16 ONNX with onnxconverter-common's maintained converter (no home-made graph surgery).

Float32 inputs and outputs are kept (``keep_io_types``), so callers feed and read the same arrays; the
converter inserts the two Casts. Nothing else is kept in FP32 by default: a ResNet is Conv/Relu/MaxPool/
Add/GlobalAveragePool/Gemm, all of which TensorRT and onnxruntime accumulate in FP32 internally, and the
logits stay far below FP16's 65504 limit (there is no Softmax/exp in the graph to overflow). ``keep_fp32``
names nodes or op types to keep in FP32 anyway (for custom heads).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from rtresnet.compare import FP16_TOLERANCE
from rtresnet.data.datasets import random_inputs
from rtresnet.errors import RtresnetError
from rtresnet.fileutil import atomic_path, check_output_path, sha256_file
from rtresnet.precision.naming import converted_path
from rtresnet.precision.report import PrecisionResult, fp16_logits_tolerance, tolerance_for, verify_conversion
from rtresnet.spec import ModelInfo, read_model_info, write_model_info
from rtresnet.steps import step

log = logging.getLogger(__name__)

VERIFY_SAMPLES = 16


def split_names(model, names: Sequence[str]) -> tuple[list[str], list[str]]:
    """User-given names -> (op types, node names) present in ``model``; unknown names are an error."""
    op_types = {n.op_type for n in model.graph.node}
    node_names = {n.name for n in model.graph.node}
    unknown = [n for n in names if n not in op_types and n not in node_names]
    if unknown:
        raise RtresnetError(f"no node or op type named {', '.join(unknown)} in the model; op types present: "
                            f"{', '.join(sorted(op_types))}")
    return [n for n in names if n in op_types], [n for n in names if n in node_names and n not in op_types]


def to_fp16(model, keep_fp32: Sequence[str] = ()):
    """In-memory FP16 conversion (float32 I/O kept); ``keep_fp32``: node names or op types left in FP32."""
    from onnxconverter_common import float16

    ops, nodes = split_names(model, keep_fp32)
    nodes = nodes + _input_preprocessing(model)
    with warnings.catch_warnings(record=True) as caught:  # one line per clamped tiny weight: summarize instead
        warnings.simplefilter("always")
        out = float16.convert_float_to_float16(model, keep_io_types=True,
                                               op_block_list=list(float16.DEFAULT_OP_BLOCK_LIST) + ops,
                                               node_block_list=nodes)
    if caught:
        log.debug("FP16 conversion clamped %d weight values to FP16's range", len(caught))
    _float32_outputs(out)
    return out


def _float32_outputs(model) -> None:
    """Undo the converter's Cast to FP16 after a node kept in FP32 that produces a graph output (``--keep-fp32
    Gemm``): it ignores ``keep_io_types`` there, so the logits came out float16, inf beyond 65504. The kept node's
    float32 result becomes the output again."""
    import onnx

    f16 = onnx.TensorProto.FLOAT16
    producer = {o: n for n in model.graph.node for o in n.output}
    for output in model.graph.output:
        node = producer.get(output.name)
        if output.type.tensor_type.elem_type != f16 or node is None or node.op_type != "Cast":
            continue
        if onnx.helper.get_attribute_value(next(a for a in node.attribute if a.name == "to")) != f16:
            continue
        source = node.input[0]  # the float32 result of the kept node
        for n in model.graph.node:
            n.input[:] = [output.name if i == source else i for i in n.input]
            n.output[:] = [output.name if o == source else o for o in n.output]
        model.graph.node.remove(node)
        output.type.tensor_type.elem_type = onnx.TensorProto.FLOAT


def _input_preprocessing(model) -> list[str]:
    """With a fused uint8 input, the nodes before the first Conv (cast, layout change, normalization; not the Q/DQ
    of an INT8 graph). They stay FP32 (a handful of elementwise ops) and the converter casts their result;
    converted, the uint8 -> float Cast would claim an FP16 output it does not produce."""
    import onnx

    if all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in model.graph.input):
        return []
    first_conv = next((i for i, n in enumerate(model.graph.node) if n.op_type == "Conv"), 0)
    return [n.name for n in model.graph.node[:first_conv]
            if n.name and n.op_type not in ("QuantizeLinear", "DequantizeLinear")]


def check_fp32_source(path: Path) -> ModelInfo:
    """The rtresnet metadata of an FP32 ONNX whose weights are all finite (checked before converting anything)."""
    info = read_model_info(path)
    if info.precision != "fp32":
        raise RtresnetError(f"{path} is already {info.precision}; convert the FP32 export instead")
    _check_finite_initializers(path)
    return info


def _check_finite_initializers(path: Path) -> None:
    """An ONNX written or edited elsewhere can hold NaN/inf weights that `rtresnet export` would have refused; name
    the first such initializer instead of failing later on the FP32 model's own NaN logits."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    bad = []
    for init in onnx.load(str(path)).graph.initializer:
        values = numpy_helper.to_array(init)
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            nan = int(np.isnan(values).sum())
            bad.append(f"{init.name} has {nan} NaN and {int((~np.isfinite(values)).sum()) - nan} infinite values")
    if bad:
        more = f" (and {len(bad) - 1} more initializers)" if len(bad) > 1 else ""
        raise RtresnetError(f"{path}: weights: {bad[0]}{more}; its logits would be NaN or inf: export it again "
                            "from finite weights (rtresnet export --weights CHECKPOINT)")


def convert_fp16(onnx_path: str | Path, output: str | Path | None = None, *, keep_fp32: Sequence[str] = (),
                 verify: bool = True, min_cosine: float | None = None, min_agreement: float | None = None,
                 accept_mismatch: bool = False) -> PrecisionResult:
    """Convert an rtresnet FP32 ONNX to FP16 (float32 I/O) and compare it with the FP32 model.

    Raises ``RtresnetError`` naming the worst layers when the comparison fails ``FP16_TOLERANCE`` (or
    ``min_cosine`` / ``min_agreement``); nothing is written then, unless ``accept_mismatch``.
    """
    import onnx

    start = time.perf_counter()
    source = Path(onnx_path)
    tolerance = tolerance_for(FP16_TOLERANCE, min_cosine, min_agreement)
    info = check_fp32_source(source)
    out_path = check_output_path(output if output is not None else converted_path(source, precision="fp16"))
    if out_path.resolve() == source.resolve():
        raise RtresnetError("the output would overwrite the FP32 source; give another --output")
    with step("convert"):
        model = to_fp16(onnx.load(str(source)), keep_fp32)
        new_info = info.with_precision("fp16")
        write_model_info(model, new_info)
    comparison = None
    with atomic_path(out_path) as tmp:
        with step("convert"):
            tmp.write_bytes(model.SerializeToString())
        if verify:
            with step("verify"):
                comparison = verify_conversion(source, tmp, random_inputs(info, VERIFY_SAMPLES),
                                               fp16_logits_tolerance(model, tolerance),
                                               precision="fp16", accept_mismatch=accept_mismatch,
                                               hint="keep those layers in FP32 with --keep-fp32 NAME_OR_OPTYPE")
    ops, nodes = split_names(model, keep_fp32)
    n_fp16 = sum(1 for n in model.graph.node if n.op_type != "Cast" and n.op_type not in ops and n.name not in nodes)
    result = PrecisionResult(path=out_path, sha256=sha256_file(out_path), precision="fp16", info=new_info,
                             source_path=source, source_sha256=sha256_file(source),
                             size_bytes=out_path.stat().st_size, source_size_bytes=source.stat().st_size,
                             quantized_nodes=n_fp16, target=None, method=None, calibration_seconds=None,
                             cache_key=None, cache_hit=False, comparison=comparison,
                             seconds=time.perf_counter() - start)
    log.debug("%s", result.summary())
    return result
