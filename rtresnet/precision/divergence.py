"""Which layers of a converted model drift from FP32, so a failed verification names what to ``--exclude``.

Every compute node's output is made a graph output in both models (Polygraphy's ``--onnx-outputs mark all``), both
run in onnxruntime on a few verification samples, and nodes are matched by name (quantization and FP16
conversion keep node names; they add Q/DQ and Cast nodes around them). A node is ranked by how much its own step
multiplies the error (1 - cosine) of its best-kept input, so the layer where an error enters ranks above the
layers that carry or amplify it later (a clipped Q/DQ before Flatten: Flatten x180, the Gemm after it x4).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Nodes that only move or convert values: they are looked through, not ranked.
_PLUMBING = ("QuantizeLinear", "DequantizeLinear", "Cast", "Constant", "Identity")
_ERROR_FLOOR = 1e-3  # below this, 1 - cosine is FP16/INT8 rounding noise: growth from ~0 to ~0 means nothing


@dataclass(frozen=True)
class LayerDivergence:
    node: str
    op_type: str
    cosine: float  # this node's output vs FP32 (mean over samples; -1 when non-finite values appear)
    growth: float  # (1 - cosine) of the output over that of its best-kept input, each plus a noise floor

    def describe(self) -> str:
        return f"{self.node} ({self.op_type}, cosine {self.cosine:.3f}, error x{self.growth:.3g} here)"


def _node_outputs(model) -> dict[str, str]:
    """Compute node name -> its first output tensor."""
    return {n.name: n.output[0] for n in model.graph.node if n.name and n.op_type not in _PLUMBING and n.output}


def _run_all(path: Path, names: list[str], inputs: np.ndarray) -> dict[str, np.ndarray]:
    """``names`` (tensors) of ``path`` on ``inputs``, each made a graph output for this run."""
    import onnx
    import onnxruntime as ort

    from rtresnet.spec import INPUT_NAME

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    known = {v.name: v for v in list(model.graph.value_info) + list(model.graph.output)}
    have = {o.name for o in model.graph.output}
    model.graph.output.extend(known[n] for n in names if n in known and n not in have)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # Node by node as the graph says: with fusions on, onnxruntime returned a marked Conv output that was not
    # the graph's (2.7e4 where the true value was 5.8), which would blame the wrong layer.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    out_names = [o.name for o in session.get_outputs()]
    values = dict(zip(out_names, session.run(out_names, {INPUT_NAME: inputs}), strict=True))
    return {n: values[n] for n in names if n in values}


def _cosine(ref: np.ndarray, out: np.ndarray) -> float:
    ref = ref.reshape(len(ref), -1).astype(np.float64)
    out = out.reshape(len(out), -1).astype(np.float64)
    if not np.isfinite(out).all():
        return -1.0
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    cos = np.where(norms > 0, (ref * out).sum(axis=1) / np.maximum(norms, 1e-30), 1.0)
    return float(cos.mean())


def layer_divergence(reference: str | Path, candidate: str | Path, inputs: np.ndarray,
                     top: int = 5) -> list[LayerDivergence]:
    """The ``top`` nodes of ``candidate`` whose own step moves it furthest from ``reference`` (FP32) on ``inputs``
    (a few samples are enough; a handful keeps memory small on a ResNet-50)."""
    import onnx

    ref_model = onnx.load(str(reference), load_external_data=False)
    cand_model = onnx.load(str(candidate), load_external_data=False)
    ref_out, cand_out = _node_outputs(ref_model), _node_outputs(cand_model)
    common = [n for n in ref_out if n in cand_out]
    ref_vals = _run_all(Path(reference), [ref_out[n] for n in common], inputs)
    cand_vals = _run_all(Path(candidate), [cand_out[n] for n in common], inputs)
    cosine = {n: _cosine(ref_vals[ref_out[n]], cand_vals[cand_out[n]]) for n in common
              if ref_out[n] in ref_vals and cand_out[n] in cand_vals
              and ref_vals[ref_out[n]].shape == cand_vals[cand_out[n]].shape}
    producer = {o: n.name for n in ref_model.graph.node for o in n.output}
    op_type = {n.name: n.op_type for n in ref_model.graph.node}
    result = []
    for node in ref_model.graph.node:
        if node.name not in cosine:
            continue
        upstream = [cosine[producer[i]] for i in node.input if producer.get(i) in cosine]
        best_input = max(upstream, default=1.0)
        growth = (1.0 - cosine[node.name] + _ERROR_FLOOR) / (1.0 - best_input + _ERROR_FLOOR)
        result.append(LayerDivergence(node.name, op_type[node.name], cosine[node.name], growth))
    result.sort(key=lambda d: (-d.growth, d.cosine))
    return result[:top]
