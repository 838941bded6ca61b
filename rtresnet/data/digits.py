"""The bundled real dataset: scikit-learn's handwritten digits, and a ResNet-18 trained on it in seconds.

There is no ImageNet on these machines; this model is the real-data check for FP16/INT8 accuracy and what
``make demo`` deploys. Every input goes through ``rtresnet.preprocess`` (PIL bilinear 8x8 -> 32x32, then
normalize), so training, calibration, predict and bench all see the same pipeline.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from rtresnet.errors import RtresnetError
from rtresnet.spec import ModelInfo, Preprocessing

log = logging.getLogger(__name__)

Split = Literal["train", "test"]
DIGITS_PREPROCESSING = Preprocessing(resize=32, crop=(32, 32), mean=(0.5,), std=(0.5,),
                                     interpolation="bilinear", channel_order="L")
DIGITS_ARCH = "resnet18"
DIGITS_SIZE = (32, 32)
TEST_SIZE = 360  # of 1797: 1437 train / 360 held-out, stratified

# Everything that changes the trained weights; its hash names the cached checkpoint.
RECIPE = {"arch": DIGITS_ARCH, "in_channels": 1, "num_classes": 10, "size": 32, "split_seed": 0,
          "test_size": TEST_SIZE, "seed": 0, "epochs": 3, "batch": 64, "optimizer": "adamw", "lr": 3e-3,
          "weight_decay": 5e-4, "schedule": "onecycle", "shift_augment": 1, "version": 1}


def digits_labels() -> tuple[str, ...]:
    return tuple(str(i) for i in range(10))


def digits_info() -> ModelInfo:
    """The ModelInfo the digits ResNet-18 is exported with (used to preprocess its inputs)."""
    return ModelInfo(arch=DIGITS_ARCH, num_classes=10, in_channels=1, input_size=DIGITS_SIZE,
                     preprocessing=DIGITS_PREPROCESSING, labels=digits_labels())


@lru_cache(maxsize=1)
def _load_all() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise RtresnetError("the digits dataset needs scikit-learn; pip install 'rtresnet[digits]'") from None
    bunch = load_digits()
    # Stored values are 0..16; scale to 8-bit pixels so they go through the same path as image files.
    images = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return images, bunch.target.astype(np.int64)


@lru_cache(maxsize=2)
def digits_split(split: Split = "test") -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (N, 8, 8), int64 labels (N,)) of the fixed stratified split: 1437 train / 360 test."""
    if split not in ("train", "test"):
        raise RtresnetError(f"unknown digits split {split!r}; use 'train' or 'test'")
    from sklearn.model_selection import train_test_split

    images, labels = _load_all()
    idx_train, idx_test = train_test_split(np.arange(len(labels)), test_size=TEST_SIZE, stratify=labels,
                                           random_state=RECIPE["split_seed"])
    idx = np.sort(idx_train if split == "train" else idx_test)
    out_images, out_labels = images[idx], labels[idx]
    out_images.setflags(write=False)
    out_labels.setflags(write=False)
    return out_images, out_labels


def digits_inputs(split: Split = "test", info: ModelInfo | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs (float32 NCHW for the digits model) and labels, through ``rtresnet.preprocess``."""
    inputs, labels = _digits_inputs(split, info or digits_info())
    return inputs.copy(), labels.copy()


@lru_cache(maxsize=4)
def _digits_inputs(split: Split, info: ModelInfo) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    from rtresnet.preprocess import preprocess_images

    images, labels = digits_split(split)
    pil = [Image.fromarray(img, mode="L") for img in images]
    return preprocess_images(pil, info), np.array(labels)


def write_digit_images(folder: str | Path, n: int = 10, split: Split = "test",
                       class_folders: bool = False) -> list[Path]:
    """Write the first ``n`` images of ``split`` as 8x8 PNGs named ``<index>_label<digit>.png``
    (with ``class_folders``: ``<digit>/<index>.png``, the ImageFolder layout)."""
    from PIL import Image

    from rtresnet.fileutil import atomic_path

    images, labels = digits_split(split)
    if not 0 < n <= len(images):
        raise RtresnetError(f"n must be between 1 and {len(images)} for the {split} split, got {n}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / str(labels[i]) / f"{i:04d}.png" if class_folders else folder / f"{i:04d}_label{labels[i]}.png"
        path.parent.mkdir(exist_ok=True)
        with atomic_path(path) as tmp:
            Image.fromarray(images[i], mode="L").save(tmp, format="PNG")
        paths.append(path)
    return paths


def recipe_hash() -> str:
    return hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:16]


def digits_checkpoint(cache_dir: str | Path | None = None) -> Path:
    """Path of the trained digits ResNet-18 (safetensors, torchvision key names); trains it once if missing.

    Cached as ``$RTRESNET_HOME/digits/resnet18-digits-<recipe hash>.safetensors``.
    """
    from rtresnet.environment import rtresnet_home

    folder = Path(cache_dir) if cache_dir is not None else rtresnet_home() / "digits"
    path = folder / f"{DIGITS_ARCH}-digits-{recipe_hash()}.safetensors"
    if path.is_file():
        log.debug("digits checkpoint found in cache: %s", path)
        return path
    folder.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    from rtresnet.fileutil import atomic_path
    from rtresnet.steps import step

    log.info("training the digits %s once (%d epochs, about a minute on 2 cores; cached in %s)", DIGITS_ARCH,
             RECIPE["epochs"], folder)
    with step("train"):
        model, accuracy, seconds = train_digits()
    log.info("trained digits %s in %.1f s: held-out top-1 %.2f%% -> %s", DIGITS_ARCH, seconds,
             100 * accuracy, path)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"recipe": json.dumps(RECIPE, sort_keys=True),
                                             "test_top1": f"{accuracy:.4f}"})
    return path


def checkpoint_top1(path: str | Path) -> float | None:
    """The held-out top-1 (0..1) recorded when the checkpoint was trained, or None if it has none."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        value = (f.metadata() or {}).get("test_top1")
    return float(value) if value is not None else None


def _shift(x, max_shift: int, gen):
    """Random translation by up to ``max_shift`` pixels (pad with the background value, crop back)."""
    import torch

    if max_shift == 0:
        return x
    n, _, h, w = x.shape
    pad = torch.nn.functional.pad(x, (max_shift,) * 4, value=float(x.min()))
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    return torch.stack([pad[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def train_digits(recipe: dict | None = None):
    """Train the digits ResNet-18 with ``recipe`` (default ``RECIPE``); returns (eval model, held-out top-1, s)."""
    import torch

    from rtresnet.models import create_model
    from rtresnet.progress import track

    r = recipe or RECIPE
    start = time.perf_counter()
    torch.manual_seed(r["seed"])
    gen = torch.Generator().manual_seed(r["seed"])
    x_train, y_train = (torch.from_numpy(a) for a in digits_inputs("train"))
    x_test, y_test = (torch.from_numpy(a) for a in digits_inputs("test"))
    # channels_last: mkldnn's conv backward is ~25 % faster on CPU in this layout.
    model = create_model(r["arch"], num_classes=r["num_classes"], in_channels=r["in_channels"])
    model = model.to(memory_format=torch.channels_last)
    x_train = x_train.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=r["lr"], weight_decay=r["weight_decay"])
    steps_per_epoch = (len(x_train) + r["batch"] - 1) // r["batch"]
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=r["lr"], epochs=r["epochs"],
                                                steps_per_epoch=steps_per_epoch)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()

    def batches():  # one progress step per batch, so the bar moves during the first epoch too
        for _ in range(r["epochs"]):
            order = torch.randperm(len(x_train), generator=gen)
            for i in range(0, len(order), r["batch"]):
                yield order[i:i + r["batch"]]

    for idx in track(batches(), total=r["epochs"] * steps_per_epoch, description="training digits ResNet-18"):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(_shift(x_train[idx], r["shift_augment"], gen)), y_train[idx])
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(x_test).argmax(1) == y_test).float().mean())
    return model, accuracy, time.perf_counter() - start


if __name__ == "__main__":  # `python -m rtresnet.data.digits [IMAGE_DIR N]`; `rtresnet digits` is the command
    import sys

    from rtresnet.cli.ui import setup_logging

    setup_logging(logging.INFO)  # training takes a minute: say so
    if len(sys.argv) == 3:
        write_digit_images(sys.argv[1], int(sys.argv[2]))
    sys.stdout.write(f"{digits_checkpoint()}\n")
