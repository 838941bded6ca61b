"""Predict image files with per-file errors: a bad file is reported and skipped, the others still run."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from rtresnet.errors import RtresnetError
from rtresnet.preprocess import find_images, image_pixels, open_image, pixels_to_input
from rtresnet.runtime.base import Prediction, Runner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageResult:
    path: str
    predictions: tuple[Prediction, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        if self.error is not None:
            return {"image": self.path, "error": self.error}
        return {"image": self.path, "predictions": [p.to_dict() for p in self.predictions]}


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files stay as given (missing ones too: they fail later, per file); folders become their image files."""
    out: list[Path] = []
    for p in map(Path, paths):
        out.extend(find_images(p) if p.is_dir() else [p])
    return out


def predict_files(runner: Runner, paths: Sequence[str | Path], *, topk: int = 5, batch_size: int = 32,
                  labels: Sequence[str] | None = None) -> list[ImageResult]:
    """Top-``topk`` predictions for each image file, in order; undecodable files get an ``error`` instead.

    ``labels`` (one per class) name the classes instead of the model's own labels.
    """
    if topk < 1 or batch_size < 1:
        raise RtresnetError(f"topk and batch_size must be at least 1, got {topk} and {batch_size}")
    classes = runner.info.num_classes
    if labels is not None and len(labels) != classes:
        raise RtresnetError(f"{len(labels)} labels for a {classes}-class model; give exactly one per class")
    prep = runner.info.preprocessing
    results: list[ImageResult | None] = [None] * len(paths)
    pending: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        batch = pixels_to_input(np.stack([px for _, px in pending]), runner.info)
        for (i, _), preds in zip(pending, runner.predict(batch, topk=topk), strict=True):
            if labels is not None:
                preds = [replace(p, label=labels[p.index]) for p in preds]
            results[i] = ImageResult(str(paths[i]), tuple(preds))
        pending.clear()

    for i, path in enumerate(paths):
        try:
            pending.append((i, image_pixels(open_image(path), prep)))
        except RtresnetError as e:  # open_image turns every decoding failure into one
            msg = str(e) if str(path) in str(e) else f"{path}: {e}"
            log.debug("skipping %s", msg)
            results[i] = ImageResult(str(path), error=msg)
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    return [r for r in results if r is not None]
