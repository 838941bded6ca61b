"""PyTorch ResNet -> one verified, self-describing FP32 ONNX file: the input of every later stage.

The graph: BatchNorm folded into the convs, constants folded, shapes inferred, a dynamic batch axis unless a
batch is fixed, fixed spatial size, ``ModelInfo`` (weights, preprocessing, labels) in ``metadata_props``.
The file is verified against PyTorch eager in onnxruntime before it is renamed into place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch

from rtresnet import __version__
from rtresnet.compare import Comparison
from rtresnet.errors import RtresnetError
from rtresnet.export.graph import Uint8Input, fuse_batchnorm, trace_to_onnx
from rtresnet.export.verify import verification_batches, verify_onnx
from rtresnet.fileutil import atomic_path, check_output_path, sha256_file
from rtresnet.models import get_arch
from rtresnet.models.factory import load_model
from rtresnet.spec import (
    INPUT_FORMATS,
    InputFormat,
    Interpolation,
    ModelInfo,
    Preprocessing,
    TensorSpec,
    graph_io,
    read_model_info,
    resolve_preprocessing,
    write_model_info,
)
from rtresnet.steps import step

log = logging.getLogger(__name__)

# Opset 17: every op these graphs use (Conv, Gemm, pooling, Cast, Gather, Transpose) is stable since <= 13;
# 17 is parsed by onnxruntime and by TensorRT 10 and 11, and is >= 13 for per-channel QuantizeLinear/
# DequantizeLinear (INT8 weights). 13 is the floor for that reason; 20 is the TorchScript exporter's ceiling.
DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 13, 20
MIN_INPUT_SIZE = 32  # five stride-2 stages: smaller inputs reach layer4 as less than one pixel
DEFAULT_OUTPUT_DIR = Path("engines")
MIN_STD = 1e-6  # pixels / 1e-6 stays far inside float32; real stds are 0.01..1 on the 0..1 scale
INIT_SEED = 0  # random-init exports (no weights) are reproducible: same file every time


@dataclass(frozen=True)
class ExportResult:
    path: Path
    sha256: str
    opset: int
    info: ModelInfo
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    verification: Comparison | None
    seconds: float
    max_batch: int | None = None


def export_onnx(arch: str, output: str | Path | None = None, *, weights: str | Path | None = None,
                num_classes: int | None = None, in_channels: int = 3, reset_head: bool = False,
                input_size: int | Sequence[int] = 224, batch: int | None = None, max_batch: int | None = None,
                opset: int = DEFAULT_OPSET, input_format: InputFormat = "float-nchw",
                preprocessing: Preprocessing | None = None, labels: Sequence[str] | None = None,
                verify: bool = True) -> ExportResult:
    """Export ``arch`` (random init, or ``weights``: a named weight or a checkpoint) to ONNX and verify it.

    Named weights bring their preprocessing (scaled to ``input_size``); for anything else ``preprocessing``
    states it (its crop must equal ``input_size``), ``Preprocessing.default`` otherwise. Raises
    ``RtresnetError`` on bad input or failed verification, leaving nothing at ``output``.
    """
    start = time.perf_counter()
    get_arch(arch)  # unknown names fail before anything else
    size = check_input_size(input_size)
    _check_batch(batch, max_batch)
    _check_opset(opset)
    if input_format not in INPUT_FORMATS:
        raise RtresnetError(f"unknown input format {input_format!r}; choose one of {', '.join(INPUT_FORMATS)}")
    if input_format != "float-nchw" and in_channels != 3:
        raise RtresnetError(f"input format {input_format} takes 3-channel frames, but in_channels={in_channels}; "
                            "use the float-nchw format for other channel counts")
    path = _output_path(arch, output, input_format)

    with torch.random.fork_rng(devices=[]), step("load weights"):
        torch.manual_seed(INIT_SEED)
        loaded = load_model(arch, weights=weights, num_classes=num_classes, in_channels=in_channels,
                            reset_head=reset_head)
    if preprocessing is not None and loaded.preprocessing is not None:
        raise RtresnetError(f"{loaded.weights} weights carry their own preprocessing (resize "
                            f"{loaded.preprocessing.resize}, crop {loaded.preprocessing.crop[0]}); drop the custom "
                            "preprocessing (--resize/--crop/--mean/--std/--interpolation)")
    prep = resolve_preprocessing(preprocessing, loaded.preprocessing, loaded.in_channels, size)
    info = ModelInfo(arch=arch, num_classes=loaded.num_classes, in_channels=loaded.in_channels, input_size=size,
                     preprocessing=prep, input_format=input_format, weights=loaded.weights,
                     weights_sha256=loaded.weights_sha256, labels=_resolve_labels(labels, loaded.labels,
                                                                                  loaded.num_classes),
                     max_batch=max_batch, rtresnet_version=__version__)

    with step("export"):
        module = fuse_batchnorm(loaded.model)
        if input_format != "float-nchw":
            module = Uint8Input(module, prep, bgr=input_format == "uint8-nhwc-bgr").eval()
        # Trace at batch 2 when dynamic so no size-1 broadcasting gets baked into the graph.
        example = torch.zeros(info.input_shape(batch or 2), dtype=torch.float32 if input_format == "float-nchw"
                              else torch.uint8)
        model = trace_to_onnx(module, example, opset=opset, dynamic_batch=batch is None)
        write_model_info(model, info)

    comparison = None
    path.parent.mkdir(parents=True, exist_ok=True)  # only the default folder can be missing here
    with atomic_path(path) as tmp:
        data = model.SerializeToString()
        tmp.write_bytes(data)
        sha256 = hashlib.sha256(data).hexdigest()  # of the bytes just written: no read-back of up to 500 MB
        del data  # not held through verification
        # On the file, not the proto: the Python API would copy the weights to check them.
        with step("export"):  # the checker is part of exporting
            onnx.checker.check_model(str(tmp), full_check=True)
        if verify:
            with step("verify"):
                comparison = verify_onnx(tmp, loaded.model, info, verification_batches(batch, max_batch))
            if not comparison:
                raise RtresnetError(f"exported ONNX (in onnxruntime) does not match PyTorch: "
                                    f"{', '.join(comparison.failures())}; {comparison.summary()}; nothing was "
                                    "written (run with --debug for the details)")
    seconds = time.perf_counter() - start
    inputs, outputs = graph_io(model.graph)
    result = ExportResult(path=path, sha256=sha256, opset=opset, info=info,
                          inputs=inputs, outputs=outputs, verification=comparison, seconds=seconds,
                          max_batch=max_batch)
    log.debug("exported %s to %s in %.1f s", arch, path, seconds)
    return result


def check_input_size(input_size: int | Sequence[int]) -> tuple[int, int]:
    """224 or (H, W) -> (H, W); integers of at least ``MIN_INPUT_SIZE``."""
    values = (input_size, input_size) if not isinstance(input_size, (tuple, list)) else tuple(input_size)
    if len(values) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise RtresnetError(f"input size must be one integer or two (H W), got {input_size!r}")
    if min(values) < MIN_INPUT_SIZE:
        raise RtresnetError(f"input size {values[0]}x{values[1]} is too small; ResNets need at least "
                            f"{MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}")
    return values  # type: ignore[return-value]


def parse_input_size(text: str) -> tuple[int, int]:
    """CLI text "224", "224x288", "224,288" or "224 288" -> (H, W), with a one-line error otherwise."""
    parts = text.replace("x", " ").replace(",", " ").split()
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise RtresnetError(f"input size must be one integer or two (H W), got {text!r}") from None
    return check_input_size(values[0] if len(values) == 1 else values)


def make_preprocessing(in_channels: int, input_size: int | Sequence[int], *, resize: int | None = None,
                       mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                       interpolation: Interpolation = "bilinear") -> Preprocessing:
    """The user's statement of a custom model's preprocessing; unset values take ``Preprocessing.default``'s."""
    size = check_input_size(input_size)
    base = Preprocessing.default(in_channels, size, interpolation=interpolation)
    for name, values in (("mean", mean), ("std", std)):
        if values is not None and len(values) != in_channels:
            raise RtresnetError(f"--{name} needs one value per input channel ({in_channels}), got {len(values)}")
        # NaN passes a "std > 0" check and a tiny std overflows float32: either makes every input NaN or inf
        if values is not None and not all(math.isfinite(v) and (name == "mean" or v >= MIN_STD) for v in values):
            wanted = "finite numbers" if name == "mean" else f"finite numbers of at least {MIN_STD:g}"
            raise RtresnetError(f"--{name} must be {wanted} (on the 0..1 scale, e.g. 0.229), got "
                                f"{' '.join(f'{v:g}' for v in values)}")
    if resize is not None and resize < max(size):
        raise RtresnetError(f"--resize {resize} cannot fill the {size[0]}x{size[1]} (HxW) crop from square or "
                            f"{'portrait' if size[1] > size[0] else 'landscape'} photos (their shorter side becomes "
                            f"{resize}); pass --resize {max(size)} or more, or leave it out")
    return dataclasses.replace(base, resize=resize or base.resize, mean=tuple(float(m) for m in mean or base.mean),
                               std=tuple(float(s) for s in std or base.std))


def _resolve_labels(given: Sequence[str] | None, from_weights: tuple[str, ...], num_classes: int) -> tuple[str, ...]:
    labels = tuple(given) if given is not None else from_weights
    if labels and len(labels) != num_classes:
        raise RtresnetError(f"{len(labels)} labels for a {num_classes}-class model; give exactly one per class")
    return labels


def _check_batch(batch: int | None, max_batch: int | None) -> None:
    for name, value in (("batch", batch), ("max batch", max_batch)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise RtresnetError(f"{name} must be a positive integer, got {value!r}")
    if batch is not None and max_batch is not None:
        raise RtresnetError("give either a fixed batch (--batch) or a maximum for the dynamic axis (--max-batch), "
                            "not both")


def _check_opset(opset: int) -> None:
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise RtresnetError(f"opset {opset} is not supported; use {MIN_OPSET}..{MAX_OPSET} "
                            f"(default {DEFAULT_OPSET})")


def _output_path(arch: str, output: str | Path | None, input_format: str) -> Path:
    if output is not None:
        if Path(output).suffix.lower() != ".onnx" and not Path(output).is_dir():  # a folder: "is a directory" below
            raise RtresnetError(f"output {output} must end in .onnx: `rtresnet predict` and the runtime recognise "
                                "ONNX models by that suffix")
        return check_output_path(output)
    suffix = "" if input_format == "float-nchw" else "-" + input_format
    path = DEFAULT_OUTPUT_DIR / f"{arch}{suffix}.onnx"
    if DEFAULT_OUTPUT_DIR.is_dir():
        return check_output_path(path)
    # The default folder is created only once the model is ready; until then, check that it can be.
    check_output_path(DEFAULT_OUTPUT_DIR)
    return path


def ensure_onnx(arch: str, path: str | Path, *, weights: str | Path | None = None, force: bool = False,
                **export_options) -> Path:
    """``path`` when it already holds this export (same arch, weights and every option given), else export there.

    The one reuse rule for every stage that exports on the user's behalf (`build --arch`, bench's work folder):
    a checkpoint is compared by its bytes' sha256, a named weight by name, random weights match random weights;
    ``export_options`` (``num_classes``, ``in_channels``, ``input_size``, ``preprocessing``, ``labels``,
    ``input_format``, ``max_batch``...) must equal the file's metadata when given.
    """
    path = Path(path)
    if not force and path.is_file() and _same_export(path, arch, weights, export_options):
        log.info("reusing %s (exported earlier from %s%s; --force exports again)", path, arch,
                 f" with {weights}" if weights else "")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    result = export_onnx(arch, path, weights=weights, **export_options)
    log.info("exported %s to %s", arch, result.path)
    return Path(result.path)


def _same_export(path: Path, arch: str, weights: str | Path | None, options: dict) -> bool:
    try:
        info = read_model_info(path)
    except RtresnetError:
        return False
    if info.arch != arch or info.precision != "fp32":
        return False
    if weights is None:
        same_weights = info.weights is None
    elif Path(weights).is_file():  # a checkpoint: same bytes, not just the same name
        same_weights = info.weights_sha256 == sha256_file(weights)
    else:
        same_weights = info.weights == str(weights)
    wanted = {k: v for k, v in options.items() if v is not None and k in _INFO_FIELDS}
    if "input_size" in wanted:
        wanted["input_size"] = check_input_size(wanted["input_size"])
    if "labels" in wanted:
        wanted["labels"] = tuple(wanted["labels"])
    return same_weights and all(getattr(info, k) == v for k, v in wanted.items())


_INFO_FIELDS = ("num_classes", "in_channels", "input_size", "preprocessing", "labels", "input_format", "max_batch")
