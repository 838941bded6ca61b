"""Count parameters and multiply-accumulates by running the model once, so the figures cannot drift from it."""

from __future__ import annotations

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: tuple[int, int] = (224, 224), in_channels: int | None = None) -> int:
    """MACs of convolutions and linear layers for one image (the convention of torchvision's GFLOPS column)."""
    total = 0

    def conv_hook(m: nn.Conv2d, _inp: tuple[torch.Tensor], out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += out.numel() // out.shape[0] * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, _inp: tuple[torch.Tensor], out: torch.Tensor) -> None:
        nonlocal total
        total += m.in_features * m.out_features

    if in_channels is None:
        first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        in_channels = first.in_channels
    handles = [m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else linear_hook)
               for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, in_channels, *input_size))
    finally:
        for h in handles:
            h.remove()
    return total
