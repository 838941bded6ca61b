"""Realistic ResNets without downloads: BatchNorm statistics re-estimated on crops of real photos.

A randomly initialised ResNet has unit BN statistics and near-constant logits, which hides quantization defects
(the TensorRT INT8 graph once passed every test on the digits net and was wrong on a ResNet-50 with real BN
statistics). Here the running means/variances are re-estimated on random crops of scikit-learn's two bundled
photos, BN affine parameters are spread like a trained net's, and the head is set so logits vary with the input
and span a realistic range. Used by the tests and benchmarks that judge precision on models like users' own.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from rtresnet.errors import RtresnetError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    try:
        from sklearn.datasets import load_sample_images
    except ImportError:
        raise RtresnetError("photo crops need scikit-learn; pip install 'rtresnet[digits]'") from None
    return tuple(load_sample_images().images)  # two 427x640 RGB uint8 photos


def photo_crops(n: int, size: int | tuple[int, int] = 224, *, seed: int = 0, normalize: bool = True) -> np.ndarray:
    """``n`` random crops (10-100 % of the shorter side, random flips) of the bundled photos, resized to ``size``.

    Returns float32 NCHW normalised with ImageNet's mean/std, or uint8 NHWC RGB with ``normalize=False``.
    """
    from PIL import Image

    h, w = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    photos = _photos()
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        photo = photos[i % len(photos)]
        side = int(min(photo.shape[:2]) * rng.uniform(0.1, 1.0))
        ch, cw = side, min(int(side * w / h), photo.shape[1])
        top, left = rng.integers(0, photo.shape[0] - ch + 1), rng.integers(0, photo.shape[1] - cw + 1)
        crop = Image.fromarray(photo[top:top + ch, left:left + cw]).resize((w, h), Image.Resampling.BILINEAR)
        out[i] = np.asarray(crop)[:, ::-1] if rng.random() < 0.5 else np.asarray(crop)
    if not normalize:
        return out
    x = (out.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def realistic_resnet(arch: str, *, num_classes: int = 1000, input_size: int = 224, calib_crops: int = 64,
                     logit_std: float = 4.0, head_bias_std: float = 0.0, seed: int = 0):
    """``arch`` with trained-like BN parameters, BN statistics re-estimated on photo crops and a head whose
    logits have standard deviation ``logit_std`` across classes and change with the image. ``head_bias_std`` adds
    per-class offsets (a high-dynamic-range head, as class priors of imbalanced data make)."""
    import torch

    from rtresnet.models import create_model

    torch.manual_seed(seed)
    model = create_model(arch, num_classes=num_classes)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # trained nets: gammas spread around 0.2-1.5, betas mostly < 0
                m.weight.copy_(torch.empty(m.num_features).uniform_(0.2, 1.5, generator=gen))
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.3 - 0.1)
                m.reset_running_stats()
                m.momentum = None  # cumulative average over every batch
        for m in model.modules():  # trained blocks add a small branch to the identity path (small last-BN gammas)
            if hasattr(m, "residual_bn"):
                m.residual_bn().weight.uniform_(0.05, 0.4, generator=gen)
    x = torch.from_numpy(photo_crops(calib_crops, input_size, seed=seed + 1))
    model.train()
    with torch.no_grad():
        for batch in x.split(16):
            model(batch)
    model.eval()
    _fit_head(model, x, logit_std, gen)
    if head_bias_std:
        with torch.no_grad():
            model.fc.bias.add_(torch.randn(model.fc.out_features, generator=gen) * head_bias_std)
    return model


def _fit_head(model, x, logit_std: float, gen) -> None:
    """Random directions over centred features, scaled so the logits reach ``logit_std`` (as a trained head, every
    feature counts by its own spread: no per-feature normalisation that would amplify near-constant ones)."""
    import torch

    captured = []
    hook = model.fc.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    with torch.no_grad():
        model(x)
        hook.remove()
        features = captured[0]
        mean = features.mean(0)
        w = torch.randn(model.fc.out_features, features.shape[1], generator=gen)
        logits = (features - mean) @ w.T
        scale = logit_std / logits.std().clamp_min(1e-6)
        model.fc.weight.copy_(w * scale)
        model.fc.bias.copy_(-(mean @ w.T) * scale)


def save_realistic_checkpoint(arch: str, path: str | Path, **kwargs) -> Path:
    """``realistic_resnet(arch, **kwargs)``'s state dict as a checkpoint at ``path`` (.safetensors or .pth)."""
    from rtresnet.models.checkpoint import save_state_dict

    return save_state_dict(realistic_resnet(arch, **kwargs), path)
