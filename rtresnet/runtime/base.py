"""The one runner contract every backend implements, written once.

A backend only implements ``_run(x)``: ``x`` is already validated (rank, shape, dtype, finiteness), contiguous,
and its batch lies within the backend's range. Everything else (splitting large batches, padding small ones,
returning the caller's array kind, preprocessing, softmax/top-k, locking, closing) lives here.
"""

from __future__ import annotations

import logging
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rtresnet.errors import RtresnetError
from rtresnet.preprocess import preprocess_images
from rtresnet.spec import ModelInfo

log = logging.getLogger(__name__)

ImageLike = Image.Image | str | Path


@dataclass(frozen=True)
class InputSpec:
    """What ``infer`` accepts: ``name[min_batch..max_batch, *sample_shape] dtype layout``.

    ``max_batch`` None means unbounded; larger batches than ``max_batch`` are split by the runner.
    """

    name: str
    sample_shape: tuple[int, ...]  # (C, H, W) for NCHW, (H, W, C) for NHWC
    dtype: str                     # numpy dtype name
    layout: str                    # "NCHW" | "NHWC"
    min_batch: int = 1
    max_batch: int | None = None

    @property
    def shape(self) -> tuple[int | str, ...]:
        hi = "inf" if self.max_batch is None else self.max_batch
        return (f"{self.min_batch}..{hi}", *self.sample_shape)

    @property
    def channels(self) -> int:
        return self.sample_shape[0] if self.layout == "NCHW" else self.sample_shape[-1]

    def describe(self) -> str:
        dims = ", ".join(str(d) for d in self.shape)
        return f"{self.name}[{dims}] {self.dtype} {self.layout}"


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    probability: float

    def to_dict(self) -> dict:
        return {"label": self.label, "index": self.index, "probability": self.probability}


def _torch():
    # Imported only when a torch tensor is already in play: onnxruntime users never pay torch's import time.
    return sys.modules.get("torch")


def is_tensor(x: Any) -> bool:
    torch = _torch()
    return torch is not None and isinstance(x, torch.Tensor)


def _all_finite(x: Any) -> bool:
    """One pass; integer inputs (uint8 frames) are finite by type."""
    if is_tensor(x):
        return not x.is_floating_point() or bool(x.isfinite().all())
    return x.dtype.kind != "f" or bool(np.isfinite(x).all())


def _count_nonfinite(x: Any) -> str:
    """'2 NaN and 1 infinite values in samples 0, 3 of 4' (on failure only: a few more passes)."""
    a = x.detach().float().cpu().numpy() if is_tensor(x) else np.asarray(x)
    bad = ~np.isfinite(a)
    nan = int(np.isnan(a).sum())
    rows = np.flatnonzero(bad.reshape(len(a), -1).any(axis=1))
    shown = ", ".join(str(r) for r in rows[:5]) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
    return (f"{nan} NaN and {int(bad.sum()) - nan} infinite values in sample{'s' if len(rows) > 1 else ''} "
            f"{shown} of {len(a)}")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def top_predictions(logits: np.ndarray, info: ModelInfo, topk: int) -> list[list[Prediction]]:
    """Softmax probabilities of the ``topk`` best classes per row, best first. Non-finite logits are an error: their
    probabilities would be NaN (invalid JSON) and their ranking arbitrary."""
    if topk < 1:
        raise RtresnetError(f"topk must be at least 1, got {topk}")
    logits = np.asarray(logits)
    if not np.isfinite(logits).all():
        raise RtresnetError(f"the model returned non-finite logits ({_count_nonfinite(logits)}), so there are no "
                            "probabilities to report: it overflows or has non-finite weights (or the input batch "
                            "held NaN/inf); re-export it from finite weights, or keep its last layers in FP32")
    probs = softmax(logits)
    k = min(topk, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[Prediction(info.label(int(i)), int(i), float(row[i])) for i in idx]
            for row, idx in zip(probs, order, strict=True)]


class Runner(ABC):
    """Runs a classifier: ``infer(batch) -> logits`` plus image-level ``preprocess`` and ``predict``.

    ``infer`` takes a numpy array or a torch tensor shaped like ``input_spec`` and returns logits of the same kind
    (a tensor comes back on the tensor's device). Inputs are validated before they reach the backend; batches
    above the backend's maximum are split and re-joined, batches below its minimum padded.

    Thread safety: one runner may be shared by threads. Backends whose ``_run`` is re-entrant
    (``concurrent = True``, e.g. onnxruntime's ``InferenceSession.run`` on CPU) run calls concurrently; all
    others (TensorRT's single execution context and buffers, IO binding, PyTorch with autocast) serialize calls on
    a per-runner lock, so concurrent calls are safe and never see another call's buffers. After ``close`` calls
    raise ``RtresnetError``; on locked backends ``close`` waits for the running call, on concurrent ones running
    calls finish on the session they hold.

    ``check_finite`` (a ``load`` option, or per call ``infer(x, check_finite=True)``) refuses a batch holding NaN or
    inf values, and logits that come back NaN or inf (an engine overflowing FP16), with an ``RtresnetError`` saying
    how many and in which samples, instead of returning garbage. It is cheap: one pass over the input and one over
    the logits, about 16 us per ResNet-18 224x224 image on one CPU core (0.05 % of its 35 ms onnxruntime CPU
    inference, measured on a 2-core AMD EPYC host, 2026-12), plus one device sync for tensors on a GPU.
    """

    backend: str = ""
    concurrent: bool = False

    def __init__(self, info: ModelInfo, input_spec: InputSpec, *, num_classes: int, device: str = "cpu",
                 check_finite: bool = False, max_batch: int | None = None) -> None:
        if max_batch is not None:
            if max_batch < 1:
                raise RtresnetError(f"max_batch must be at least 1, got {max_batch}")
            if input_spec.max_batch is not None and max_batch > input_spec.max_batch:
                raise RtresnetError(f"max_batch {max_batch} exceeds the engine's maximum batch "
                                    f"{input_spec.max_batch}; rebuild the engine with a larger --max-batch")
            if max_batch < input_spec.min_batch:
                raise RtresnetError(f"max_batch {max_batch} is below the engine's minimum batch "
                                    f"{input_spec.min_batch}; rebuild the engine with a smaller --min-batch")
            input_spec = replace(input_spec, max_batch=max_batch)
        self.info = info
        self.input_spec = input_spec
        self.num_classes = num_classes
        self.device = device
        self.check_finite = check_finite
        self._dtype = np.dtype(input_spec.dtype)
        self._lock = threading.RLock()
        self._closed = False

    # -- backend hooks ---------------------------------------------------------------------------------------
    @abstractmethod
    def _run(self, x: Any) -> Any:
        """Logits for a validated, contiguous batch within the backend's batch range (numpy or torch)."""

    @abstractmethod
    def _release(self) -> None:
        """Free the backend's resources (session, context, buffers); called once, under the lock."""

    # -- the contract --------------------------------------------------------------------------------------------
    def infer(self, batch: Any, *, check_finite: bool | None = None) -> Any:
        """Logits (N, num_classes) for ``batch``; numpy in -> numpy out, tensor in -> tensor on its device.

        ``check_finite`` (default: the runner's ``check_finite`` option) refuses NaN/inf inputs before they run and
        NaN/inf logits after, with ``RtresnetError``; one pass over each, cheap (see the class docstring)."""
        tensor = is_tensor(batch)
        if not tensor and not isinstance(batch, np.ndarray):
            raise RtresnetError(f"infer() takes a numpy array or a torch tensor shaped like "
                                f"{self.input_spec.describe()}, got {type(batch).__name__}")
        check = self.check_finite if check_finite is None else check_finite
        x = self._validate(batch, tensor, check)
        n, step = x.shape[0], self.input_spec.max_batch
        if step is None or n <= step:
            out = self._chunk(x, tensor)
        else:
            log.debug("splitting a batch of %d into chunks of %d", n, step)
            out = self._join([self._chunk(x[i:i + step], tensor) for i in range(0, n, step)])
        if check and not _all_finite(out):
            raise RtresnetError(f"the {self.backend} runner returned non-finite logits for a finite input: "
                                f"{_count_nonfinite(out)}; the model overflows (an FP16 engine beyond 65504?) or "
                                "has non-finite weights: rebuild it in FP32, or keep its last layers in FP32")
        return self._like(out, batch, tensor)

    def preprocess(self, images: Sequence[ImageLike | np.ndarray]) -> np.ndarray:
        """Images (paths, PIL images, or HxW / HxWxC uint8 RGB arrays such as camera frames) -> this model's
        input batch, with the model's own preprocessing (resize, crop, normalize, layout)."""
        items: list[ImageLike] = []
        for image in images:
            if isinstance(image, np.ndarray):
                if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in
                                                                          (1, 3, 4)):
                    raise RtresnetError(f"an image array must be HxW or HxWxC (C = 1, 3, 4) uint8 RGB, got "
                                        f"{image.dtype} {image.shape}; pass a batch to infer() instead")
                image = Image.fromarray(image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image)
            items.append(image)
        return self._float_as_model(preprocess_images(items, self.info))

    def predict(self, images: Sequence[ImageLike | np.ndarray] | np.ndarray | Any,
                topk: int = 5) -> list[list[Prediction]]:
        """Top-``topk`` classes (label, index, softmax probability) per image, best first.

        ``images`` are paths, PIL images or uint8 image arrays (preprocessed here), or an already preprocessed batch
        (a 4-D array or tensor shaped like ``input_spec``).
        """
        if topk < 1:
            raise RtresnetError(f"topk must be at least 1, got {topk}")
        if isinstance(images, np.ndarray):
            batch = self._float_as_model(images)
        else:
            batch = images if is_tensor(images) else self.preprocess(images)
        logits = self.infer(batch)
        if is_tensor(logits):
            logits = logits.detach().float().cpu().numpy()
        return top_predictions(logits, self.info, topk)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._release()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.info.arch}, {self.input_spec.describe()}, device={self.device})"

    # -- internals -------------------------------------------------------------------------------------------
    def _matching_sidecar(self, sidecar, path: str | Path) -> Runner:
        """This runner, once its engine's own inputs/outputs (``_io_specs``) are the sidecar's; closed and refused
        otherwise (the sidecar then belongs to another engine)."""
        from rtresnet.sidecar import check_engine_io

        try:
            check_engine_io(sidecar, path, *self._io_specs())
        except RtresnetError:
            self.close()
            raise
        return self

    def _float_as_model(self, x: np.ndarray) -> np.ndarray:
        # preprocessing yields float32; an FP16-input graph takes the same values as float16 (infer stays strict)
        if x.dtype != self._dtype and x.dtype.kind == "f" and self._dtype.kind == "f":
            return x.astype(self._dtype)
        return x

    def _call(self, x: Any) -> Any:
        if self.concurrent:
            if self._closed:
                raise RtresnetError(f"this {self.backend} runner is closed; load the model again")
            return self._run(x)
        with self._lock:
            if self._closed:
                raise RtresnetError(f"this {self.backend} runner is closed; load the model again")
            return self._run(x)

    def _validate(self, batch: Any, tensor: bool, check_finite: bool) -> Any:
        spec = self.input_spec
        shape = tuple(batch.shape)
        expect = f"expected {spec.describe()}"
        if len(shape) != 1 + len(spec.sample_shape):
            hint = "; add a batch dimension (x[None])" if len(shape) == len(spec.sample_shape) else ""
            raise RtresnetError(f"input has rank {len(shape)} (shape {shape}), {expect}{hint}")
        if shape[0] == 0:
            raise RtresnetError(f"input batch is empty, {expect}")
        if shape[1:] != spec.sample_shape:
            got_c = shape[1] if spec.layout == "NCHW" else shape[-1]
            if got_c != spec.channels:
                raise RtresnetError(f"input has {got_c} channels, the model takes {spec.channels}: {expect} "
                                    f"(shape {shape})")
            raise RtresnetError(f"input shape {shape} does not match the model, {expect}")
        dtype = str(batch.dtype).removeprefix("torch.") if tensor else batch.dtype.name
        if dtype != spec.dtype:
            raise RtresnetError(f"input dtype is {dtype}, {expect}; convert it (e.g. x.astype(np.{spec.dtype}))")
        if tensor:
            x = batch.detach()
            x = x if x.is_contiguous() else x.contiguous()
        else:
            x = batch if batch.flags.c_contiguous and batch.flags.aligned else np.ascontiguousarray(batch)
        if check_finite and not _all_finite(x):
            raise RtresnetError(f"input contains NaN or inf values ({_count_nonfinite(x)}); check the "
                                "preprocessing of this batch")
        return x

    def _chunk(self, x: Any, tensor: bool) -> Any:
        """One backend call for a batch within ``max_batch``; padded up to ``min_batch`` and trimmed back."""
        n = x.shape[0]
        return self._call(self._pad(x, tensor) if n < self.input_spec.min_batch else x)[:n]

    def _pad(self, x: Any, tensor: bool) -> Any:
        # Engines built with min_batch > 1 cannot take fewer samples: repeat the last one, drop its outputs later.
        extra = self.input_spec.min_batch - x.shape[0]
        if tensor:
            return _torch().cat([x, x[-1:].expand(extra, *x.shape[1:])]).contiguous()
        return np.concatenate([x, np.repeat(x[-1:], extra, axis=0)])

    @staticmethod
    def _join(parts: list[Any]) -> Any:
        if is_tensor(parts[0]):
            return _torch().cat(parts)
        return np.concatenate(parts)

    @staticmethod
    def _like(out: Any, batch: Any, tensor: bool) -> Any:
        """Return logits as the caller's kind: numpy for numpy, a tensor on the input's device for tensors."""
        if tensor:
            torch = _torch()
            if not isinstance(out, torch.Tensor):
                return torch.from_numpy(np.ascontiguousarray(out)).to(batch.device)
            return out if out.device == batch.device else out.to(batch.device)
        if is_tensor(out):
            return out.detach().cpu().numpy()
        return out
