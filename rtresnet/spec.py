"""Facts every stage shares, defined once: I/O tensor names, ONNX metadata keys, and the model's identity.

The exported ONNX carries a ``ModelInfo`` in its ``metadata_props``; every later stage (precision, build,
runtime, bench) reads it back with ``read_model_info`` instead of asking the user again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

from rtresnet.errors import RtresnetError

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BATCH_DIM = "batch"

META_PREFIX = "rtresnet."
QUANT_META_PREFIX = "rtresnet_quantization."  # INT8 settings (target, method, high precision) beside ModelInfo
Interpolation = Literal["bilinear", "bicubic", "nearest"]
InputFormat = Literal["float-nchw", "uint8-nhwc-rgb", "uint8-nhwc-bgr"]
Precision = Literal["fp32", "fp16", "int8"]
INPUT_FORMATS: tuple[str, ...] = ("float-nchw", "uint8-nhwc-rgb", "uint8-nhwc-bgr")
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")

# The sizes rtresnet accepts, defined once: CLI options (rtresnet.cli.options.limited), the Python entry points and
# the metadata/sidecar readers all check against this table, before anything is allocated. The top ends are far
# above any real ResNet deployment and far below sizes that would ask an allocator for terabytes.
LIMITS: dict[str, tuple[int, int]] = {
    "input size": (32, 4096),        # pixels per side; five stride-2 stages need 32
    "resize": (32, 8192),            # the shorter side before the crop (256/224 of the crop by default)
    "batch": (1, 4096),              # fixed, min/opt/max, served and benchmarked batches
    "num classes": (1, 100_000),
    "in channels": (1, 64),
    "calib size": (1, 1_000_000),
    "calib batch": (1, 4096),
    "threads": (0, 1024),            # 0: the runtime's own choice
    "workspace": (1 << 20, 1 << 40),  # bytes: 1 MiB .. 1 TiB
}


def describe_range(what: str) -> str:
    lo, hi = LIMITS[what]
    if what == "workspace":
        return f"{lo >> 20} MiB..{hi >> 40} TiB"
    return f"{lo}..{hi}"


def check_range(what: str, value, name: str | None = None) -> int:
    """``value`` as an int if it is an integer within ``LIMITS[what]``; else an error naming ``name`` (the option,
    default ``what``) and the allowed range."""
    import numbers

    name = name or what
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise RtresnetError(f"{name} must be an integer in {describe_range(what)}, got {value!r}")
    lo, hi = LIMITS[what]
    if not lo <= value <= hi:
        raise RtresnetError(f"{name} {value} is out of range; give a value in {describe_range(what)}")
    return int(value)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's input: resize the shorter side, center-crop, scale, normalize.

    ``value_range`` is the divisor that maps stored pixel values to [0, 1] (255 for 8-bit images).
    """

    resize: int
    crop: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: Interpolation = "bilinear"
    channel_order: Literal["RGB", "L"] = "RGB"
    layout: Literal["NCHW"] = "NCHW"
    value_range: float = 255.0

    def __post_init__(self) -> None:
        if len(self.crop) != 2:
            raise RtresnetError(f"crop must be two sizes (H, W), got {list(self.crop)}")
        if len(self.mean) != len(self.std):
            raise RtresnetError(f"mean has {len(self.mean)} values but std has {len(self.std)}")
        if any(s <= 0 for s in self.std):
            raise RtresnetError(f"std must be positive, got {self.std}")
        if self.resize < min(self.crop):
            raise RtresnetError(f"resize {self.resize} is smaller than crop {self.crop}")

    @property
    def channels(self) -> int:
        return len(self.mean)

    @classmethod
    def default(cls, in_channels: int, size: tuple[int, int] = (224, 224), resize: int | None = None,
                interpolation: Interpolation = "bilinear") -> Preprocessing:
        """ImageNet's statistics for RGB, 0.5/0.5 otherwise; resize 256/224 of the crop, as torchvision's V1 (of its
        longer side: the shorter side of any photo, square and portrait ones too, then covers a wide crop)."""
        if in_channels == 3:
            mean, std, order = IMAGENET_MEAN, IMAGENET_STD, "RGB"
        else:
            mean, std, order = (0.5,) * in_channels, (0.5,) * in_channels, "L"
        if resize is None:
            resize = int(round(max(size) * 256 / 224))
        return cls(resize=resize, crop=tuple(size), mean=tuple(mean), std=tuple(std),  # type: ignore[arg-type]
                   interpolation=interpolation, channel_order=order)  # type: ignore[arg-type]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        d = dict(d)
        d["crop"] = tuple(d["crop"])
        d["mean"] = tuple(d["mean"])
        d["std"] = tuple(d["std"])
        return cls(**d)


def resolve_preprocessing(given: Preprocessing | None, from_weights: Preprocessing | None, in_channels: int,
                          size: tuple[int, int]) -> Preprocessing:
    """The one rule for a model's preprocessing: the user's statement, else the weights' own (at another input size
    its resize keeps the same ratio to the crop), else ``Preprocessing.default``. Export, the PyTorch baseline and
    bench all call this, so every backend of one model sees the same pixels."""
    if given is None and from_weights is not None and tuple(from_weights.crop) != tuple(size):
        resize = int(round(from_weights.resize * min(size) / min(from_weights.crop)))
        log.info("scaling the weights' preprocessing to %dx%d: resize %d -> %d", *size, from_weights.resize, resize)
        given = replace(from_weights, crop=tuple(size), resize=resize)  # type: ignore[arg-type]
    prep = given or from_weights or Preprocessing.default(in_channels, tuple(size))  # type: ignore[arg-type]
    if prep.channels != in_channels:
        raise RtresnetError(f"preprocessing has {prep.channels} mean/std values but the model has {in_channels} "
                            "input channels; give one value per channel")
    if tuple(prep.crop) != tuple(size):
        raise RtresnetError(f"preprocessing crops {prep.crop[0]}x{prep.crop[1]} but the input size is "
                            f"{size[0]}x{size[1]}; make them equal")
    return prep


@dataclass(frozen=True)
class ModelInfo:
    """The identity of an exported model, stored as ONNX metadata and copied into engine sidecars."""

    arch: str
    num_classes: int
    in_channels: int
    input_size: tuple[int, int]
    preprocessing: Preprocessing
    input_format: InputFormat = "float-nchw"
    precision: Precision = "fp32"
    weights: str | None = None
    weights_sha256: str | None = None
    labels: tuple[str, ...] = field(default=())
    max_batch: int | None = None  # the largest batch the deployment plans for (engine profiles read it)
    rtresnet_version: str = ""

    def input_shape(self, batch: int | str = BATCH_DIM) -> tuple[int | str, ...]:
        h, w = self.input_size
        if self.input_format == "float-nchw":
            return (batch, self.in_channels, h, w)
        return (batch, h, w, 3)

    def label(self, index: int) -> str:
        return self.labels[index] if index < len(self.labels) else str(index)

    def to_dict(self) -> dict:
        return asdict(self)  # nested Preprocessing included

    @classmethod
    def from_dict(cls, d: dict) -> ModelInfo:
        """Inverse of ``to_dict`` (also after a JSON round trip, which turns tuples into lists)."""
        values = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        values["preprocessing"] = Preprocessing.from_dict(values["preprocessing"])
        values["input_size"] = tuple(values["input_size"])
        values["labels"] = tuple(values.get("labels") or ())
        return cls(**values)

    def to_metadata(self) -> dict[str, str]:
        return {META_PREFIX + k: json.dumps(v, sort_keys=True) for k, v in self.to_dict().items()}

    @classmethod
    def from_metadata(cls, props: dict[str, str], source: str = "this ONNX model") -> ModelInfo:
        """The ``ModelInfo`` in ONNX metadata, checked (``model_info_problem``); ``source`` names the file."""
        d = {k[len(META_PREFIX):]: v for k, v in props.items() if k.startswith(META_PREFIX)}
        if "arch" not in d:
            raise RtresnetError(f"{source} has no rtresnet metadata (made by another tool?); export the model "
                                "with `rtresnet export` first")
        try:
            info = cls.from_dict({k: json.loads(v) for k, v in d.items()})
        except (KeyError, TypeError, ValueError, AttributeError, RtresnetError) as e:
            what = f"missing key {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
            raise RtresnetError(f"{source} has malformed rtresnet metadata ({what}); it was edited or damaged: "
                                "re-export the model with `rtresnet export`") from None
        if (problem := model_info_problem(info)) is not None:
            raise RtresnetError(f"{source} has malformed rtresnet metadata ({problem}); it was edited or damaged: "
                                "re-export the model with `rtresnet export`")
        return info

    def with_precision(self, precision: Precision) -> ModelInfo:
        return replace(self, precision=precision)


def model_info_problem(info: ModelInfo) -> str | None:
    """What makes ``info`` impossible (wrong types, sizes outside ``LIMITS``, labels for another class count), or
    None. Metadata and sidecars are JSON a user can edit: every reader checks this before sizing anything by it."""
    def integer(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if not isinstance(info.arch, str) or not info.arch:
        return f"arch {info.arch!r} is not a name"
    size = tuple(info.input_size)
    if len(size) != 2 or not all(map(integer, size)):
        return f"input_size {list(size)} is not two integers"
    for what, value in (("num classes", info.num_classes), ("in channels", info.in_channels),
                        *(("input size", v) for v in size), ("resize", info.preprocessing.resize),
                        *((("batch", info.max_batch),) if info.max_batch is not None else ())):
        lo, hi = LIMITS[what]
        if not integer(value) or not lo <= value <= hi:
            return f"{what} {value!r} is not an integer in {describe_range(what)}"
    if info.input_format not in INPUT_FORMATS:
        return f"unknown input format {info.input_format!r}"
    if info.precision not in PRECISIONS:
        return f"unknown precision {info.precision!r}"
    if not all(isinstance(v, str) for v in info.labels):
        return "labels are not all strings"
    if info.labels and len(info.labels) != info.num_classes:
        return f"{len(info.labels)} labels for {info.num_classes} classes"
    if info.preprocessing.channels != info.in_channels:
        return f"{info.preprocessing.channels} mean/std values for {info.in_channels} input channels"
    if tuple(info.preprocessing.crop) != size:
        return f"crop {list(info.preprocessing.crop)} differs from input_size {list(size)}"
    return None


def graph_problem(info: ModelInfo, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]) -> str | None:
    """Where the graph's own input/output contradicts ``info`` (metadata edited by hand, or copied from another
    model), or None. Dynamic (named) dimensions match anything."""
    def text(t: TensorSpec) -> str:
        return f"{t.name}[{', '.join(str(d) for d in t.shape)}]"

    if len(inputs) != 1 or len(outputs) != 1:
        return f"the graph has {len(inputs)} inputs and {len(outputs)} outputs; rtresnet runs classifiers with one each"
    want = info.input_shape()
    got = inputs[0].shape
    if len(got) != len(want) or any(isinstance(g, int) and g != w for g, w in zip(got[1:], want[1:], strict=True)):
        return f"the graph's input is {text(inputs[0])} but the metadata says [{', '.join(map(str, want))}]"
    out = outputs[0].shape
    if len(out) != 2 or (isinstance(out[1], int) and out[1] != info.num_classes):
        return f"the graph's output is {text(outputs[0])} but the metadata says {info.num_classes} classes"
    return None


def load_onnx_header(path: str | Path, what: str = "ONNX model"):
    """The ``onnx.ModelProto`` at ``path`` without its external weights; one-line errors for a missing file, a
    folder, an empty or non-ONNX file (and a TensorRT plan given where an ONNX model belongs)."""
    import onnx

    path = Path(path)
    if path.is_dir():
        raise RtresnetError(f"{path} is a folder; give an {what} file (from `rtresnet export`)")
    if not path.is_file():
        if path.exists():  # a FIFO or device: reading it could block forever
            raise RtresnetError(f"{path} is not a regular file (a pipe or device); give an {what} file")
        raise RtresnetError(f"{what} not found: {path}")
    again = "export it again with `rtresnet export`"
    if path.suffix.lower() in (".engine", ".plan", ".trt"):
        again = "give the ONNX model it was built from (TensorRT plans are not ONNX)"
    if path.stat().st_size == 0:
        raise RtresnetError(f"{path} is empty, not an {what}; {again}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and friends for non-ONNX bytes
        raise RtresnetError(f"{path} is not a readable {what} ({type(e).__name__}: truncated or not ONNX); "
                            f"{again}") from None
    if not model.graph.node or not model.graph.output:
        raise RtresnetError(f"{path} holds no ONNX graph (truncated or not ONNX); {again}")
    return model


def read_model_info(onnx_path: str | Path) -> ModelInfo:
    """Read ``ModelInfo`` from an ONNX file's metadata without loading its weights; refuse a file that is not an
    rtresnet ONNX model, or whose metadata contradicts its graph."""
    path = Path(onnx_path)
    model = load_onnx_header(path)
    info = ModelInfo.from_metadata({p.key: p.value for p in model.metadata_props}, source=str(path))
    if (problem := graph_problem(info, *graph_io(model.graph))) is not None:
        raise RtresnetError(f"{path}: {problem}; its metadata was edited or belongs to another model: re-export "
                            "it with `rtresnet export`")
    return info


def write_model_info(model, info: ModelInfo) -> None:  # model: onnx.ModelProto
    """Replace the rtresnet metadata of an in-memory ONNX model (keeps foreign keys)."""
    keep = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(META_PREFIX)]
    del model.metadata_props[:]
    for k, v in keep + sorted(info.to_metadata().items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: ``shape`` holds ints, or a string for a dynamic axis."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str  # numpy dtype name: "float32", "float16", "uint8"

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: dict) -> TensorSpec:
        return cls(name=d["name"], shape=tuple(d["shape"]), dtype=d["dtype"])

    @classmethod
    def from_value_info(cls, value) -> TensorSpec:  # value: onnx.ValueInfoProto
        from onnx.helper import tensor_dtype_to_np_dtype

        t = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim)
        return cls(name=value.name, shape=shape, dtype=tensor_dtype_to_np_dtype(t.elem_type).name)


def graph_io(graph) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:  # graph: onnx.GraphProto
    """The graph's real inputs (initializers listed as inputs by old exporters excluded) and outputs."""
    initializers = {t.name for t in graph.initializer}
    inputs = tuple(TensorSpec.from_value_info(v) for v in graph.input if v.name not in initializers)
    return inputs, tuple(TensorSpec.from_value_info(v) for v in graph.output)


LABELS_MAX_BYTES = 64 << 20  # 100000 class names fit many times over; a bigger "labels file" is something else


def read_labels(path: str | Path, num_classes: int | None = None) -> tuple[str, ...]:
    """Class names, one per line (trailing blank lines ignored); with ``num_classes``, exactly that many. Only a
    regular file is opened (a FIFO or device would block or never end)."""
    path = Path(path)
    what = "give a UTF-8 text file with one class name per line"
    if path.is_dir():
        raise RtresnetError(f"labels file {path} is a folder; {what}")
    if not path.exists():
        raise RtresnetError(f"labels file {path} not found; {what}")
    if not path.is_file():
        raise RtresnetError(f"labels file {path} is not a regular file (a pipe or device); {what}")
    if path.stat().st_size > LABELS_MAX_BYTES:
        raise RtresnetError(f"labels file {path} is {path.stat().st_size >> 20} MiB, too large for class names; "
                            f"{what}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise RtresnetError(f"cannot read labels file {path} ({e.strerror or type(e).__name__}); {what}") from None
    try:
        if b"\0" in data:
            raise UnicodeDecodeError("utf-8", data, data.index(b"\0"), data.index(b"\0") + 1, "NUL byte")
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise RtresnetError(f"labels file {path} is binary, not text; {what}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    labels = tuple(line.strip() for line in lines)
    if not labels:
        raise RtresnetError(f"labels file {path} is empty; {what}")
    if "" in labels:
        raise RtresnetError(f"labels file {path} has an empty line {labels.index('') + 1}; one class name per line")
    if num_classes is not None and len(labels) != num_classes:
        raise RtresnetError(f"labels file {path} has {len(labels)} names but the model has {num_classes} classes; "
                            "give exactly one per class")
    return labels
