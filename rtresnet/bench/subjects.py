"""What a benchmark runs: an architecture made here (``arch_model``) or the user's model files (``files_model``),
the --baseline file among them, their row labels, and whether a data folder's class folders fit the model."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np

from rtresnet.bench.backends import short_label
from rtresnet.errors import RtresnetError, UsageError
from rtresnet.spec import ModelInfo, Preprocessing

log = logging.getLogger(__name__)


@dataclasses.dataclass
class BenchModel:
    """What the benchmark runs: the model's identity, the weights file every backend is made from, and the
    reference (PyTorch FP32) logits the backends are compared with."""

    info: ModelInfo
    weights: str | Path | None
    reference: np.ndarray | None = None
    file_labels: list[str] = dataclasses.field(default_factory=list)  # row labels of the --models files


def arch_model(arch: str, weights: str | Path | None, num_classes: int | None, in_channels: int,
                input_size: int | tuple[int, int], preprocessing: Preprocessing | None, data: str,
                work_dir: Path) -> tuple[BenchModel, Any]:
    from rtresnet.models.checkpoint import save_state_dict
    from rtresnet.models.factory import load_model
    from rtresnet.runtime.loader import baseline_info

    if weights is None:
        # Random weights differ per process: save them once so every backend (and a rerun with the same
        # --work-dir, which then reuses its engines) is made from the same ones.
        weights = work_dir / f"{arch}-{num_classes or 1000}c-{in_channels}ch-random-init.safetensors"
        if not weights.is_file():
            from rtresnet.models import create_model

            save_state_dict(create_model(arch, num_classes=num_classes, in_channels=in_channels), weights)
        log.info("no weights given: benchmarking random weights (%s)", weights)
    loaded = load_model(arch, weights=weights, num_classes=num_classes, in_channels=in_channels)
    if preprocessing is None and loaded.preprocessing is None and str(data) == "digits":
        from rtresnet.data.digits import DIGITS_PREPROCESSING

        preprocessing = DIGITS_PREPROCESSING  # the digits data only make sense preprocessed as in training
    # the same ModelInfo the torch backend's runner gets from load_torch
    return BenchModel(info=baseline_info(loaded, input_size, preprocessing), weights=weights), loaded.model


def artifact_info(path: Path) -> ModelInfo:
    from rtresnet.sidecar import read_sidecar, sidecar_path
    from rtresnet.spec import read_model_info

    if not path.is_file():
        raise RtresnetError(f"model file not found: {path}")
    return read_sidecar(path).model if sidecar_path(path).is_file() else read_model_info(path)


def baseline_file(files: list[Path], baseline: str | Path | None) -> Path | None:
    """The --models file named by ``baseline`` (as given, or the same file by another path)."""
    if baseline is None:
        return None
    wanted = Path(baseline)
    for f in files:
        if f == wanted or (f.exists() and wanted.exists() and f.resolve() == wanted.resolve()):
            return f
    raise UsageError(f"--baseline {baseline} is not one of the --models files ({', '.join(str(f) for f in files)}); "
                     f"give one of them")


def file_label(path: Path, info: ModelInfo, device: str | None) -> str:
    """``ort int8``, ``trt fp16``: the runtime from the sidecar (a bare ONNX file runs on onnxruntime)."""
    from rtresnet.sidecar import read_sidecar, sidecar_path

    runtime = read_sidecar(path, verify_hash=False).backend if sidecar_path(path).is_file() else "onnxruntime"
    where = "cuda" if runtime == "tensorrt" else device or "cpu"
    return short_label(runtime, info.precision, where)


def files_model(models: list[Path], weights: str | Path | None, device: str | None) -> tuple[BenchModel, Any]:
    """The network behind ``--models`` files (all must be the same one) and, with ``weights``, its PyTorch model."""
    infos = [artifact_info(p) for p in models]
    first = infos[0]
    for p, i in zip(models, infos, strict=True):
        if (i.arch, i.num_classes, i.input_size) != (first.arch, first.num_classes, first.input_size):
            raise RtresnetError(f"{p} is a {i.arch} {i.input_size} model with {i.num_classes} classes but "
                                f"{models[0]} is {first.arch} {first.input_size} with {first.num_classes}; "
                                f"bench models of one network together")
    if device == "cpu":
        gpu_only = [str(p) for p, i in zip(models, infos, strict=True) if file_label(p, i, device).startswith("trt")]
        if gpu_only:
            what = "is a TensorRT engine" if len(gpu_only) == 1 else "are TensorRT engines"
            raise UsageError(f"--device cpu, but {', '.join(gpu_only)} {what}, which run on the GPU only; drop "
                             f"{'it' if len(gpu_only) == 1 else 'them'} or use --device cuda")
    labels = [file_label(p, i, device) for p, i in zip(models, infos, strict=True)]
    model = BenchModel(info=first, weights=weights, file_labels=unique_labels(labels))
    if weights is None:
        return model, None
    from rtresnet.models.factory import load_model

    loaded = load_model(first.arch, weights=weights, num_classes=first.num_classes, in_channels=first.in_channels)
    return model, loaded.model


def unique_labels(labels: list[str]) -> list[str]:
    """Labels numbered where two files would share one (``ort int8 #1``, ``ort int8 #2``)."""
    out, seen = [], {}
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(f"{label} #{seen[label]}" if labels.count(label) > 1 else label)
    return out


def guessed_labels(data: str | Path, info: ModelInfo) -> str | None:
    """Why the labels of an ImageFolder ``data`` cannot be trusted for ``info``'s model, or None when they can.
    Without class names in the model, folders are matched to classes in sorted name order; that holds for a
    folder per class (a model trained on this layout), not for bird/cat/dog against 1000 classes."""
    from rtresnet.preprocess import find_images

    path = Path(str(data)).expanduser()
    if info.labels or not path.is_dir():
        return None  # matched by name (or refused by the loader, which then loads no labels)
    names = sorted({p.relative_to(path).parts[0] for p in find_images(path)})
    if len(names) == info.num_classes:
        return None
    few = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    return (f"class folders {few} in {path} cannot be matched to the model's classes: {len(names)} folders for "
            f"{info.num_classes} classes, and the model has no class names; reporting agreement with the baseline, "
            f"no top-1 (give weights or a model file that carry class names, or one folder per class)")
