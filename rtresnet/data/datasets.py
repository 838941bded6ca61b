"""Model inputs from wherever the user keeps them, for calibration and benchmarks.

Sources: an image folder (recursive; ImageFolder class subfolders give labels, and synset-ID folders such as
ImageNet's ``val/n01440764/`` give ImageNet-1K indices for ImageNet-labeled models), a .txt list of image paths,
a .npy/.npz of already-preprocessed tensors, ``digits`` (the bundled real dataset) or ``synthetic``. Images
are decoded and preprocessed with the model's own ``ModelInfo`` through ``rtresnet.preprocess``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtresnet.errors import RtresnetError
from rtresnet.fileutil import check_input_file
from rtresnet.spec import ModelInfo

log = logging.getLogger(__name__)

SOURCES_HELP = "an image folder, a .txt list of image paths, a .npy/.npz file, 'digits' or 'synthetic'"
SYNTHETIC_DEFAULT_SIZE = 64
_SYNSET = re.compile(r"n\d{8}")  # a WordNet ID, as ImageNet names its class folders


@dataclass(frozen=True, eq=False)  # arrays inside: compare fingerprints, not objects
class Dataset:
    inputs: np.ndarray  # already in the model's input format (float32 NCHW or uint8 NHWC)
    labels: np.ndarray | None  # int64 class indices when the source is labeled
    source: str  # human description
    fingerprint: str  # sha256 over the chosen samples (cache keys)
    synthetic: bool

    def __len__(self) -> int:
        return len(self.inputs)

    def batches(self, batch_size: int):
        """Consecutive slices of at most ``batch_size`` inputs."""
        for i in range(0, len(self.inputs), batch_size):
            yield self.inputs[i:i + batch_size]


def fingerprint(inputs: np.ndarray) -> str:
    h = hashlib.sha256(f"{inputs.dtype.str}{inputs.shape}".encode())
    h.update(np.ascontiguousarray(inputs).tobytes())
    return h.hexdigest()


def load_dataset(source: str | Path, info: ModelInfo, *, size: int | None = None, seed: int = 0,
                 split: str = "test") -> Dataset:
    """Load ``size`` samples (all when None) from ``source`` as ``info``'s model inputs.

    The sample choice is seeded and deterministic; ``split`` applies to ``digits`` ("train" for calibration,
    "test" for evaluation).
    """
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
        raise RtresnetError(f"the number of samples must be a positive integer, got {size!r}")
    text = str(source)
    if text == "digits":
        inputs, labels, desc = _digits(info, split)
    elif text == "synthetic":
        return _synthetic(info, size or SYNTHETIC_DEFAULT_SIZE, seed)
    else:
        path = Path(source).expanduser()
        if path.is_dir():
            return _images(_folder_items(path, info), info, size, seed, f"image folder {path}")
        if not os.path.lexists(path):
            raise RtresnetError(f"data source not found: {path}; give {SOURCES_HELP}")
        check_input_file(path, "data source")  # a broken link, a loop, a FIFO (reading one never ends)
        suffix = path.suffix.lower()
        if suffix == ".txt":
            return _images(_list_items(path), info, size, seed, f"image list {path}")
        if suffix in (".npy", ".npz"):
            inputs, labels = _arrays(path, info)
            desc = f"tensors {path}"
        else:
            raise RtresnetError(f"cannot read data from {path} (suffix {suffix or 'none'}); give {SOURCES_HELP}")
    idx = _choose(len(inputs), size, seed, desc)
    inputs = np.ascontiguousarray(inputs[idx])
    labels = None if labels is None else np.asarray(labels[idx], dtype=np.int64)
    return _dataset(inputs, labels, f"{desc} ({len(inputs)} samples)", synthetic=False)


def _dataset(inputs: np.ndarray, labels: np.ndarray | None, source: str, synthetic: bool) -> Dataset:
    inputs.setflags(write=False)
    return Dataset(inputs=inputs, labels=labels, source=source, fingerprint=fingerprint(inputs),
                   synthetic=synthetic)


def _choose(available: int, size: int | None, seed: int, desc: str) -> np.ndarray:
    """Sorted indices of a seeded sample of ``size`` out of ``available`` (all of them when fewer)."""
    if size is None or size >= available:
        if size is not None and size > available:
            log.warning("asked for %d samples but %s has %d; using all of them", size, desc, available)
        return np.arange(available)
    return np.sort(np.random.default_rng(seed).choice(available, size, replace=False))


def _digits(info: ModelInfo, split: str) -> tuple[np.ndarray, np.ndarray, str]:
    from rtresnet.data.digits import DIGITS_SIZE, digits_inputs

    if info.in_channels != 1 or tuple(info.input_size) != DIGITS_SIZE or info.input_format != "float-nchw":
        raise RtresnetError(f"the digits dataset fits 1-channel 32x32 float-nchw models, but this model takes "
                            f"{info.input_format} {info.in_channels}x{info.input_size[0]}x{info.input_size[1]}; "
                            "give calibration images for it instead")
    inputs, labels = digits_inputs(split, info)  # type: ignore[arg-type]
    return inputs, labels, f"digits {split} split"


def random_inputs(info: ModelInfo, n: int, seed: int = 0) -> np.ndarray:
    """Seeded random 8-bit images through the model's own preprocessing: model inputs whose values span the
    range real images have, with no data needed."""
    from rtresnet.preprocess import pixels_to_input, random_pixels

    return pixels_to_input(random_pixels(info, n, seed), info)


def _synthetic(info: ModelInfo, size: int, seed: int) -> Dataset:
    log.warning("SYNTHETIC DATA: %d random images; calibration ranges and accuracy figures from them are "
                "meaningless (use real images for anything but timing)", size)
    return _dataset(random_inputs(info, size, seed), None, f"synthetic ({size} random images, seed {seed})",
                    synthetic=True)


def _folder_items(root: Path, info: ModelInfo) -> list[tuple[Path, int | None]]:
    from rtresnet.preprocess import IMAGE_SUFFIXES, find_images

    paths = find_images(root)
    if not paths:
        raise RtresnetError(f"no images ({'/'.join(s[1:] for s in IMAGE_SUFFIXES)}) found under {root}; "
                            "point to a folder of images")
    classes = _class_indices(root, paths, info)
    return [(p, None if classes is None else classes[p.relative_to(root).parts[0]]) for p in paths]


def _class_indices(root: Path, paths: Sequence[Path], info: ModelInfo) -> dict[str, int] | None:
    """ImageFolder layout (every image in a class subfolder): folder name -> class index, else None."""
    if not all(len(p.relative_to(root).parts) == 2 for p in paths):
        return None
    names = sorted({p.relative_to(root).parts[0] for p in paths})
    synsets = _imagenet_synset_indices(root, names, info)
    if synsets is not None:
        return synsets
    if info.labels:
        if all(n in info.labels for n in names):
            log.info("%s: %d class folders matched to the model's labels by name", root, len(names))
            return {n: info.labels.index(n) for n in names}
        log.warning("class folders %s do not match the model's labels; loading %s without labels",
                    ", ".join(names[:5]) + (", ..." if len(names) > 5 else ""), root)
        return None
    if len(names) > info.num_classes:
        log.warning("%s has %d class folders but the model has %d classes; loading it without labels",
                    root, len(names), info.num_classes)
        return None
    log.info("%s: %d class folders mapped to class indices in sorted name order", root, len(names))
    return {n: i for i, n in enumerate(names)}


def _imagenet_synset_indices(root: Path, names: Sequence[str], info: ModelInfo) -> dict[str, int] | None:
    """Folders named by WordNet ID (``val/n01440764/...``, any subset of ImageNet-1K) for a model whose labels
    are the 1000 ImageNet class names: folder -> ImageNet class index. None when that layout or model is not it."""
    if len(info.labels) != 1000 or not all(_SYNSET.fullmatch(n) for n in names):
        return None
    from rtresnet.models.imagenet import imagenet_classes, imagenet_synsets  # torch: only for this layout

    if tuple(info.labels) != imagenet_classes():
        return None
    index = {s: i for i, s in enumerate(imagenet_synsets())}
    unknown = [n for n in names if n not in index]
    if unknown:
        few = ", ".join(unknown[:5]) + (f", ... ({len(unknown)} in all)" if len(unknown) > 5 else "")
        what = "is not an ImageNet-1K synset ID" if len(unknown) == 1 else "are not ImageNet-1K synset IDs"
        raise RtresnetError(f"class folder{'s' if len(unknown) > 1 else ''} {few} in {root} {what} (the model's "
                            "1000 classes); remove those folders, or label the images another way")
    log.info("%s: %d class folders mapped to ImageNet-1K class indices by synset ID", root, len(names))
    return {n: index[n] for n in names}


def _list_items(path: Path) -> list[tuple[Path, int | None]]:
    """A text file with one image path per line (relative paths are relative to the file; # comments)."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    items = [(_resolve(path.parent, line), None) for line in lines if line and not line.startswith("#")]
    if not items:
        raise RtresnetError(f"{path} lists no image paths; write one image path per line")
    return items


def _resolve(base: Path, line: str) -> Path:
    p = Path(line).expanduser()
    return p if p.is_absolute() else base / p


def _images(items: list[tuple[Path, int | None]], info: ModelInfo, size: int | None, seed: int,
            desc: str) -> Dataset:
    """Decode a seeded sample of ``items``; unreadable files are skipped (named in a warning) and replaced."""
    from rtresnet.preprocess import image_pixels, open_image, pixels_to_input
    from rtresnet.progress import track

    want = len(items) if size is None else min(size, len(items))
    if size is not None and size > len(items):
        log.warning("asked for %d samples but %s has %d images; using all of them", size, desc, len(items))
    order = np.random.default_rng(seed).permutation(len(items)) if want < len(items) else np.arange(len(items))
    chosen: list[tuple[int, np.ndarray]] = []
    bad: list[str] = []
    for i in track(order, total=want, description=f"loading {want} images"):
        if len(chosen) == want:
            break
        path = items[i][0]
        try:
            chosen.append((int(i), image_pixels(open_image(path), info.preprocessing)))
        except RtresnetError as e:  # most messages name the file already: do not repeat it
            msg = str(e)
            bad.append(f"{path} (missing)" if "not found" in msg else msg if str(path) in msg else f"{path}: {msg}")
    if bad:
        log.warning("skipped %d unreadable image(s): %s", len(bad), "; ".join(bad[:5]) + ("; ..." if len(bad) > 5
                                                                                          else ""))
    if not chosen:
        raise RtresnetError(f"none of the {len(bad)} images in {desc} could be read; check the files")
    chosen.sort(key=lambda c: c[0])
    inputs = pixels_to_input(np.stack([c[1] for c in chosen]), info)
    labels = [items[i][1] for i, _ in chosen]
    label_array = None if any(lb is None for lb in labels) else np.asarray(labels, dtype=np.int64)
    return _dataset(inputs, label_array, f"{desc} ({len(chosen)} images)", synthetic=False)


def _arrays(path: Path, info: ModelInfo) -> tuple[np.ndarray, np.ndarray | None]:
    """A .npy of inputs, or a .npz with ``inputs`` (or its only non-label array) and optional ``labels``."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise RtresnetError(f"cannot read {path} as a numpy file: {e}") from None
    labels = None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            keys = [k for k in data.files if k != "labels"]
            key = "inputs" if "inputs" in data.files else keys[0] if len(keys) == 1 else None
            if key is None:
                raise RtresnetError(f"{path} holds arrays {data.files}; name the inputs array 'inputs' "
                                    "(and the optional class indices 'labels')")
            inputs = data[key]
            labels = data["labels"] if "labels" in data.files else None
    else:
        inputs = data
    expected = tuple(info.input_shape(batch="N"))
    if inputs.ndim != 4 or tuple(inputs.shape[1:]) != expected[1:]:
        raise RtresnetError(f"{path} holds tensors of shape {inputs.shape}, but the model takes "
                            f"{expected}; save preprocessed inputs with that shape")
    if len(inputs) == 0:
        raise RtresnetError(f"{path} holds no samples")
    if info.input_format == "float-nchw":
        if not np.issubdtype(inputs.dtype, np.floating):
            raise RtresnetError(f"{path} holds {inputs.dtype} tensors, but the model takes preprocessed float32 "
                                "inputs (normalized NCHW)")
        inputs = inputs.astype(np.float32, copy=False)
        bad = ~np.isfinite(inputs)
        if bad.any():  # NaN/inf inputs make every figure computed from them meaningless
            samples = int(bad.reshape(len(inputs), -1).any(axis=1).sum())
            raise RtresnetError(f"{path} holds {int(bad.sum()):,} non-finite values (NaN or inf) in {samples} of "
                                f"{len(inputs)} samples; drop or fix those samples")
    elif inputs.dtype != np.uint8:
        raise RtresnetError(f"{path} holds {inputs.dtype} tensors, but the model takes uint8 NHWC frames")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(inputs),) or not np.issubdtype(labels.dtype, np.integer):
            raise RtresnetError(f"{path}: 'labels' must be {len(inputs)} integer class indices, got "
                                f"{labels.dtype} of shape {labels.shape}")
        if labels.min() < 0 or labels.max() >= info.num_classes:
            raise RtresnetError(f"{path}: labels must lie in 0..{info.num_classes - 1}")
    return inputs, labels
