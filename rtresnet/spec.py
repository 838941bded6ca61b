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
    def from_metadata(cls, props: dict[str, str]) -> ModelInfo:
        d = {k[len(META_PREFIX):]: v for k, v in props.items() if k.startswith(META_PREFIX)}
        if "arch" not in d:
            raise RtresnetError("this ONNX model has no rtresnet metadata; export it with `rtresnet export` first")
        try:
            return cls.from_dict({k: json.loads(v) for k, v in d.items()})
        except (KeyError, TypeError, ValueError) as e:
            raise RtresnetError(f"malformed rtresnet metadata in ONNX model: {e}") from None

    def with_precision(self, precision: Precision) -> ModelInfo:
        return replace(self, precision=precision)


def read_model_info(onnx_path: str | Path) -> ModelInfo:
    """Read ``ModelInfo`` from an ONNX file's metadata without loading its weights."""
    import onnx

    path = Path(onnx_path)
    if not path.is_file():
        raise RtresnetError(f"ONNX model not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and friends for non-ONNX bytes
        raise RtresnetError(f"{path} is not a readable ONNX model ({type(e).__name__})") from None
    return ModelInfo.from_metadata({p.key: p.value for p in model.metadata_props})


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


def read_labels(path: str | Path) -> tuple[str, ...]:
    """Class names, one per line (trailing blank lines ignored)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise RtresnetError(f"cannot read labels file {path} ({type(e).__name__}); give a UTF-8 text file with "
                            "one class name per line") from None
    while lines and not lines[-1].strip():
        lines.pop()
    labels = tuple(line.strip() for line in lines)
    if "" in labels:
        raise RtresnetError(f"labels file {path} has an empty line {labels.index('') + 1}; one class name per line")
    return labels
