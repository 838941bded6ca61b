"""What an artifact is, read without running it: ``inspect_model(path) -> ModelReport`` for an ONNX model (FP32,
FP16, INT8 Q/DQ, or an onnxruntime engine with its sidecar) and for a TensorRT plan with its sidecar
(``polygraphy inspect model`` is the anchor).

The graph is read with ``onnx`` (weights left on disk where stored externally). A TensorRT plan is never opened:
its facts come from the sidecar, and its Q/DQ layout from the source ONNX the sidecar names when that file is
still there and unchanged. Whether this machine can run the artifact is asked of the same checks ``load`` makes
(``backend_status``, the TensorRT load guard), none of which loads the model.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from rtresnet.errors import RtresnetError
from rtresnet.fileutil import sha256_file
from rtresnet.sidecar import Sidecar, check_engine_io, sidecar_path
from rtresnet.spec import QUANT_META_PREFIX, ModelInfo, TensorSpec, graph_io, graph_problem

Kind = Literal["onnx", "onnxruntime-engine", "tensorrt-plan", "openvino-blob"]
TRT_SUFFIXES = (".engine", ".plan", ".trt")  # as rtresnet.runtime.loader
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
# Operators onnxruntime's optimizer fuses Q/DQ groups into: they run in INT8 themselves. Their weight is input 3
# and its scale input 4 (QLinearConv, QLinearMatMul, com.microsoft QGemm).
FUSED_INT8_OPS = ("QLinearConv", "QLinearMatMul", "QGemm", "QLinearAdd", "QLinearMul", "QLinearGlobalAveragePool",
                  "QLinearAveragePool", "QLinearConcat", "QLinearLeakyRelu", "QLinearSigmoid", "QLinearSoftmax",
                  "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear")
_WEIGHTED_FUSED = ("QLinearConv", "QLinearMatMul", "QGemm")
DEFAULT_TOP_OPS = 8


@dataclass(frozen=True)
class QuantizedOp:
    """Nodes of one op type that run in INT8: those taking a DequantizeLinear output (through Casts), or fused
    INT8 kernels; ``total``: nodes of that type in the graph; ``dq_inputs``: DequantizeLinear outputs they read."""

    op_type: str
    nodes: int
    total: int
    dq_inputs: int


@dataclass(frozen=True)
class Quantization:
    quantize_nodes: int
    dequantize_nodes: int
    ops: tuple[QuantizedOp, ...]
    per_channel_weights: int             # weight scales with one value per output channel
    per_tensor_weights: int
    weight_dtype: str | None             # "int8" | "uint8"
    activation_dtype: str | None         # from the QuantizeLinear zero points
    activation_symmetric: bool | None    # every activation zero point is 0
    settings: dict[str, str] = field(default_factory=dict)  # rtresnet_quantization.* metadata (target, method...)

    @property
    def weight_scales(self) -> str:
        if self.per_channel_weights and self.per_tensor_weights:
            return "mixed"
        return "per-channel" if self.per_channel_weights else "per-tensor" if self.per_tensor_weights else "none"


@dataclass(frozen=True)
class GraphSummary:
    """One ONNX graph: versions, node and initializer counts, and the precision its tensors show."""

    path: Path
    ir_version: int
    opsets: dict[str, int]               # domains the nodes use ("ai.onnx" for the default one)
    producer: str
    nodes: int
    op_counts: tuple[tuple[str, int], ...]   # most frequent first
    initializers: dict[str, int]         # dtype name -> count
    precision: str                       # "fp32" | "fp16" | "int8"
    float_precision: str                 # the float part's: "fp32" | "fp16"
    quantization: Quantization | None


@dataclass(frozen=True)
class Runnable:
    ok: bool
    detail: str

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class ModelReport:
    path: Path
    kind: Kind
    size_bytes: int
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    precision: str                       # from the graph; a plan's from its sidecar
    model: ModelInfo | None              # rtresnet metadata (None for a foreign ONNX)
    graph: GraphSummary | None           # a plan's: its source ONNX when that is still there unchanged
    sidecar: Sidecar | None
    plan_opened: bool                    # False for TensorRT plans: only TensorRT reads them
    runnable: Runnable | None            # None when not asked (check_machine=False)
    notes: tuple[str, ...] = ()

    @property
    def profile(self) -> dict | None:
        return self.sidecar.profile if self.sidecar else None

    def to_dict(self) -> dict:
        graph = None
        if self.graph is not None:
            graph = asdict(self.graph)
            graph["path"] = str(self.graph.path)
            graph["op_counts"] = dict(self.graph.op_counts)
            if self.graph.quantization is not None:
                graph["quantization"]["weight_scales"] = self.graph.quantization.weight_scales
        return {"path": str(self.path), "kind": self.kind, "size_bytes": self.size_bytes, "sha256": self.sha256,
                "inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs],
                "precision": self.precision, "model": self.model.to_dict() if self.model else None,
                "profile": self.profile, "graph": graph,
                "sidecar": json.loads(self.sidecar.to_json()) if self.sidecar else None,
                "plan_opened": self.plan_opened,
                "runnable": asdict(self.runnable) if self.runnable is not None else None, "notes": list(self.notes)}


# -- reading -------------------------------------------------------------------------------------------------------
def inspect_model(path: str | Path, *, check_machine: bool = True) -> ModelReport:
    """Describe the ONNX model or engine at ``path``; raise ``RtresnetError`` for anything that is neither, or whose
    sidecar belongs to another engine. ``check_machine``: also ask whether this machine can run it."""
    path = Path(path)
    if path.is_dir():
        raise RtresnetError(f"{path} is a folder; give an ONNX model or an engine file")
    if not path.is_file():
        if path.exists():  # a FIFO or device: hashing it could block forever
            raise RtresnetError(f"{path} is not a regular file (a pipe or device); give an ONNX model or an engine")
        raise RtresnetError(f"file not found: {path}")
    if path.name.endswith(".json") and (engine := path.with_name(path.name[:-5])).is_file():
        raise RtresnetError(f"{path} is a sidecar; inspect its engine instead: rtresnet inspect {engine}")
    is_plan = path.suffix.lower() in TRT_SUFFIXES
    has_sidecar = sidecar_path(path).is_file()
    if not is_plan and path.suffix.lower() != ".onnx" and not has_sidecar:
        raise RtresnetError(f"{path} is neither an ONNX model (.onnx) nor an engine (.engine/.plan/.trt with its "
                            f"sidecar {sidecar_path(path).name})")
    sha256, size = sha256_file(path), path.stat().st_size
    sidecar = _read_sidecar(path, sha256) if has_sidecar or is_plan else None
    if sidecar is not None and sidecar.backend in ("tensorrt", "openvino"):
        return _plan_report(path, size, sha256, sidecar, check_machine)
    if is_plan:
        raise RtresnetError(f"{path} has a TensorRT suffix but its sidecar says it is an {sidecar.backend} engine; "
                            f"rename it to .onnx or rebuild it")
    return _onnx_report(path, size, sha256, sidecar, check_machine)


def _read_sidecar(path: Path, sha256: str) -> Sidecar:
    side = sidecar_path(path)
    if not side.is_file():
        raise RtresnetError(f"no sidecar {side.name} beside {path}; TensorRT plans are described by their sidecar: "
                            f"rebuild it with `rtresnet build`")
    sidecar = Sidecar.from_json(side.read_text(), source=str(side))
    if sidecar.engine_sha256 != sha256:
        command = sidecar.extra.get("build_command")
        raise RtresnetError(f"{side.name} describes another engine (sha256 {sidecar.engine_sha256[:12]}..., this "
                            f"file is {sha256[:12]}...): the engine was changed or replaced; rebuild it"
                            + (f" with `{command}`" if command else " with `rtresnet build --force`"))
    return sidecar


def _load_onnx(path: Path):
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # DecodeError for truncated or foreign bytes
        raise RtresnetError(f"{path} is not a readable ONNX model ({type(e).__name__}: truncated or not ONNX); "
                            f"export it again with `rtresnet export`") from None
    if not model.graph.node or not model.graph.output:
        raise RtresnetError(f"{path} holds no ONNX graph (truncated or not ONNX); export it again with "
                            f"`rtresnet export`")
    return model


def _model_info(model, path: Path) -> tuple[ModelInfo | None, str | None]:
    """The graph's rtresnet metadata, or None and why not (foreign, malformed, or contradicting the graph)."""
    props = {p.key: p.value for p in model.metadata_props}
    try:
        info = ModelInfo.from_metadata(props, source=str(path))
    except RtresnetError as e:
        return None, str(e)
    if (problem := graph_problem(info, *graph_io(model.graph))) is not None:
        return None, f"{problem}; re-export it with `rtresnet export`"
    return info, None


def _onnx_report(path: Path, size: int, sha256: str, sidecar: Sidecar | None, check_machine: bool) -> ModelReport:
    model = _load_onnx(path)
    inputs, outputs = graph_io(model.graph)
    info, why = _model_info(model, path)
    notes = [] if why is None else [f"metadata not used: {why}"]
    graph = summarize_graph(model, path)
    if sidecar is not None:
        check_engine_io(sidecar, path, inputs, outputs)
        info = info or sidecar.model
        if sidecar.precision != graph.precision:
            notes.append(f"the sidecar says {sidecar.precision} but the graph is {graph.precision}")
    if info is not None and info.precision != graph.precision:
        notes.append(f"the metadata says {info.precision} but the graph is {graph.precision}")
    kind: Kind = "onnxruntime-engine" if sidecar is not None else "onnx"
    runnable = _ort_runnable(sidecar) if check_machine else None
    return ModelReport(path=path, kind=kind, size_bytes=size, sha256=sha256, inputs=inputs, outputs=outputs,
                       precision=graph.precision, model=info, graph=graph, sidecar=sidecar, plan_opened=True,
                       runnable=runnable, notes=tuple(notes))


def _plan_report(path: Path, size: int, sha256: str, sidecar: Sidecar, check_machine: bool) -> ModelReport:
    """A compiled engine only its runtime reads (TensorRT plan, OpenVINO blob): described by its sidecar."""
    trt = sidecar.backend == "tensorrt"
    notes = ["TensorRT plan not opened: its facts come from the sidecar (only TensorRT reads plans)" if trt else
             "OpenVINO blob not opened: its facts come from the sidecar (only OpenVINO reads its blobs)"]
    graph, source = None, sidecar.extra.get("onnx_path")
    if source and Path(source).is_file() and sha256_file(source) == sidecar.onnx_sha256:
        graph = summarize_graph(_load_onnx(Path(source)), Path(source))
        notes.append(f"graph facts from the source ONNX {source} (sha256 matches the sidecar)")
    elif source:
        notes.append(f"source ONNX {source} is missing or changed: no graph facts")
    runnable = (_trt_runnable if trt else _blob_runnable)(sidecar, path) if check_machine else None
    return ModelReport(path=path, kind="tensorrt-plan" if trt else "openvino-blob", size_bytes=size, sha256=sha256,
                       inputs=sidecar.inputs,
                       outputs=sidecar.outputs, precision=sidecar.precision, model=sidecar.model, graph=graph,
                       sidecar=sidecar, plan_opened=False, runnable=runnable, notes=tuple(notes))


def summarize_graph(model, path: Path) -> GraphSummary:  # model: onnx.ModelProto
    from onnx.helper import tensor_dtype_to_np_dtype

    nodes = model.graph.node
    ops = Counter(n.op_type for n in nodes)
    used = {n.domain or "ai.onnx" for n in nodes} | {"ai.onnx"}
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import if (o.domain or "ai.onnx") in used}
    inits = Counter(tensor_dtype_to_np_dtype(t.data_type).name for t in model.graph.initializer)
    float_precision = "fp16" if inits["float16"] > inits["float32"] else "fp32"
    quant = _quantization(model)
    precision = "int8" if quant is not None else float_precision
    producer = " ".join(p for p in (model.producer_name, model.producer_version) if p) or "unknown"
    return GraphSummary(path=path, ir_version=model.ir_version, opsets=dict(sorted(opsets.items())),
                        producer=producer, nodes=len(nodes), op_counts=tuple(sorted(ops.items(), key=lambda kv:
                                                                                    (-kv[1], kv[0]))),
                        initializers=dict(inits.most_common()), precision=precision,
                        float_precision=float_precision, quantization=quant)


def _quantization(model) -> Quantization | None:
    from onnx import numpy_helper
    from onnx.helper import tensor_dtype_to_np_dtype

    nodes = model.graph.node
    fused = [n for n in nodes if n.op_type in FUSED_INT8_OPS]
    dq = [n for n in nodes if n.op_type == "DequantizeLinear"]
    q = [n for n in nodes if n.op_type == "QuantizeLinear"]
    if not (dq or q or fused):
        return None
    consumers: dict[str, list] = defaultdict(list)
    for n in nodes:
        for i in n.input:
            consumers[i].append(n)

    def real_consumers(tensor: str, seen=()):  # through Casts (FP16 remainders cast DQ outputs)
        for c in consumers.get(tensor, ()):
            if c.op_type == "Cast" and c.output[0] not in seen:
                yield from real_consumers(c.output[0], (*seen, c.output[0]))
            elif c.op_type not in QDQ_OPS:
                yield c

    quantized: dict[str, set[int]] = defaultdict(set)
    edges: Counter = Counter()
    for d in dq:
        for c in real_consumers(d.output[0]):
            quantized[c.op_type].add(id(c))
            edges[c.op_type] += 1
    for n in fused:
        quantized[n.op_type].add(id(n))
    totals = Counter(n.op_type for n in nodes)
    ops = tuple(sorted((QuantizedOp(op, len(ids), totals[op], edges[op]) for op, ids in quantized.items()),
                       key=lambda o: (-o.nodes, o.op_type)))

    inits = {t.name: t for t in model.graph.initializer}
    numel = {name: _numel(t.dims) for name, t in inits.items()}
    weights = [(n.input[0], n.input[1]) for n in dq if len(n.input) > 1 and n.input[0] in inits]
    weights += [(n.input[3], n.input[4]) for n in fused if n.op_type in _WEIGHTED_FUSED and len(n.input) > 4
                and n.input[3] in inits]
    weights = [(w, s) for w, s in weights
               if tensor_dtype_to_np_dtype(inits[w].data_type).name in ("int8", "uint8")]  # int32 biases aside
    per_channel = sum(1 for _, s in weights if numel.get(s, 1) > 1)
    weight_dtypes = sorted({tensor_dtype_to_np_dtype(inits[w].data_type).name for w, _ in weights})
    zero_points = [inits[n.input[2]] for n in q if len(n.input) > 2 and n.input[2] in inits]
    act_dtypes = sorted({tensor_dtype_to_np_dtype(z.data_type).name for z in zero_points})
    symmetric = None
    if zero_points and all(not z.external_data for z in zero_points):
        symmetric = all(not numpy_helper.to_array(z).any() for z in zero_points)
    settings = {p.key[len(QUANT_META_PREFIX):]: p.value for p in model.metadata_props
                if p.key.startswith(QUANT_META_PREFIX)}
    return Quantization(quantize_nodes=len(q), dequantize_nodes=len(dq), ops=ops, per_channel_weights=per_channel,
                        per_tensor_weights=len(weights) - per_channel, weight_dtype="/".join(weight_dtypes) or None,
                        activation_dtype="/".join(act_dtypes) or None, activation_symmetric=symmetric,
                        settings=dict(sorted(settings.items())))


def _numel(dims) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


# -- can this machine run it ---------------------------------------------------------------------------------------
def _ort_runnable(sidecar: Sidecar | None) -> Runnable:
    from rtresnet import backends, environment

    providers = sidecar.execution_providers if sidecar and sidecar.execution_providers else ("CPUExecutionProvider",)
    names = [b.name for p in providers for b in backends.BACKENDS.values() if b.provider == p] or ["onnxruntime"]
    runtime = environment.package_version("onnxruntime") or environment.package_version("onnxruntime-gpu")
    if names == ["onnxruntime"]:  # every onnxruntime build has the CPU provider; PyTorch's GPU probe is not needed
        import importlib.util

        if runtime is None or importlib.util.find_spec("onnxruntime") is None:
            return Runnable(False, "onnxruntime is not installed (pip install onnxruntime)")
    elif missing := [s for s in map(backends.backend_status, names) if not s]:
        return Runnable(False, "; ".join(f"{s.name}: {s.detail}" + (f" ({s.fix})" if s.fix else "")
                                         for s in missing))
    detail = f"onnxruntime {runtime} ({', '.join(providers)})"
    if sidecar is None:
        return Runnable(True, f"with {detail}")
    built_arch, here = (sidecar.cpu or {}).get("arch"), environment.cpu_info()["arch"]
    if built_arch and built_arch != here:
        return Runnable(False, f"built on a {built_arch} CPU, this machine is {here}: its fused kernels are "
                               f"{built_arch}'s; rebuild it here with `{_rebuild(sidecar)}`")
    if sidecar.onnxruntime_version and runtime and _version(runtime) < _version(sidecar.onnxruntime_version):
        return Runnable(False, f"built with onnxruntime {sidecar.onnxruntime_version}, this is {runtime} (older "
                               f"runtimes may lack its fused kernels); rebuild it with `{_rebuild(sidecar)}`")
    return Runnable(True, f"with {detail}" + (f" on {here}, as built" if built_arch else ""))


def _trt_runnable(sidecar: Sidecar, path: Path) -> Runnable:
    from rtresnet.runtime.guard import check_engine_loadable

    try:
        check_engine_loadable(sidecar, path)
    except RtresnetError as e:
        return Runnable(False, str(e))
    from rtresnet.environment import gpu_info, tensorrt_version

    gpu = gpu_info() or {}
    return Runnable(True, f"with TensorRT {tensorrt_version()} on {gpu.get('name', 'this GPU')} "
                          f"(compute capability {gpu.get('compute_capability', '?')})")


def _blob_runnable(sidecar: Sidecar, path: Path) -> Runnable:
    from rtresnet.runtime.openvino_runner import check_blob_loadable

    try:
        check_blob_loadable(sidecar, path)
    except RtresnetError as e:
        return Runnable(False, str(e))
    return Runnable(True, f"with OpenVINO {sidecar.openvino_version} on this CPU")


def _rebuild(sidecar: Sidecar) -> str:
    return sidecar.extra.get("build_command") or "rtresnet build MODEL.onnx --force"


def _version(v: str) -> tuple[int, ...]:
    import re

    return tuple(int(p) for p in re.findall(r"\d+", v)[:3])


# -- text ----------------------------------------------------------------------------------------------------------
